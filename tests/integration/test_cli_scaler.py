"""`esg scaler` as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ESG = str(Path(sys.executable).with_name("esg"))


def esg(*args):
    return subprocess.run([ESG, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_once_with_no_reachable_metrics_changes_nothing_and_says_why():
    result = esg("scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json",
                 "--metrics-url", "http://127.0.0.1:9/metrics", "--once")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ready"] is False and doc["last_changes"] == []
    assert "no metrics data" in doc["reasons"]["*"]


@pytest.mark.parametrize("args, message", [
    (["--stack", "nope.yml", "--profiles", "profiles/cpu-2core.json"], "no such file"),
    (["--stack", "stack.yml", "--profiles", "examples/profiles/synthetic.json"], "which has no profile"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--interval-s", "0"], "--interval-s: must be a number in [0.1, 3600], got 0"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--metrics-url", "gateway"], "http(s) URL"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--kube-api", "foo"],
     "--kube-api: must be an http(s) URL, got 'foo'"),
    (["--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--kube-api", "http://"],
     "--kube-api: must be an http(s) URL"),
])
def test_bad_settings_exit_2_with_one_line(args, message):
    result = esg("scaler", *args, "--once")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_host_or_port_it_cannot_listen_on_is_one_line_and_exit_2():
    import os
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        for env, words in [({"ESG_SCALER_HOST": "999.1.1.1"}, "cannot listen on 999.1.1.1:8081"),
                           ({"ESG_SCALER_PORT": str(taken.getsockname()[1])}, "cannot listen on 127.0.0.1:")]:
            result = subprocess.run([ESG, "scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json"],
                                    capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **env})
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    finally:
        taken.close()


def test_help():
    assert "--metrics-url" in esg("scaler", "--help").stdout


def test_the_scaler_process_asks_an_api_server_that_never_answers_once_an_iteration_and_stays_healthy(tmp_path):
    """`esg scaler --actuator openfaas-kubernetes` as a process, against a
    Kubernetes API that takes connections and never answers (a socket
    nobody reads) and a gateway whose counters rise: iterations go on, each
    making at most one call that reaches the API (the client the CLI makes
    has urllib3's retries off; the first unanswered call ends the
    iteration's calls), the failures are counted in /metrics, and /healthz
    stays 200 (an iteration takes one ``api_timeout_s``, well within its
    budget) — where the client alone would have held the loop for ever."""
    import os
    import re
    import socket
    import threading
    import time
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    started = time.monotonic()

    class Gateway(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            count = 5.0 * (time.monotonic() - started)
            body = ("# TYPE gateway_function_invocation_total counter\n"
                    f'gateway_function_invocation_total{{code="200",function_name="image-preprocess.openfaas-fn"}} '
                    f"{count}\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    gateway = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    # without leader election: the lease, read first, would be the one call (test_scaler_kubernetes.py has it)
    env = {**os.environ, "ESG_SCALER_API_TIMEOUT_S": "0.3", "ESG_SCALER_LEADER_ELECTION": "false"}
    proc = subprocess.Popen([ESG, "scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json",
                             "--metrics-url", f"http://127.0.0.1:{gateway.server_address[1]}/metrics",
                             "--actuator", "openfaas-kubernetes", "--kube-api",
                             f"http://127.0.0.1:{silent.getsockname()[1]}", "--interval-s", "0.5", "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"on (http://[^ ]+)", line).group(1)

        def metric(name, text):
            found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
            return float(found.group(1)) if found else 0.0
        deadline = time.monotonic() + 120.0
        while True:
            text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
            errors = metric('esg_scaler_errors_total{stage="apply"}', text)
            if errors >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert errors >= 3, text  # the law planned, and its changes failed: counted
        with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
            assert answer.status == 200
        silent.setblocking(False)
        reached = 0
        try:
            while True:
                silent.accept()[0].close()
                reached += 1
        except BlockingIOError:
            pass
        # read after the count: an iteration is counted as it begins, before any call it makes
        iterations = metric("esg_scaler_iterations_total", urllib.request.urlopen(url + "/metrics",
                                                                                 timeout=10).read().decode())
        assert 1 <= reached <= iterations, (reached, iterations)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
        gateway.shutdown()
        silent.close()


def test_of_two_scaler_processes_one_acts_and_the_other_takes_over_at_once_when_it_stops():
    """Two ``esg scaler`` processes over one Kubernetes API (the emulator),
    as during the scaler's rolling update: one holds the Lease and acts, the
    other stands by; SIGTERM to the holder gives the lease up, and the
    other leads at its next iteration — long before the lease's duration."""
    import os
    import re
    import signal
    import time
    import urllib.request

    from tests.kube_emulator import KubeEmulator, deployment

    from esg_plugin.loaders import read_yaml
    from esg_plugin.scaler import Topology

    def plan(url):
        with urllib.request.urlopen(url + "/plan", timeout=10) as answer:
            return json.loads(answer.read())

    def wait_for(condition, what, timeout_s=120.0):
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    topology = Topology.from_stack(read_yaml(ROOT / "stack.yml"))
    with KubeEmulator() as kube:
        for fn in topology.functions.values():
            kube.add(deployment(fn, env={"ESG_FUNCTION": fn, "ESG_GPU_SHARE": 100}))
        env = {**os.environ, "ESG_SCALER_LEASE_DURATION_S": "3600"}  # a takeover by expiry would take an hour
        procs, urls = [], []
        try:
            for _ in range(2):
                proc = subprocess.Popen([ESG, "scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json",
                                         "--metrics-url", "http://127.0.0.1:9/metrics", "--actuator",
                                         "openfaas-kubernetes", "--kube-api", kube.url, "--interval-s", "0.5",
                                         "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                procs.append(proc)
                urls.append(re.search(r"on (http://[^ ]+)", proc.stderr.readline()).group(1))
            leases = lambda: [plan(url)["lease"] for url in urls]  # noqa: E731

            def one_leader_seen_by_both():  # the other says who holds the lease once it has read it
                seen = leases()
                return sorted(lease["leading"] for lease in seen) == [False, True] \
                    and seen[0]["holder"] is not None and seen[0]["holder"] == seen[1]["holder"]

            wait_for(one_leader_seen_by_both, "one leader, the other standing by for it")
            leader = next(i for i, lease in enumerate(leases()) if lease["leading"])
            other = 1 - leader
            procs[leader].send_signal(signal.SIGTERM)
            assert procs[leader].wait(timeout=60) == 0
            wait_for(lambda: plan(urls[other])["lease"]["leading"], "the other leads")  # given up: not expired
            assert kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["leaseTransitions"] >= 1
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)


def test_once_stands_by_where_another_scaler_leads_and_gives_a_lease_it_took_back():
    """``esg scaler --once`` acts, so it too acts only where it holds the
    Lease: beside a leading scaler it stands by; alone it takes the lease
    for its one iteration and gives it up as it exits."""
    from tests.kube_emulator import KubeEmulator

    with KubeEmulator() as kube:
        args = ("scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json", "--metrics-url",
                "http://127.0.0.1:9/metrics", "--actuator", "openfaas-kubernetes", "--kube-api", kube.url, "--once")
        alone = esg(*args)
        assert alone.returncode == 0, alone.stderr
        assert "holderIdentity" not in kube.leases[("openfaas-fn", "esg-scaler")]["spec"]  # given back
        kube.leases[("openfaas-fn", "esg-scaler")]["spec"]["holderIdentity"] = "the-running-scaler"
        beside = esg(*args)
        assert beside.returncode == 0, beside.stderr
        doc = json.loads(beside.stdout)
        assert doc["reasons"]["*"].startswith("standby: the lease openfaas-fn/esg-scaler is held by the-running-scaler")
        assert doc["lease"] == {"name": "esg-scaler", "holder": "the-running-scaler", "leading": False}


def test_the_scaler_process_with_gateway_pods_plans_for_the_traffic_of_every_gateway_replica():
    """``esg scaler`` as the sidecar runs it (``ESG_SCALER_GATEWAY_PODS``,
    deploy/gateway-sidecar): it lists the gateway's pods through the API
    (the emulator) and reads the metrics of each — two gateways on two
    loopback addresses at the port of ``--metrics-url``, each counting 20
    requests a second — and plans for 40, where its own gateway alone
    would say 20."""
    import os
    import re
    import time
    import urllib.request

    from tests.kube_emulator import KubeEmulator

    from .test_scaler_prometheus import serve_page

    started_s = time.monotonic()

    def gateway_page():  # 20 rps through this gateway
        count = 20.0 * (time.monotonic() - started_s)
        label = 'function_name="image-preprocess.openfaas-fn"'
        return f"gateway_function_invocation_started{{{label}}} {count}\n".encode()

    servers = [serve_page(gateway_page, "127.0.0.2")]
    port = servers[0].server_address[1]
    servers.append(serve_page(gateway_page, "127.0.0.3", port))

    def plan(url):
        with urllib.request.urlopen(url + "/plan", timeout=10) as answer:
            return json.loads(answer.read())

    proc = None
    try:
        with KubeEmulator() as kube:
            kube.pods += [{"metadata": {"name": f"gateway-{i}", "namespace": "openfaas", "labels": {"app": "gateway"}},
                           "status": {"phase": "Running", "podIP": f"127.0.0.{i}"}} for i in (2, 3)]
            env = {**os.environ, "ESG_SCALER_GATEWAY_PODS": "app=gateway", "ESG_SCALER_WINDOW_S": "3"}
            proc = subprocess.Popen([ESG, "scaler", "--stack", "stack.yml", "--profiles", "profiles/cpu-2core.json",
                                     "--metrics-url", f"http://127.0.0.2:{port}/metrics", "--kube-api", kube.url,
                                     "--interval-s", "0.5", "--port", "0"], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            url = re.search(r"on (http://[^ ]+)", proc.stderr.readline()).group(1)
            deadline = time.monotonic() + 120.0
            while "image" not in plan(url)["rates_rps"]:
                assert time.monotonic() < deadline and proc.poll() is None, "no rate"
                time.sleep(0.1)
            assert plan(url)["rates_rps"]["image"] >= 35.0  # both gateways' 40 rps, not its own 20
            assert ("list", "", "pods", "openfaas") in kube.verbs
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for server in servers:
            server.shutdown()
            server.server_close()


def test_the_scaler_process_plans_a_workflow_added_to_its_stack_file_without_a_restart(tmp_path):
    """``esg scaler`` reads its stack file again when it changes (a ConfigMap
    updated in place): a workflow added while it runs is planned, and a file
    that does not parse changes nothing — the process goes on planning what
    it had, and says why once."""
    import re
    import time
    import urllib.request

    from ..unit.test_scaler import stack_of
    from .test_scaler_prometheus import serve_page

    started_s = time.monotonic()

    def gateway_page():  # 20 rps into each workflow's entry
        count = 20.0 * (time.monotonic() - started_s)
        return "".join(f'gateway_function_invocation_started{{function_name="{fn}.openfaas-fn"}} {count}\n'
                       for fn in ("image-preprocess", "text-langid")).encode()

    def write_stack(text):  # replaced at once, as the kubelet swaps a ConfigMap's files
        (tmp_path / "stack.new").write_text(text)
        (tmp_path / "stack.new").replace(tmp_path / "stack.yml")

    def rates(url):
        with urllib.request.urlopen(url + "/plan", timeout=10) as answer:
            return json.loads(answer.read())["rates_rps"]

    def metrics(url):
        with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
            return answer.read().decode()

    def wait_for(url, condition, what):
        deadline = time.monotonic() + 120.0
        while not condition(rates(url)):
            assert time.monotonic() < deadline and proc.poll() is None, what
            time.sleep(0.1)

    write_stack(stack_of("image"))
    server = serve_page(gateway_page)
    proc = None
    try:
        proc = subprocess.Popen([ESG, "scaler", "--stack", str(tmp_path / "stack.yml"), "--profiles",
                                 "profiles/cpu-2core.json", "--actuator", "dry-run", "--metrics-url",
                                 f"http://127.0.0.1:{server.server_address[1]}/metrics", "--interval-s", "0.5",
                                 "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = re.search(r"on (http://[^ ]+)", proc.stderr.readline()).group(1)
        wait_for(url, lambda r: "image" in r, "the image workflow is never planned")
        assert "text" not in rates(url)
        write_stack(stack_of("image", "text"))
        wait_for(url, lambda r: "text" in r, "the workflow added to the stack file is never planned")
        write_stack("functions: [")
        deadline = time.monotonic() + 120.0
        while 'esg_scaler_workload_reloads_total{result="refused"} 1.0' not in metrics(url):  # read, not loaded
            assert time.monotonic() < deadline and proc.poll() is None, "the broken stack file is never read"
            time.sleep(0.1)
        assert {"image", "text"} <= set(rates(url))  # and nothing changed
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
        server.shutdown()
        server.server_close()
    _, err = proc.communicate(timeout=30)
    assert err.count("do not load") == 1 and "stack.yml" in err  # said once, naming the file


def test_the_scaler_process_takes_a_changed_settings_file_without_a_restart(tmp_path):
    """``esg scaler --config FILE`` reads the file again when it changes: a
    live setting is taken, one the process was built with is said to wait
    for a restart (``/plan``'s ``settings``), and a file that does not load
    changes nothing and is said once, naming it."""
    import re
    import time
    import urllib.request

    config = tmp_path / "scaler.yaml"

    def write(text):  # replaced at once, as the kubelet swaps a ConfigMap's files
        (tmp_path / "new.yaml").write_text(text)
        (tmp_path / "new.yaml").replace(config)

    def get(url, path):
        with urllib.request.urlopen(url + path, timeout=10) as answer:
            return answer.read().decode()

    def wait_for(condition, what):
        deadline = time.monotonic() + 120.0
        while not condition():
            assert time.monotonic() < deadline and proc.poll() is None, what
            time.sleep(0.1)

    write("max_replicas: 5\n")
    proc = subprocess.Popen([ESG, "scaler", "--config", str(config), "--stack", "stack.yml", "--profiles",
                             "profiles/cpu-2core.json", "--actuator", "dry-run", "--interval-s", "0.5",
                             "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"on (http://[^ ]+)", proc.stderr.readline()).group(1)
        write("max_replicas: 3\nnamespace: elsewhere\n")
        wait_for(lambda: json.loads(get(url, "/plan"))["settings"]["at_restart"] == ["namespace"],
                 "the changed settings file is never read")
        assert 'esg_scaler_settings_reloads_total{result="loaded"} 1.0' in get(url, "/metrics")
        write("max_replicas: many\n")
        wait_for(lambda: json.loads(get(url, "/plan"))["settings"]["refused"] is not None,
                 "the broken settings file is never read")
    finally:
        if proc.poll() is None:
            proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert err.count("does not load") == 1 and "scaler.yaml" in err and "max_replicas" in err
