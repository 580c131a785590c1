"""What a Kubernetes API server that does not answer costs the scaler.

    python bench/api_stall.py [--functions 20] [--timeout-s 0.5]

A socket that takes connections and never answers them (a wedged API
server, a network that drops replies). Prints, with each call's timeout
at ``--timeout-s``: one read through the ``kubernetes`` client as it comes
(urllib3 asks again on a read timeout), one through the client the scaler
makes (``api_client``: those retries off), and one iteration of the
Kubernetes actuator over ``--functions`` functions (read them all, then
apply a change to each: ``ApiCalls`` makes no call after the first that
goes unanswered) — each with its wall time and the connections that
reached the server. Without a timeout the client waits for ever.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

from kubernetes import client

from esg_plugin.scaler import FunctionState, KubernetesActuator
from esg_plugin.scaler.actuators import api_error
from esg_plugin.scaler.actuators.base import api_client


def connections(server: socket.socket) -> int:
    """The connections waiting in the server's backlog, taken and closed."""
    count = 0
    server.setblocking(False)
    try:
        while True:
            server.accept()[0].close()
            count += 1
    except BlockingIOError:
        return count
    finally:
        server.setblocking(True)


def timed(call) -> float:
    started = time.perf_counter()
    try:
        call()
    except Exception as err:  # every call here fails (no answer): what is measured is how long it takes to
        if api_error(err) is None:
            raise
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.getLogger("esg.scaler").setLevel(logging.ERROR)  # the failures are the point: not said per call
    if args.functions < 1 or not 0 < args.timeout_s <= 60:
        parser.error("--functions must be at least 1 and --timeout-s in (0, 60]")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        print(f"an API server that takes connections and never answers; each call's timeout {args.timeout_s:g} s")
        plain = client.AppsV1Api(client.ApiClient(configuration))
        took = timed(lambda: plain.read_namespaced_deployment("f0", "openfaas-fn", _request_timeout=args.timeout_s))
        print(f"  one read, the client as it comes (urllib3 asks again): {took:.2f} s, "
              f"{connections(server)} connection(s)")
        made = client.AppsV1Api(api_client(configuration))
        took = timed(lambda: made.read_namespaced_deployment("f0", "openfaas-fn", _request_timeout=args.timeout_s))
        print(f"  one read, the client the scaler makes (api_client): {took:.2f} s, "
              f"{connections(server)} connection(s)")
        actuator = KubernetesActuator(api_client(configuration), "openfaas-fn", api_timeout_s=args.timeout_s)
        functions = [f"f{i}" for i in range(args.functions)]

        def iteration():
            actuator.new_iteration()
            actuator.current(functions)
            actuator.apply({fn: FunctionState(2, 1, 0.0, 100) for fn in functions})
        took = timed(iteration)
        print(f"  one iteration of the Kubernetes actuator, {args.functions} functions read and patched: "
              f"{took:.2f} s, {connections(server)} connection(s)")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
