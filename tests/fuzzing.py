"""Seeded generators of hostile input, and the checks each surface must
pass (issue 14). Used by tests/unit/test_fuzz.py — a few hundred cases in
``make test`` — and by ``make fuzz`` (FUZZ_CASES=N, thousands).

Each generator takes a ``random.Random`` and yields cases; each ``check_*``
runs one case and returns None when the surface behaved, else a one-line
description of the failure (so a run reports every failure, not the first).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import random
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 60.0
"""A run longer than this is a hang (a failure); ``make fuzz`` also reports runs over 10 s."""

HOSTILE_TEXT = ["1e300", "-1e300", "nan", "NaN", "inf", "-inf", "0", "-0", "-1", "1e-320", "9" * 400, "", "abc",
                "0x10", "1_000", " 5", "2.5e8", "1e6", "1000001", "-9223372036854775809", "4294967296", "3.5"]
HOSTILE_VALUES: list[Any] = [1e300, -1e300, float("nan"), float("inf"), -1, 0, 10**400, -(10**400), "", "x" * 10_000,
                             [], {}, None, True, False, 2.5e8, 1e-320, [1, 2, 3], {"a": 1}, "1e300"]


# --- documents ----------------------------------------------------------------
def _paths(doc: Any, prefix=()) -> list[tuple]:
    """Every path into ``doc``, at most 20 levels down."""
    out, stack = [], [(doc, prefix)]
    while stack:
        value, path = stack.pop()
        out.append(path)
        if len(path) >= 20:
            continue
        if isinstance(value, dict):
            stack.extend((v, path + (k,)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))
    return out


def _set(doc: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    elif delete and isinstance(parent, list):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


def mutate(rng: random.Random, doc: Any) -> Any:
    """A copy of ``doc`` with one to three hostile changes."""
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        paths = _paths(doc)
        path = rng.choice(paths)
        kind = rng.random()
        if kind < 0.6:
            doc = _set(doc, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))  # never the shared one itself
        elif kind < 0.8 and path:
            doc = _set(doc, path, None, delete=True)
        elif kind < 0.9:
            deep: Any = 1
            for _ in range(rng.choice([70, 500, 3000])):
                deep = [deep]
            doc = _set(doc, path, deep)
            break  # nothing is changed inside the deep part
        else:
            doc = _set(doc, path, [doc] if not path else {"wrapped": 1})
    return doc


def dump(rng: random.Random, doc: Any, fmt: str) -> str:
    try:
        if fmt == "json":
            return json.dumps(doc)
        return yaml.safe_dump(doc, sort_keys=False)
    except (RecursionError, ValueError, yaml.YAMLError):
        return "[" * 100_000  # what could not be written is written as deep nesting


def raw_hostile_text(rng: random.Random) -> str:
    """Text that is not a document a user meant."""
    return rng.choice([
        "[" * rng.choice([100, 10_000, 200_000]),
        "{" * 50_000,
        "a:\n" + "".join(" " * (2 * i) + "b:\n" for i in range(rng.choice([100, 2000]))),
        "&a [" + ",".join(["*a"] * 3) + "]",  # a recursive alias
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",  # a billion laughs
        "\x00\xff\xfe garbage \x01",
        "name: w\nslo_ms: 1e300\nstages: []\n",
        "",
        "---\n...\n---\n",
        "stages: !!python/object/apply:os.system ['true']\n",
    ])


# --- the command line -----------------------------------------------------------
def cli_cases(rng: random.Random, tmp: Path) -> Iterator[tuple[list[str], str]]:
    """(argv, what it is) for ``esg``: hostile flags and hostile files."""
    workflow = ROOT / "examples/workflows/image.yaml"
    profiles = ROOT / "examples/profiles/synthetic.json"
    workload = ROOT / "examples/workloads/steps.yaml"
    (tmp / "workloads").mkdir(exist_ok=True)
    (tmp / "workflows").mkdir(exist_ok=True)
    for wf in (ROOT / "examples/workflows").glob("*.yaml"):  # a workload's workflows are relative to it
        (tmp / "workflows" / wf.name).write_text(wf.read_text())
    valid_wf = yaml.safe_load(workflow.read_text())
    valid_prof = json.loads(profiles.read_text())
    n = 0
    while True:
        n += 1
        kind = rng.random()
        if kind < 0.3:
            flag = rng.choice(["--rate", "--utilisation", "--queueing-cv2", "--max-expansions", "--time-limit-ms"])
            argv = ["plan", "--workflow", str(workflow), "--profiles", str(profiles), "--rate", "5", "--json"]
            argv += [flag, rng.choice(HOSTILE_TEXT)]
            yield argv, f"plan {flag} {argv[-1][:20]!r}"
        elif kind < 0.5:
            path = tmp / f"wf-{n}.yaml"
            text = raw_hostile_text(rng) if rng.random() < 0.3 else dump(rng, mutate(rng, valid_wf), "yaml")
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
            yield ["plan", "--workflow", str(path), "--profiles", str(profiles), "--rate", "5", "--json"], \
                "plan with a hostile workflow file"
        elif kind < 0.7:
            path = tmp / f"prof-{n}.json"
            text = raw_hostile_text(rng) if rng.random() < 0.3 else dump(rng, mutate(rng, valid_prof), "json")
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
            yield ["plan", "--workflow", str(workflow), "--profiles", str(path), "--rate", "5", "--json"], \
                "plan with a hostile profiles file"
        elif kind < 0.85:
            flag = rng.choice(["--seed", "--duration", "--noise", "--esg-margin"])
            yield ["simulate", "--workload", str(workload), "--profiles", str(profiles), "--duration", "0.5",
                   "--policies", "esg", flag, rng.choice(HOSTILE_TEXT)], f"simulate {flag}"
        elif kind < 0.9:
            trace = tmp / "workloads" / f"trace-{n}.csv"
            cells = ",".join(rng.choice(HOSTILE_TEXT + ["60", "0", "7"]) for _ in range(3))
            text = raw_hostile_text(rng) if rng.random() < 0.2 else \
                f"HashOwner,HashApp,HashFunction,Trigger,1,2,3\no,a,f,http,{cells}\n"
            trace.write_text(text, encoding="utf-8", errors="surrogateescape")
            path = tmp / "workloads" / f"replay-{n}.yaml"
            path.write_text("gpus: 1\nduration_s: 0.5\nworkflows:\n  - workflow: ../workflows/image.yaml\n"
                            f"    arrivals: {{kind: azure2019, file: {trace.name}, row: 0}}\n")
            yield ["simulate", "--workload", str(path), "--profiles", str(profiles), "--policies", "esg"], \
                f"simulate a hostile trace row {cells[:40]!r}"
        elif kind < 0.95:
            path = tmp / "workloads" / f"load-{n}.yaml"
            doc = yaml.safe_load(workload.read_text())
            doc["duration_s"] = 0.5
            text = raw_hostile_text(rng) if rng.random() < 0.3 else dump(rng, mutate(rng, doc), "yaml")
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
            yield ["simulate", "--workload", str(path), "--profiles", str(profiles), "--policies", "esg"], \
                "simulate with a hostile workload file"
        else:
            cmd = rng.choice(["plan", "simulate", "up", "scaler", "profile", "nope"])
            yield [cmd, rng.choice(["--help-me", "--rate", "-x", "--json=1", "\x00"]),
                   rng.choice(HOSTILE_TEXT)], f"{cmd} with a hostile flag"


class _Hang(Exception):
    pass


def run_cli(argv: list[str]) -> tuple[int, str, str, float, Optional[BaseException]]:
    """esg's main in this process: (exit code, stdout, stderr, seconds, escaped exception)."""
    from esg_plugin.cli.main import main

    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    started = time.perf_counter()
    escaped = None
    code = -1
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # --help
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException as exc:  # noqa: BLE001 - a traceback is what we look for
        escaped = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - started, escaped


