"""The embedded platform's supervisor: OpenFaaS on one machine, without
Kubernetes — the workers and their rollouts.

- **Workers**: each function of a stack.yml (``lang: esg-python3``) runs as
  processes of the template runtime (the template folder with the handler
  overlaid into ``function/``, ``python index.py``), one per replica, with
  the stack's environment plus ``ESG_*`` settings — forked from a zygote
  that has imported torch once (``zygote.py``: a start takes about 1 s
  instead of 3–15 s), else started as plain processes.
- Its gateway is ``gateway.py`` (OpenFaaS's HTTP API and metrics over these
  workers) and the scaler's actuator for it ``actuator.py``.

A worker leaves the gateway's rotation before it is stopped, as a pod leaves
its Service's endpoints: it gets SIGTERM only once every request the gateway
had already sent to it is answered, so no request meets a draining worker.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from ..errors import ESGError
from ..runtime import contract as C
from ..runtime.client import ConnectionPool
from ..runtime.gpu import spin_count_default
from ..model import FunctionState
from .zygote import ForkedProcess, Zygote, die_with_parent

TEMPLATE = Path(__file__).resolve().parents[2] / "template" / "esg-python3"
ROLLOUT_CHECK_S = 1.0
"""An idle rollout looks at its workers this often (a crashed one is replaced)."""


class PlatformError(ESGError, RuntimeError):
    """A function that cannot be prepared or started."""


MAX_REPLICAS = 16
"""The platform's default bound on one function's replicas."""

START_NICE = 10
"""A worker starts (torch and its model: a core for seconds) at this nice
value and runs at the platform's own once ready, or after
:data:`START_NICE_S` at the latest — where the platform may
raise a process's priority again (``CAP_SYS_NICE``, as root has it, or an
``RLIMIT_NICE`` that allows it): on a 2-core machine a start at full
priority takes a core from the replicas that serve, and the requests they
hold miss while a scale-up is under way. Kubernetes gives a serving pod
its CPU request however many pods start beside it; a nice value is the
nearest a plain process gets. Without that right workers start at the
platform's priority, as before."""

START_NICE_S = 5.0
"""The longest a worker starts at :data:`START_NICE`: about what a start
takes beside the load the machine serves (4–6 s for a ResNet-50 worker on
2 cores under ``esg up`` at 1x). On a machine saturated by load a worker at
nice 10 has a tenth of the weight of each one serving, and the capacity a
scale-up is for must not wait on that: past this bound the start competes
as an equal (``docs/local.md``)."""


