"""Time of one read of each GPU's free share from HAMi's records (the
scaler's ``RoomReader``, ``share_mode: hami``), over real HTTP.

    python bench/gpu_room.py [--nodes 100] [--gpus 8] [--pods 2000] [--reads 5]

A loopback HTTP server answers the two lists the reader asks for — the
nodes, each registering ``--gpus`` GPUs with HAMi, and ``--pods`` pods of
every namespace, each with a HAMi allocation and a pod's usual spec and
status (containers, env, resources, volumes, conditions: about 2 KB of
JSON each) — and the reader, with the real ``kubernetes`` client, reads
them as plain JSON, as the scaler does. For comparison, the same pod list
read into the client's models (how the client reads by default), which
the reader does not do. Prints the median of ``--reads`` reads of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client

from esg_plugin.scaler.actuators.base import ApiCalls, api_client
from esg_plugin.scaler.actuators.kubernetes import HOLDING_PODS, RoomReader
from esg_plugin.limits import flag


def node(i: int, gpus: int) -> dict:
    devices = "".join(f"GPU-{i}-{d},10,81920,100,NVIDIA-H100,0,true:" for d in range(gpus))
    return {"metadata": {"name": f"gpu-{i}", "labels": {"gpu": "on"},
                         "annotations": {"hami.io/node-nvidia-register": devices}},
            "status": {"capacity": {"nvidia.com/gpu": str(10 * gpus)}, "conditions": [{"type": "Ready",
                                                                                       "status": "True"}]}}


def pod(j: int, nodes: int, gpus: int) -> dict:
    gpu = f"GPU-{j % nodes}-{j % gpus}"
    return {"metadata": {"name": f"fn-{j}", "namespace": f"team-{j % 7}", "uid": f"uid-{j}",
                         "labels": {"app": f"fn-{j % 50}", "pod-template-hash": "5d8f7c9b6"},
                         "annotations": {"hami.io/vgpu-devices-allocated": f"{gpu},NVIDIA,4000,10:;",
                                         "hami.io/bind-time": "1733400000", "hami.io/vgpu-node": f"gpu-{j % nodes}"}},
            "spec": {"nodeName": f"gpu-{j % nodes}", "containers": [{
                "name": "fn", "image": "registry.example/team/fn:1.2.3",
                "env": [{"name": f"VAR_{k}", "value": "x" * 20} for k in range(12)],
                "resources": {"limits": {"nvidia.com/gpucores": "10", "nvidia.com/gpumem": "4000", "cpu": "2"},
                              "requests": {"nvidia.com/gpucores": "10", "nvidia.com/gpumem": "4000", "cpu": "1"}},
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": f"10.0.{j // 250}.{j % 250}",
                       "conditions": [{"type": t, "status": "True"} for t in
                                      ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                       "containerStatuses": [{"name": "fn", "ready": True, "restartCount": 0,
                                              "image": "registry.example/team/fn:1.2.3",
                                              "imageID": "registry.example/team/fn@sha256:" + "0" * 64,
                                              "containerID": f"containerd://{j:064x}",
                                              "state": {"running": {"startedAt": "2026-12-05T10:00:00Z"}}}]}}


def serve(nodes_doc: bytes, pods_doc: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = nodes_doc if self.path.startswith("/api/v1/nodes") else pods_doc
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def median_ms(call, reads: int) -> float:
    call()  # the first read opens the connection
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=flag(int, 1, 100_000), default=100)
    parser.add_argument("--gpus", type=flag(int, 1, 64), default=8)
    parser.add_argument("--pods", type=flag(int, 0, 1_000_000), default=2000)
    parser.add_argument("--reads", type=flag(int, 1, 10_000), default=5)
    args = parser.parse_args(argv)
    if min(args.nodes, args.gpus, args.pods, args.reads) < 1:
        parser.error("--nodes, --gpus, --pods and --reads must be at least 1")
    nodes_doc = json.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                            "items": [node(i, args.gpus) for i in range(args.nodes)]}).encode()
    pods_doc = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                           "items": [pod(j, args.nodes, args.gpus) for j in range(args.pods)]}).encode()
    server = serve(nodes_doc, pods_doc)
    try:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
        core = client.CoreV1Api(api_client(configuration))
        reader = RoomReader(core, gpu_memory_mb=16000, api=ApiCalls(timeout_s=60.0))
        room = reader.read()
        if room is None or len(room) != args.nodes * args.gpus:
            print("the reader did not read the room", file=sys.stderr)
            return 1
        plain_ms = median_ms(reader.read, args.reads)
        models_ms = median_ms(lambda: core.list_pod_for_all_namespaces(field_selector=HOLDING_PODS,
                                                                       resource_version="0"), args.reads)
    finally:
        server.shutdown()
        server.server_close()
    print(f"each GPU's free share from HAMi's records: {args.nodes} nodes x {args.gpus} GPUs, {args.pods} pods "
          f"({len(pods_doc) / args.pods / 1000:.1f} KB of JSON each), median of {args.reads} reads")
    print(f"  the reader (both lists as plain JSON, parsed, the room computed): {plain_ms:.0f} ms")
    print(f"  for comparison, the pod list alone into the client's models: {models_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