def check_cli(argv: list[str], what: str) -> tuple[Optional[str], float]:
    """(failure or None, seconds) of one run."""
    code, out, err, seconds, escaped = run_cli(argv)
    if isinstance(escaped, _Hang):
        return f"{what}: hung over {HANG_S:g} s", seconds
    if escaped is not None:
        return f"{what}: {type(escaped).__name__}: {str(escaped)[:120]}", seconds
    if code not in (0, 2, 3):
        return f"{what}: exit {code}", seconds
    if code == 2 and (not err.strip() or "\n" in err.strip() or "Traceback" in err):
        return f"{what}: exit 2 without one line of error: {err[:200]!r}", seconds
    if code in (0, 3) and argv[0] == "plan":
        bad = wrong_plan(out)
        if bad:
            return f"{what}: exit {code} with a wrong plan: {bad}", seconds
    return None, seconds


def wrong_plan(out: str) -> Optional[str]:
    """Why a printed plan cannot be right (None if it can)."""
    try:
        doc = json.loads(out)
    except ValueError:
        return "not JSON"
    for stage in (doc.get("stages") or {}).values():
        replicas = stage.get("replicas")
        if not isinstance(replicas, int) or not 1 <= replicas <= 10_000:
            return f"replicas {replicas!r}"
        for key in ("exec_ms", "latency_ms", "cost"):
            value = stage.get(key)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                return f"{key} {value!r}"
    cost = doc.get("cost")
    if cost is not None and not (math.isfinite(cost) and cost > 0):
        return f"cost {cost!r}"
    return None


