"""The standalone workflow router against a gateway-like HTTP server."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer

import pytest

from esg_plugin.jsonhttp import JsonRequestHandler
from esg_plugin.router import Router
from esg_plugin.scaler import Topology

pytestmark = pytest.mark.integration


def gateway():
    """/function/<name>: answers {"path": [...stages seen...]}, after 20 ms."""

    class Handler(JsonRequestHandler):
        def do_POST(self):  # noqa: N802
            name = self.path.rsplit("/", 1)[-1]
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            time.sleep(0.02)
            if name == "join":  # a fan-out branch arrives as {"outputs": [...]}
                branches = [b.get("path") or b["outputs"][0]["path"] for b in doc["inputs"].values()]
                seen = sorted(s for path in branches for s in path)
            elif "outputs" in doc:
                seen = doc["outputs"][0]["path"]
            else:
                seen = doc.get("path", [])
            self._json(200, {"path": seen + [name]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_small_pool_never_deadlocks_under_concurrent_fan_out():
    stack = {"functions": {
        "head": {"annotations": {"com.esg.workflow": "w", "com.esg.slo-ms": "10000"}},
        "left": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head", "com.esg.fanout": "2"}},
        "right": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "head"}},
        "join": {"annotations": {"com.esg.workflow": "w", "com.esg.after": "left,right"}},
    }}
    server = gateway()
    router = Router(Topology.from_stack(stack), f"http://127.0.0.1:{server.server_address[1]}", threads=2)
    try:
        with ThreadPoolExecutor(8) as clients:
            futures = [clients.submit(router.run, "w", b'{"path": []}', "application/json") for _ in range(8)]
            results = [f.result(timeout=60) for f in futures]  # nested waits on a 2-thread pool would hang here
        for status, doc in results:
            assert status == 200
            assert doc["output"]["path"] == ["head", "head", "left", "right", "join"]
    finally:
        server.shutdown()
        server.server_close()
