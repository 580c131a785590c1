"""Workers forked from a process that has imported torch already.

A worker's start on a small machine is mostly ``import torch``: 2.6 s of
a core for ResNet-50's 3.1 s (``python bench/worker_start.py``), seconds
during which a scale-up's replica is not there and the cores are shared
with the replicas that serve. The embedded platform therefore starts one
zygote per platform (Android's name for it; gunicorn's ``--preload`` and
a pre-fork server do the same): a process that imports torch once and,
asked over its stdin, forks a worker from itself. The child takes the
worker's environment, folder, log and nice value, runs the function's
``index.py`` as ``python index.py`` would, and exits with its status.

What must hold for a fork to be a worker like any other:

- **Nothing read at torch's import differs**: libraries read their
  variables when torch loads them (``OMP_*``, ``GOMP_SPINCOUNT``,
  ``MKL_*``, ``CUDA_*``, ...), here once, in the zygote. A worker whose
  environment sets such a variable differently from the zygote's is
  started as a plain process instead (:func:`fits`).
- **No thread, no CUDA in the zygote**: it imports torch and runs nothing
  (OpenMP's and torch's thread pools start at the first parallel work, in
  the child; CUDA initialises in the child).
- **No worker outlives the platform**: the zygote dies with the platform
  (``PR_SET_PDEATHSIG``), each worker with the zygote.

Protocol, one JSON object per line: in ``{"cwd", "env", "log", "nice"}``,
out ``{"pid": N}`` or ``{"error": "..."}``. The zygote reaps its children
(``SIGCHLD`` ignored): the platform follows a worker through a pidfd, which
says when it exits but not with what status.
"""

from __future__ import annotations

import json
import os
import runpy
import select
import signal
import subprocess
import sys
import traceback
from typing import Mapping, Optional

ANSWER_TIMEOUT_S = 60.0
"""The longest the platform waits for the zygote's answer (its first one
waits for torch's import, seconds); past it the zygote is not asked again
and workers start as plain processes (:meth:`Zygote.fork`)."""

LOADED_AT_IMPORT = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH_", "LD_", "MALLOC_",
                    "PYTHON", "NVIDIA_")
"""Prefixes of the variables that torch, the libraries it loads, or Python
itself read once, at start or import."""


def fits(worker_env: Mapping[str, str], zygote_env: Mapping[str, str]) -> bool:
    """Whether a worker with ``worker_env`` may be forked from a zygote
    started with ``zygote_env``: every variable read at import is the same."""
    keys = {k for k in (*worker_env, *zygote_env) if k.startswith(LOADED_AT_IMPORT)}
    return all(worker_env.get(k) == zygote_env.get(k) for k in keys)


def serve(requests, answers) -> int:
    """The zygote's loop: import torch, then fork a worker per request."""
    import torch  # noqa: F401 - the point of the zygote

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped at once: no zombies
    for line in requests:
        try:
            request = json.loads(line)
            pid = os.fork()
        except (ValueError, OSError) as err:
            answers.write(json.dumps({"error": str(err)}) + "\n")
            answers.flush()
            continue
        if pid == 0:
            _become_worker(request)  # never returns
        if request.get("nice"):  # here, not in the child: at its lower priority before the platform hears of it
            try:
                os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + int(request["nice"]))
            except OSError:
                pass
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
    return 0


def _become_worker(request: dict) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        die_with_parent()
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]
        sys.argv = ["index.py"]
        runpy.run_path("index.py", run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - a worker's crash goes to its log, as python's would
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def die_with_parent() -> None:
    """In a child, before it runs: SIGTERM when its parent dies, however it
    dies (Linux ``prctl(PR_SET_PDEATHSIG)``), so that nothing outlives the
    platform (a plain worker, the zygote, a worker the zygote forked)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


class ForkedProcess:
    """A worker forked by the zygote, followed through a pidfd: what the
    platform asks of a ``subprocess.Popen`` (``pid``, ``poll``, ``wait``,
    ``send_signal``, ``kill``). Its exit status is not known (the zygote
    reaps it): ``returncode`` is -1 once it has exited."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:  # it exited (and was reaped) already: a start that failed at once
            self.fd, self.returncode = -1, -1

    def poll(self) -> Optional[int]:
        if self.returncode is None and select.select([self.fd], [], [], 0)[0]:
            self._exited()
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            if not select.select([self.fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            self._exited()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self.fd, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exited(self) -> None:
        # the pidfd stays open until the object goes (``__del__``): the platform's
        # stopper and its status poll may both see the exit at once, and a second
        # close — or a select on a number the first close freed for another file —
        # raced (EBADF in ``esg-stop-echo``); an exited process's pidfd stays readable
        self.returncode = -1

    def __del__(self):
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)


class Zygote:
    """The platform's side: starts the zygote, asks it for workers. Any
    failure (it cannot start, it died, it answers late or nonsense) makes
    :meth:`fork` answer None from then on, and the platform starts plain
    processes; the zygote is left running (the workers it forked die with
    it) until :meth:`close`, at the platform's shutdown."""

    def __init__(self, env: Mapping[str, str]):
        if not hasattr(os, "pidfd_open"):
            raise OSError("no pidfd_open here (Linux 5.3 or later): workers start as plain processes")
        self.env = dict(env)
        self.usable = True
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            [sys.executable, "-c", "import sys; from esg_plugin.local.zygote import serve; "
                                   "sys.exit(serve(sys.stdin, sys.stdout))"], env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)

    def fork(self, cwd: str, env: Mapping[str, str], log: str, nice: int) -> Optional[ForkedProcess]:
        """A worker forked from the zygote, or None (then start a plain one).
        Not thread-safe: the platform asks under its lock."""
        if not self.usable or self.proc is None or self.proc.poll() is not None or not fits(env, self.env):
            return None
        try:
            self.proc.stdin.write(json.dumps({"cwd": cwd, "env": dict(env), "log": log, "nice": nice}) + "\n")
            self.proc.stdin.flush()
            if not select.select([self.proc.stdout], [], [], ANSWER_TIMEOUT_S)[0]:
                raise OSError(f"the zygote did not answer within {ANSWER_TIMEOUT_S:g} s")
            answer = json.loads(self.proc.stdout.readline() or "{}")
            return ForkedProcess(int(answer["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            self.usable = False
            return None

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