# --- the function runtime's HTTP surface ------------------------------------------
HANDLER_SOURCE = """
import json

def handle(event, context):
    return {"statusCode": 200, "body": {"echo": event.body.decode("utf-8", "replace")[:50]}}
"""


def runtime_requests(rng: random.Random, token: str) -> Iterator[tuple[dict, bytes, str]]:
    """(WSGI environ without wsgi.input, body bytes, what) of hostile requests."""
    while True:
        method = rng.choice(["GET", "POST", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "PROPFIND", "OPTIONS",
                             "HEAD", "PATCH", "post", ""])
        path = rng.choice(["/", "/x", "/_esg/config", "/_esg/config", "/_esg/health", "/_esg/metrics", "/_esg/",
                           "/_esg/nope", "//", "/" + "a" * 5000, "/%00", "/?a=1&a=2"])
        body = rng.choice([b"", b"{}", b'{"a": 1}', b"\xff\xfe", b"[" * 10_000, b"x" * rng.choice([1, 1000, 70_000])])
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path.split("?")[0],
                   "QUERY_STRING": path.partition("?")[2]}
        if path == "/_esg/config" and method in ("PUT", "POST"):
            field = rng.choice(["max_batch_size", "max_wait_ms", "gpu_share", "other"])
            value = rng.choice(["1e13", "1e300", "-1", "NaN", "Infinity", "1e999", "4097", "0", "3", "2.5", "true",
                                "null", '"5"', "[1]", "9" * 400, "60000", "60001"])
            body = rng.choice([f'{{"{field}": {value}}}'.encode(), body])
            if rng.random() < 0.8:
                environ["HTTP_AUTHORIZATION"] = rng.choice([f"Bearer {token}", "Bearer wrong", "Basic x", ""])
        length = rng.choice([str(len(body)), str(len(body)), "-1", "abc", "99999999999999999999", "", "1e3",
                             str(len(body) + 10)])
        chunked = rng.random() < 0.15
        if chunked:
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
            if rng.random() < 0.7:
                body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            else:
                body = rng.choice([b"zz\r\nabc", b"5\r\nab", b"ffffffffffff\r\n", b"-5\r\n"])
        elif length:
            environ["CONTENT_LENGTH"] = length
        if rng.random() < 0.3:
            environ["HTTP_X_ESG_DEADLINE_MS"] = rng.choice(["nan", "inf", "-inf", "1e300", "-1", "abc", "0",
                                                            str(int(time.time() * 1000) + 5000), "9" * 400])
        environ["CONTENT_TYPE"] = rng.choice(["application/json", "text/plain", "", "multipart/form-data"])
        yield environ, body, f"{method} {path[:30]} len={length!r} chunked={chunked}"


ALLOWED_STATUS = {200, 400, 401, 403, 404, 405, 413, 415, 429, 503, 504}


def check_runtime(app, environ: dict, body: bytes, what: str) -> Optional[str]:
    """One hostile request straight into the runtime's WSGI application."""
    environ = {**environ, "wsgi.input": io.BytesIO(body)}
    status: list[str] = []

    def start_response(s, headers):
        status.append(s)

    try:
        payload = b"".join(app(environ, start_response))
    except BaseException as exc:  # noqa: BLE001
        return f"{what}: {type(exc).__name__}: {exc}"
    code = int(status[0].split()[0])
    if code not in ALLOWED_STATUS:
        return f"{what}: status {code}"
    if code >= 400:
        try:
            doc = json.loads(payload)
        except ValueError:
            return f"{what}: {code} without a JSON reason"
        if not isinstance(doc, dict) or "error" not in doc:
            return f"{what}: {code} without an error field"
    return None


# --- metrics the scaler reads ---------------------------------------------------------
GATEWAY_PAGE = """# TYPE gateway_function_invocation_started counter
gateway_function_invocation_started{{function_name="a.openfaas-fn"}} {started}
# TYPE gateway_function_invocation_total counter
gateway_function_invocation_total{{function_name="a.openfaas-fn",code="200"}} {ok}
gateway_function_invocation_total{{function_name="a.openfaas-fn",code="504"}} {late}
"""
REPLICA_PAGE = """# TYPE esg_queue_length gauge
esg_queue_length {queue}
# TYPE esg_exec_seconds histogram
esg_exec_seconds_sum {exec_sum}
esg_exec_seconds_count {batches}
# TYPE esg_batch_size histogram
esg_batch_size_sum {requests}
esg_batch_size_count {batches}
"""