def can_raise_priority() -> bool:
    """Whether this process may lower a nice value again: ``CAP_SYS_NICE``
    in its effective capabilities, or an ``RLIMIT_NICE`` that allows nice 0."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:") and int(line.split()[1], 16) >> 23 & 1:  # CAP_SYS_NICE = 23
                return True
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - os.getpriority(os.PRIO_PROCESS, 0)
    except (ImportError, OSError, ValueError, AttributeError):
        return False


def set_nice(pid: int, nice: int) -> bool:
    """Every thread of process ``pid`` at ``nice`` (Linux's nice value is a
    thread's: torch's threads keep the one they were started with); False
    when not allowed or the process is gone (every thread it listed gone
    before it could be changed)."""
    for _ in range(2):  # a thread started meanwhile by one not yet changed
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return False
        changed = 0
        for tid in threads:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed += 1
            except ProcessLookupError:
                pass  # this thread ended meanwhile
            except OSError:
                return False
        if not changed:
            return False
    return True


def build_folder(template: Path, handler: Path, folder: Path) -> Path:
    """``folder``: the template with the handler folder overlaid into
    function/, as ``faas-cli build`` lays out a function's build context."""
    shutil.copytree(template, folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(folder / "function")
    shutil.copytree(handler, folder / "function", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function" / "__init__.py").touch()
    return folder


LISTEN_PORTS = (10000, 32768)
"""Where a worker's port is drawn from when the kernel's range of
ephemeral ports cannot be read: below Linux's default one."""

PORT_ATTEMPTS = 3
"""Starts of a worker on fresh ports when the port it was given was taken
before it could bind it ("Address already in use")."""


def ephemeral_ports(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections, (first, last)."""
    try:
        first, last = (int(v) for v in Path(path).read_text().split())
    except (OSError, ValueError):
        return LISTEN_PORTS[1], 60999
    return first, last


def free_port() -> int:
    """A port no socket holds now, for a worker to listen on. It is free only
    until the worker binds it, and a port the kernel picked (``bind`` to 0)
    lies in its ephemeral range, where it may meanwhile become the local end
    of an outgoing connection — the gateway's, the load generator's: the
    worker then fails to start, "Address already in use". So it is drawn
    below that range, where only a listener that binds an explicit port can
    take it (a worker that loses the race is started again on another port:
    ``_wait_ready``); the kernel's pick only where no port there is free."""
    low, high = LISTEN_PORTS[0], min(LISTEN_PORTS[1], ephemeral_ports()[0])
    for _ in range(64 if high - low > 1000 else 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", random.randrange(low, high)))
            except OSError:
                continue
            return s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Worker:
    proc: subprocess.Popen
    """The process (a ``zygote.ForkedProcess`` where the zygote forked it)."""
    port: int
    share: int
    batching: tuple[int, float] = (1, 0.0)
    """(batch size, batching timeout in ms) this worker was last given."""
    in_flight: int = 0
    """Requests the gateway has sent to it and not yet had answered."""
    log: Optional[Path] = None
    """Its stdout and stderr (a file: a pipe nobody reads would block a worker that writes much)."""
    live_share: bool = True
    """Whether it may take another share without a restart (a CPU worker: its
    threads); False once it answered that a restart is required (CUDA)."""
    niced_until_s: Optional[float] = None
    """While it starts at a lower priority: the monotonic time it gets the
    platform's back at the latest (:data:`START_NICE_S`); None once it has."""
    spawned_at_s: float = 0.0
    """Monotonic time it was started."""
    port_attempts: int = 0
    """Times it was started again because its port was taken first."""


@dataclass
class LocalFunction:
    name: str
    folder: Path
    env: dict
    labels: dict
    annotations: dict
    state: FunctionState
    """The desired state (a Deployment's spec): what the rollout converges to."""
    workers: list = field(default_factory=list)
    """In the gateway's rotation (ready)."""
    starting: list = field(default_factory=list)
    """Started, not yet ready (counted as held, not in the rotation)."""
    cursor: itertools.count = field(default_factory=itertools.count)
    changed: threading.Event = field(default_factory=threading.Event)
    """Set when the desired state changes: wakes the function's rollout."""
    last_error: Optional[str] = None
    """Why the last rollout step failed (None once it succeeds)."""
    errors: int = 0
    """Rollout steps failed so far (to wait on a new failure)."""


class LocalPlatform:
    """Functions as processes, driven as Kubernetes drives a Deployment: the
    desired state (:meth:`desire`, :meth:`scale`, ...) returns at once; one
    rollout thread per function converges its processes to it — batching
    pushed live, a CPU worker's share too (its threads), new replicas started together (at most ``parallel_starts``
    starts at once over the machine, default half its cores), a share change that
    needs a restart (CUDA) rolled one replica at a time (a new one at the new share joins the rotation
    when ready, then an old one leaves: capacity never drops), a failed
    start retried with back-off. A worker leaving the rotation is drained
    and stopped in the background."""

    def __init__(self, stack: Mapping, stack_dir: Path, workdir: Path, template: Path = TEMPLATE,
                 start_timeout_s: float = 120.0, extra_env: Optional[Mapping[str, str]] = None,
                 retry_s: tuple[float, float] = (1.0, 30.0), parallel_starts: Optional[int] = None,
                 max_replicas: int = MAX_REPLICAS, start_nice: Optional[int] = None, zygote: bool = True):
        self.workdir = workdir
        self.logs = workdir / "logs"
        """Each worker's stdout and stderr: ``<function>.<port>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.max_replicas = max_replicas
        """The most replicas of one function (each is a process of a few hundred MB)."""
        self.template = template
        self.start_timeout_s = start_timeout_s
        self.retry_s = retry_s
        """(first, longest) wait before a failed rollout step is tried again."""
        self.token = "esg-local-" + os.urandom(8).hex()
        self.extra_env = dict(extra_env or {})
        self.functions: dict[str, LocalFunction] = {}
        self.spawned: list[int] = []
        """Every worker process ever started (for checks that none outlives a shutdown)."""
        self.closed = False
        """Set by shutdown: from then on nothing new is started."""
        self.lock = threading.RLock()
        """Guards spawning against shutdown."""
        self.answered = threading.Condition()
        """Guards every worker list and in_flight; notified when a request is answered or a rollout moves."""
        self.starts = threading.Semaphore(parallel_starts or max(1, (os.cpu_count() or 1) // 2))
        """Workers starting at once, over all functions: a start (torch and a
        model loading) takes a core for seconds, and on a small machine ten at
        once starve the replicas that serve."""
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)
        self.start_nice = (START_NICE if can_raise_priority() else 0) if start_nice is None else start_nice
        """Added to a worker's nice value until it is ready (:data:`START_NICE`; 0: none)."""
        self.rollouts: list[threading.Thread] = []
        self.stoppers: list[threading.Thread] = []
        self.started: list[tuple[str, float, bool]] = []
        """Every worker that became ready: (function, seconds from its start, forked by the zygote)."""
        self.zygote: Optional[Zygote] = None
        """Forks workers with torch imported already (``zygote.py``); None: every worker a plain process."""
        folders: dict[Path, Path] = {}
        for name, spec in (stack.get("functions") or {}).items():
            spec = spec or {}
            if spec.get("lang") != "esg-python3":
                raise PlatformError(f"function '{name}': the embedded platform runs lang esg-python3 only")
            handler = (stack_dir / spec.get("handler", name)).resolve()
            if not (handler / "handler.py").is_file():
                raise PlatformError(f"function '{name}': no handler.py in {handler}")
            if handler not in folders:
                folders[handler] = self._prepare(handler, len(folders))
            env = {str(k): str(v) for k, v in (spec.get("environment") or {}).items()}
            state = FunctionState(1, int(env.get(C.ENV_MAX_BATCH_SIZE, 1)), float(env.get(C.ENV_MAX_WAIT_MS, 0)),
                                  int(env.get(C.ENV_GPU_SHARE_PCT, 100)))
            self.functions[name] = LocalFunction(name, folders[handler], env, dict(spec.get("labels") or {}),
                                                 dict(spec.get("annotations") or {}), state)
        if zygote:  # once the stack is known good: it imports torch meanwhile
            try:
                self.zygote = Zygote(_with_spin_default({**os.environ, **self.extra_env}))
            except OSError:
                self.zygote = None

    def _prepare(self, handler: Path, index: int) -> Path:
        return build_folder(self.template, handler, self.workdir / f"build-{index}-{handler.name}")

    # --- processes ---------------------------------------------------------
    def _spawn(self, fn: LocalFunction, state: FunctionState) -> Worker:
        with self.lock:
            if self.closed:
                raise PlatformError(f"function '{fn.name}': the platform is shut down")
            port = free_port()
            env = _with_spin_default({
                **os.environ, **fn.env, **self.extra_env, C.ENV_HOST: "127.0.0.1", C.ENV_PORT: str(port),
                C.ENV_MAX_BATCH_SIZE: str(state.batch_size), C.ENV_MAX_WAIT_MS: str(state.max_wait_ms),
                C.ENV_GPU_SHARE_PCT: str(state.gpu_share), C.ENV_CONFIG_TOKEN: self.token})
            log = self.logs / f"{fn.name}.{port}.log"
            proc = self.zygote.fork(str(fn.folder), env, str(log), self.start_nice) if self.zygote else None
            if proc is None:
                with open(log, "ab") as out:  # the child keeps its own descriptor
                    proc = subprocess.Popen([sys.executable, "index.py"], cwd=fn.folder, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=functools.partial(_in_worker, self.start_nice))
            self.spawned.append(proc.pid)
            now_s = time.monotonic()
            return Worker(proc, port, state.gpu_share, (state.batch_size, state.max_wait_ms), log=log,
                          niced_until_s=now_s + START_NICE_S if self.start_nice else None, spawned_at_s=now_s)

    def _respawn(self, fn: LocalFunction, worker: Worker) -> None:
        """``worker`` started again, as it was, on a new port (in place: the
        lists that hold it hold the new process)."""
        batch_size, max_wait_ms = worker.batching
        again = self._spawn(fn, FunctionState(1, batch_size, max_wait_ms, worker.share))
        worker.proc, worker.port, worker.log = again.proc, again.port, again.log
        worker.niced_until_s, worker.spawned_at_s = again.niced_until_s, again.spawned_at_s
        worker.port_attempts += 1

    def _wait_ready(self, fn: LocalFunction, workers: list[Worker]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        for worker in workers:
            while True:
                if self.closed:
                    raise PlatformError(f"function '{fn.name}': the platform is shut down")
                if worker.proc.poll() is not None:
                    error = worker.log.read_text(errors="replace").strip().splitlines() if worker.log else []
                    if error and "Address already in use" in error[-1] and worker.port_attempts < PORT_ATTEMPTS:
                        self._respawn(fn, worker)  # its port was taken before it bound it: another port
                        continue
                    raise PlatformError(f"function '{fn.name}' exited at start: {error[-1] if error else 'no output'}")
                try:
                    if call_worker(worker.port, "GET", C.HEALTH_PATH, timeout=1.0)[0] == 200:
                        self._unnice(worker)  # it serves now: the platform's priority
                        self.started.append((fn.name, time.monotonic() - worker.spawned_at_s,
                                             isinstance(worker.proc, ForkedProcess)))
                        break
                except OSError:
                    pass
                for other in workers:  # a start that takes longer gets the platform's priority too
                    if other.niced_until_s is not None and time.monotonic() >= other.niced_until_s:
                        self._unnice(other)
                if time.monotonic() > deadline:
                    raise PlatformError(f"function '{fn.name}' did not start within {self.start_timeout_s:g} s")
                time.sleep(0.1)

    def _unnice(self, worker: Worker) -> None:
        if worker.niced_until_s is None:
            return
        worker.niced_until_s = None
        if not set_nice(worker.proc.pid, self.nice) and worker.proc.poll() is None:
            self.start_nice = 0  # not allowed after all: the next ones start at the platform's priority

    def _start_ready(self, fn: LocalFunction, state: FunctionState, count: int) -> list[Worker]:
        """``count`` new workers, ready; if any fails to start, none is left running."""
        with self.starts:
            return self._start_ready_now(fn, state, count)

    def _start_ready_now(self, fn: LocalFunction, state: FunctionState, count: int) -> list[Worker]:
        new: list[Worker] = []
        try:
            for _ in range(count):
                worker = self._spawn(fn, state)
                new.append(worker)
                with self.answered:
                    fn.starting.append(worker)
            self._wait_ready(fn, new)
        except PlatformError:
            self._stop(new, timeout_s=5.0)
            raise
        finally:
            with self.answered:
                fn.starting = [w for w in fn.starting if w not in new]
        return new

    def start(self) -> None:
        """One worker per function, started in parallel and ready; then each
        function's rollout runs."""
        with self.lock:
            for fn in self.functions.values():
                fn.workers = [self._spawn(fn, fn.state)]
        for fn in self.functions.values():
            self._wait_ready(fn, fn.workers)
        for fn in self.functions.values():
            thread = threading.Thread(target=self._rollout, args=(fn,), daemon=True, name=f"esg-rollout-{fn.name}")
            thread.start()
            self.rollouts.append(thread)

    def _stop(self, workers: list[Worker], timeout_s: float = 30.0) -> None:
        """Workers already out of the rotation: wait for the requests sent to
        them, then SIGTERM (they drain their queue) and wait for the exit."""
        deadline = time.monotonic() + timeout_s
        with self.answered:
            while any(w.in_flight for w in workers) and time.monotonic() < deadline:
                self.answered.wait(timeout=max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)  # drains its queue, then exits
        for w in workers:
            try:
                w.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()

    def _retire(self, fn: LocalFunction, workers: list[Worker]) -> None:
        """Out of the rotation now; drained and stopped in the background."""
        if not workers:
            return
        with self.answered:
            fn.workers = [w for w in fn.workers if w not in workers]
            self.answered.notify_all()
        thread = threading.Thread(target=self._stop, args=(workers,), daemon=True, name=f"esg-stop-{fn.name}")
        thread.start()
        self.stoppers.append(thread)

    def shutdown(self) -> None:
        """Stop every worker; rollouts end (a start in progress is abandoned)
        and nothing new is started."""
        with self.lock:
            self.closed = True
        for fn in self.functions.values():
            fn.changed.set()
        for thread in self.rollouts:
            thread.join(timeout=60.0)
        with self.answered:
            workers = [w for fn in self.functions.values() for w in fn.workers + fn.starting]
            for fn in self.functions.values():
                fn.workers = []
        self._stop(workers)
        for thread in self.stoppers:
            thread.join(timeout=60.0)
        with self.lock:
            if self.zygote is not None:
                self.zygote.close()

    def pids(self) -> list[int]:
        return [w.proc.pid for fn in self.functions.values() for w in fn.workers]

    # --- the desired state --------------------------------------------------
    def desire(self, name: str, state: FunctionState) -> None:
        """Set a function's desired state; returns at once (the rollout acts)."""
        if self.closed:
            raise PlatformError(f"function '{name}': the platform is shut down")
        if not 0 <= state.replicas <= self.max_replicas:
            raise ValueError(f"function '{name}': replicas must lie in 0..{self.max_replicas}, got {state.replicas}")
        fn = self.functions[name]
        with self.answered:
            fn.state = state
        fn.changed.set()

    def scale(self, name: str, replicas: int) -> None:
        s = self.functions[name].state
        self.desire(name, FunctionState(replicas, s.batch_size, s.max_wait_ms, s.gpu_share))

    def set_batching(self, name: str, batch_size: int, max_wait_ms: float) -> None:
        s = self.functions[name].state
        self.desire(name, FunctionState(s.replicas, batch_size, max_wait_ms, s.gpu_share))

    def set_share(self, name: str, share: int) -> None:
        s = self.functions[name].state
        self.desire(name, FunctionState(s.replicas, s.batch_size, s.max_wait_ms, share))

    def converged(self, name: str) -> bool:
        fn = self.functions[name]
        with self.answered:
            want = fn.state
            return (len(fn.workers) == want.replicas and not fn.starting
                    and all(w.share == want.gpu_share and w.batching == (want.batch_size, want.max_wait_ms)
                            for w in fn.workers))

    def wait_converged(self, name: str, timeout_s: float = 180.0) -> None:
        """Until the function runs its desired state; PlatformError if a
        rollout step fails meanwhile, or on the timeout."""
        fn = self.functions[name]
        deadline = time.monotonic() + timeout_s
        errors = fn.errors
        with self.answered:
            while not self.converged(name):
                if fn.errors != errors:
                    raise PlatformError(fn.last_error or "the rollout failed")
                if self.closed:
                    raise PlatformError(f"function '{name}': the platform is shut down")
                if time.monotonic() > deadline:
                    raise PlatformError(f"function '{name}' did not reach its desired state within {timeout_s:g} s")
                self.answered.wait(timeout=0.2)

    # --- the rollout ----------------------------------------------------------
    def _rollout(self, fn: LocalFunction) -> None:
        backoff = self.retry_s[0]
        while not self.closed:
            try:
                moved = self._rollout_step(fn)
                fn.last_error = None
                backoff = self.retry_s[0]
            except (PlatformError, OSError) as err:
                with self.answered:
                    fn.last_error, fn.errors = str(err), fn.errors + 1
                    self.answered.notify_all()
                fn.changed.wait(backoff)  # a new desired state retries at once
                backoff = min(backoff * 2, self.retry_s[1])
                continue
            with self.answered:
                self.answered.notify_all()
            if not moved:
                fn.changed.wait(ROLLOUT_CHECK_S)  # also: notice a worker that died
            fn.changed.clear()

    def _rollout_step(self, fn: LocalFunction) -> bool:
        """One step toward the desired state; False when there is nothing to do."""
        with self.answered:
            want = fn.state
            workers = list(fn.workers)
        dead = [w for w in workers if w.proc.poll() is not None]
        if dead:  # a crashed replica leaves the rotation; the next step replaces it
            self._retire(fn, dead)
            return True
        batching = (want.batch_size, want.max_wait_ms)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        stale = [w for w in workers if w.batching != batching and w.proc.poll() is None]
        if stale:  # live, no restart: first, since it is cheap
            body = json.dumps(C.config_update(*batching)).encode()
            for worker in stale:
                call_worker(worker.port, "PUT", C.CONFIG_PATH, body, headers, timeout=5.0)
                worker.batching = batching
            return True
        reshare = [w for w in workers if w.share != want.gpu_share and w.live_share and w.proc.poll() is None]
        if reshare:  # a CPU worker takes another share live (its threads); a CUDA one says it needs a restart
            body = json.dumps(C.share_update(want.gpu_share)).encode()
            for worker in reshare:
                status, _, answer = call_worker(worker.port, "PUT", C.CONFIG_PATH, body, headers, timeout=5.0)
                if status != 200:
                    raise PlatformError(f"function '{fn.name}': a share change was answered {status}: "
                                        f"{answer[:200].decode(errors='replace')}")
                try:
                    restart = json.loads(answer).get(C.CONFIG_RESTART_REQUIRED, True) is not False
                except (ValueError, AttributeError):
                    restart = True  # an answer not understood: the restart is the safe way
                if restart:
                    worker.live_share = False  # rolled below, one replica at a time
                else:
                    with self.answered:
                        worker.share = want.gpu_share
            return True
        current = [w for w in workers if w.share == want.gpu_share]
        outdated = [w for w in workers if w.share != want.gpu_share]
        missing = want.replicas - len(current)
        if missing > 0:
            # new replicas in parallel; a share change surges one at a time
            new = self._start_ready(fn, want, 1 if outdated else missing)
            with self.answered:
                fn.workers = fn.workers + new
            self._retire(fn, outdated[:1] if outdated else [])
            return True
        if outdated or len(current) > want.replicas:
            self._retire(fn, outdated + current[want.replicas:])
            return True
        return False

    # --- the gateway's side ---------------------------------------------------
    def acquire(self, name: str, avoid: Optional[Worker] = None) -> Optional[Worker]:
        """The worker with the fewest requests in flight, ties in round robin
        (not ``avoid`` when there is another), counted in flight until
        :meth:`release`. The planner's model is one queue per stage that every
        instance takes from (``SPEC.md``); each worker here has its own queue,
        and the least-loaded pick keeps a request from waiting behind a busy
        worker while another is idle, which round robin does not. (Knative's
        activator and Envoy's ``LEAST_REQUEST`` take the less loaded of two
        random replicas, which scales to many balancers and replicas; over a
        machine's handful, all are compared.)"""
        fn = self.functions.get(name)
        if fn is None:
            return None
        with self.answered:
            workers = [w for w in fn.workers if w is not avoid] or fn.workers
            if not workers:
                return None
            start = next(fn.cursor)
            worker = min((workers[(start + i) % len(workers)] for i in range(len(workers))),
                         key=lambda w: w.in_flight)
            worker.in_flight += 1
            return worker

    def release(self, worker: Worker) -> None:
        with self.answered:
            worker.in_flight -= 1
            self.answered.notify_all()

    def replica_metrics_urls(self) -> dict[str, list[str]]:
        """Each function's replicas' own /_esg/metrics, now (those in the rotation)."""
        with self.answered:
            return {name: [f"http://127.0.0.1:{w.port}{C.METRICS_PATH}" for w in fn.workers]
                    for name, fn in self.functions.items()}

    def held_share(self) -> float:
        """GPU-equivalents (CPU: core-equivalents) held now: Σ share/100 over
        workers, those still starting included (as a pod's request is)."""
        with self.answered:
            return sum(w.share / 100.0 for fn in self.functions.values() for w in fn.workers + fn.starting)


def _with_spin_default(env: dict) -> dict:
    """``env`` with ``GOMP_SPINCOUNT`` as the runtime sets it
    (:func:`runtime.gpu.spin_count_default`): libgomp reads it when torch
    loads it, in the zygote for a forked worker."""
    spin = spin_count_default(env)
    if spin is not None:
        env["GOMP_SPINCOUNT"] = spin
    return env


def _in_worker(start_nice: int) -> None:
    """In the worker, before exec: die with the platform, start at a lower priority."""
    die_with_parent()
    if start_nice:
        os.nice(start_nice)


WORKER_CONNECTIONS = ConnectionPool()
"""Keep-alive connections from the gateway to the workers (the runtime keeps them open)."""


def call_worker(port: int, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None,
                timeout: float = 60.0) -> tuple[int, list, bytes]:
    """One HTTP call to a worker on loopback, on a kept connection: (status, headers, body)."""
    response = WORKER_CONNECTIONS.request(method, f"http://127.0.0.1:{port}{path}", body, headers, timeout_s=timeout)
    return response.status, response.headers.items(), response.body