def metric_pages(rng: random.Random) -> Iterator[tuple[bytes, bytes, str]]:
    """(gateway page, replica page, what): counters that move plausibly,
    jump, go backwards, or are not numbers; pages that are not metrics."""
    started = ok = 0.0
    while True:
        step = rng.random()
        if step < 0.5:
            started += rng.randint(0, 50)
            ok = min(started, ok + rng.randint(0, 50))
            values = {"started": started, "ok": ok, "late": rng.randint(0, 5)}
        else:
            values = {k: rng.choice(["1e300", "-1e300", "NaN", "+Inf", "-5", "2.5e8", str(started * 1e6), "0",
                                     "1e-300", "abc", str(10**30)]) for k in ("started", "ok", "late")}
        gateway = GATEWAY_PAGE.format(**values)
        if rng.random() < 0.1:
            gateway = rng.choice(["not metrics {", "\x00\xff", "", gateway[: rng.randint(0, len(gateway))],
                                  "# TYPE x counter\n" * 10_000])
        replica = REPLICA_PAGE.format(**{k: rng.choice(["0", "3", "NaN", "-1", "1e300", "+Inf", "0.5"])
                                         for k in ("queue", "exec_sum", "batches", "requests")})
        yield gateway.encode("utf-8", "surrogateescape"), replica.encode(), f"{values}"


# --- the project's small HTTP services over a real socket (router, gateway) -------------
def raw_requests(rng: random.Random, paths: list[str]) -> Iterator[tuple[bytes, str]]:
    """Raw bytes of hostile HTTP requests, and what each is."""
    while True:
        method = rng.choice(["GET", "POST", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "BREW", "HEAD", "OPTIONS"])
        path = rng.choice(paths + ["/", "/nope", "/" + "a" * 70_000, "/%00", "*", "http://x/y"])
        body = rng.choice([b"", b"{}", b'{"replicas": 2}', b'{"replicas": 1e30}', b"\xff", b"[" * 5000,
                           b"x" * 100_000])
        headers = [f"Host: x"]
        style = rng.random()
        if style < 0.6:
            headers.append(f"Content-Length: {len(body)}")
        elif style < 0.7:
            headers.append(f"Content-Length: {rng.choice(['-1', 'abc', '99999999999999999999', '1e3', ''])}")
        elif style < 0.8:
            headers.append("Transfer-Encoding: chunked")
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        if rng.random() < 0.3:
            headers.append(rng.choice(["Content-Type: application/json", "Content-Type: text/plain",
                                       "Authorization: Bearer nope", "Authorization: Basic !!!",
                                       "X-ESG-Deadline-Ms: nan", "X-ESG-Downstream-Ms: -5",
                                       "X-ESG-Downstream-Ms: 1e300", "X-ESG-Downstream-Ms: 20",
                                       "X: " + "y" * 70_000]))
        if rng.random() < 0.05:
            headers += [f"H{i}: v" for i in range(200)]
        line = rng.choice([f"{method} {path} HTTP/1.1", f"{method} {path} HTTP/1.0", f"{method} {path}",
                           "GARBAGE", "", f"{method} {path} HTTP/9.9"])
        data = (line + "\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode("latin-1", "replace") + body
        if rng.random() < 0.05:
            data = data[: rng.randint(0, len(data))]  # cut short: the server must time out, not hang
        yield data, f"{line[:40]!r} {headers[1][:40] if len(headers) > 1 else ''}"


def check_raw(port: int, data: bytes, what: str, timeout_s: float = 45.0) -> Optional[str]:
    """Send one raw request; the server must answer with a status and a JSON
    reason, or close the connection, within its timeout — never hang."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server closed early (it refused the request): read what it said
            answer = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                answer += chunk
    except socket.timeout:
        return f"{what}: no answer and no close within {timeout_s:g} s"
    except OSError as err:
        return f"{what}: {err}"
    if not answer:
        return None  # closed without a word: a request line it could not read
    # HTTP/1.1 keeps the connection: bytes after a request without a body are
    # the next request (pipelined), and each gets its own answer, in turn
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return f"{what}: not an HTTP answer: {answer[:80]!r}"
        lengths = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")]
        size = int(lengths[0]) if lengths and lengths[0].isdigit() and not data.startswith(b"HEAD") else len(rest)
        body, answer = rest[:size], rest[size:]
        code = int(parts[1])
        if code >= 500 and code not in (502, 503, 505):  # 505: HTTP/9.9 is not a version
            return f"{what}: status {code}"
        if code >= 400 and body and not data.startswith(b"HEAD"):
            try:
                if "error" not in json.loads(body):
                    return f"{what}: {code} without an error field"
            except ValueError:
                return f"{what}: {code} without a JSON reason: {body[:80]!r}"
    return None
