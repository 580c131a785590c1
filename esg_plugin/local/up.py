"""``esg up``: the whole system on one machine.

Starts the embedded platform (a worker process per function replica, on the
template runtime), its gateway, the workflow router and a controller — the
ESG scaler with the local actuator (``--policy esg``), or an OpenFaaS-style
autoscaler (``--policy openfaas``: a whole share per replica, no batching,
replicas = rate over 80% of one replica's throughput) — then drives the
workload through the router with an open-loop load generator, shows a live
dashboard, and ends with a report and a clean shutdown of everything it
started.
"""

from __future__ import annotations

import bisect
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..jsontext import loads_json
from ..model import ProfileSet, Workflow
from ..model.config import DEFAULT_QUEUEING_MODEL
from ..planner.baselines import openfaas_replicas
from ..control.admission import AdmissionSettings
from ..router import Router, make_router_server
from ..router.router import time_in_stages_ms
from ..runtime import contract as C
from ..runtime.gpu import affinity_cpus, cpu_allotment
from ..scaler import (FunctionState, GatewayScrape, Memory, Observation, Scaler, ScalerSettings, Topology, decide_functions,
                      freeze_start_up_heap)
from ..scaler.actuators import GPU_SHARE, REPLICAS
from ..scaler.decider import offered_rps
from ..sim.workload import Workload
from .actuator import LocalActuator
from .gateway import GatewayMetrics, make_gateway_server
from .platform import LocalPlatform


UP_BUSY_CAPACITY = 0.8
"""With CPU profiles (a share is a share of the machine's cores), the part
of the machine the ESG plans may keep busy in all: not the whole of it, for
``esg up``'s own process (the router, the gateway, the load; about a tenth
of a 2-core machine at 3x) and for the bursts of random arrivals. A
workflow beyond what the others leave is planned for, and admits, the rate
that fits; the rest gets 429 at the entry (``ControlSettings.busy_capacity``)."""


def entry_body(profile_key: str) -> tuple[bytes, str]:
    """A request body the entry stage of a shipped workflow accepts."""
    if profile_key in ("preprocess", "ssd-mobilenetv2", "espcn", "resnet50", "resnet18"):
        from PIL import Image

        rng = np.random.default_rng(7)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    if profile_key in ("langid-cnn", "bert-mini"):
        return "Das Wetter ist heute schön und die Antwort kam schnell".encode(), "text/plain; charset=utf-8"
    return b"{}", "application/json"


class OpenFaasAutoscaler:
    """OpenFaaS's rps autoscaling, live: every interval, replicas =
    ceil(rate / target) with the target 80% of one whole-share batch-1
    replica's throughput; up at once, down after 60 s."""

    def __init__(self, topology: Topology, profiles: ProfileSet, source, actuator, interval_s: float,
                 max_replicas: int, on_iteration=None):
        self.topology, self.source, self.actuator = topology, source, actuator
        self.on_iteration = on_iteration
        self.interval_s, self.max_replicas = interval_s, max_replicas
        self.exec_ms = {}
        for (wf, stage), fn in topology.functions.items():
            profile = profiles[topology.workflows[wf].stage(stage).function]
            self.exec_ms[fn] = profile.latency(profile.batch_sizes[0], max(profile.gpu_shares)) or 1.0
        self.lower_since: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            observation = self.source.observe(now)
            if observation is not None:
                current = self.actuator.current(list(self.exec_ms))
                desired = {}
                for fn, exec_ms in self.exec_ms.items():
                    rate = max(observation.rates_rps.get(fn, 0.0), observation.recent_rps.get(fn, 0.0))
                    want = min(self.max_replicas, openfaas_replicas(rate, exec_ms))
                    cur = current.get(fn)
                    if cur is not None and want < cur.replicas:
                        since = self.lower_since.setdefault(fn, now)
                        if now - since < 60.0:
                            want = cur.replicas
                    else:
                        self.lower_since.pop(fn, None)
                    desired[fn] = FunctionState(want, 1, 0.0, 100)
                changes = self.actuator.apply(desired)
                if self.on_iteration is not None:
                    self.on_iteration(now, observation, {}, changes)
            stop.wait(self.interval_s)


@dataclass
class LoadResult:
    workflow: str
    sent_s: float
    latency_ms: float
    status: int
    slo_met: bool
    error: str = ""
    """The router's reason when the status is not 200 (or the client's own error)."""
    rejected_by: str = ""
    """For a 429: what turned it away (``contract.REJECTED_BY_*``), as the router said."""
    send_lag_ms: float = 0.0
    """How late the load generator sent it after its drawn time (``sent_s``): an open-loop
    generator that falls behind offers less load than the workload says, then a burst."""
    stages_ms: Optional[dict] = None
    """For a 200: per stage, its queue and execution time, as the router answered them (``stages_ms``)."""


@dataclass
class UpReport:
    policy: str
    duration_s: float
    warmup_s: float
    results: list = field(default_factory=list)
    gateway_invocations: dict = field(default_factory=dict)
    """function -> invocations the gateway counted, at the end."""
    spawned_pids: list = field(default_factory=list)
    worker_starts: list = field(default_factory=list)
    """(function, seconds from its start to ready, forked by the zygote) of every worker that became ready."""
    held: list = field(default_factory=list)
    """(time_s, core- or GPU-equivalents held)."""
    states: list = field(default_factory=list)
    timeline: list = field(default_factory=list)
    """One row per control iteration: per workflow the offered rate (arrivals
    at the entry plus requests shed there, over the window and over the last
    interval), the squared coefficient of variation of its gaps between arrivals over the window
    (``arrival_cv2``: 1, Poisson, below 20 gaps; None without the router's counters), the time a hop between
    stages took (``hop_ms``, the router's), the planned rate, the offered rate the plan
    was made for, and the answers by class; per
    function the queue, execution time, batch size and replicas; the rate each workflow may admit
    (``admit_rps``) and the requests each admission scope lets in flight (``admission_limit``)."""
    actions: list = field(default_factory=list)
    """Every change the controller asked for: time, function, kind, before, after."""
    steps: dict = field(default_factory=dict)
    """workflow -> times of its upward rate steps (from the workload)."""
    step_rates: dict = field(default_factory=dict)
    """workflow -> the rate after each of those steps (from the workload)."""
    admission: str = "off"
    """The entry's admission limit: its scope, or off."""
    settle_s: float = 30.0
    """After a step, the rates are not at steady state for this long (the
    controller's long window)."""
    cpu: list = field(default_factory=list)
    """(time_s, the machine's idle and total CPU time in clock ticks) once a
    second, where ``/proc/stat`` can be read (:func:`cpu_times`)."""
    workflows: dict = field(default_factory=dict)
    """workflow -> its :class:`Workflow` (for where an answer's time went)."""
    constant_spans: dict = field(default_factory=dict)
    """workflow -> the stretches over which its arrivals' intensity is constant (from the workload)."""

    def summary(self) -> dict:
        out = {"policy": self.policy, "admission": self.admission, "duration_s": self.duration_s, "workflows": {}}
        scored = [r for r in self.results if r.sent_s >= self.warmup_s]
        for name in sorted({r.workflow for r in self.results}):
            mine = [r for r in scored if r.workflow == name]
            ok = [r.latency_ms for r in mine if r.status == 200]
            out["workflows"][name] = {
                "requests": len(mine),
                "answered": sum(1 for r in mine if r.status > 0),
                "late": sum(1 for r in mine if r.status == 504 or (r.status == 200 and not r.slo_met)),
                "rejected": sum(1 for r in mine if r.status == 429),
                "rejected_by": dict(sorted(Counter(r.rejected_by or "unknown" for r in mine
                                                   if r.status == 429).items())),
                "errors": sum(1 for r in mine if r.status not in (200, 504, 429)),
                "slo_hit_rate": round(sum(r.slo_met for r in mine) / len(mine), 4) if mine else None,
                "p50_ms": round(statistics.median(ok), 1) if ok else None,
                "p99_ms": round(float(np.percentile(ok, 99)), 1) if ok else None,
                **_time_split(mine, self.workflows.get(name)),
                **_send_lag(mine),
            }
        held = [h for t, h in self.held if self.warmup_s <= t <= self.duration_s]
        out["cost"] = round(statistics.fmean(held), 3) if held else None
        ready_s = [s for _, s, _ in self.worker_starts]
        out["worker_starts"] = {"count": len(ready_s), "forked": sum(1 for *_, f in self.worker_starts if f),
                                "ready_after_median_s": round(statistics.median(ready_s), 2) if ready_s else None,
                                "ready_after_max_s": round(max(ready_s), 2) if ready_s else None}
        out["cost_unit"] = "core- or GPU-equivalents held (Σ share/100 over replicas), time average after warm-up"
        out["machine"] = self.machine()
        total = [r for r in scored]
        out["slo_hit_rate"] = round(sum(r.slo_met for r in total) / len(total), 4) if total else None
        admitted = [r for r in total if r.status != 429]
        out["slo_hit_rate_admitted"] = round(sum(r.slo_met for r in admitted) / len(admitted), 4) if admitted else None
        out["requests"] = len(total)
        for name, row in out["workflows"].items():
            row.update(self.tracking(name))
        out["actions"] = len(self.actions)
        return out

    def machine(self) -> dict:
        """The machine's cores, those this run may use (``cpu_allotment``:
        its affinity mask, or a CPU quota such as a Kubernetes limit), and
        the share of the time of the cores in its affinity mask idle after
        the warm-up (every process's, the load generator's and any hog's
        included; ``/proc/stat``): what the plans left unused — or, near 0,
        that the cores were full. None where it could not be read."""
        scored = [(t, idle, total) for t, idle, total in self.cpu if self.warmup_s <= t <= self.duration_s]
        idle_share = None
        if len(scored) >= 2 and scored[-1][2] > scored[0][2]:
            idle_share = round((scored[-1][1] - scored[0][1]) / (scored[-1][2] - scored[0][2]), 3)
        return {"cores": os.cpu_count(), "cores_allotted": round(cpu_allotment(), 2),
                "idle_share_after_warmup": idle_share}

    def requests(self) -> list[dict]:
        """Every request the load generator sent, in the order sent: workflow,
        time sent (s from the start), latency, status, SLO met, and for a 429
        what turned it away, for a 200 each stage's queue and execution time
        (what the latency beyond them went to is the hops)."""
        return [{"workflow": r.workflow, "sent_s": round(r.sent_s, 4), "send_lag_ms": round(r.send_lag_ms, 2),
                 "latency_ms": round(r.latency_ms, 2),
                 "status": r.status, "slo_met": r.slo_met, **({"rejected_by": r.rejected_by} if r.status == 429 else {}),
                 **({"stages_ms": r.stages_ms} if r.stages_ms is not None else {})}
                for r in sorted(self.results, key=lambda r: r.sent_s)]

    def tracking(self, workflow: str) -> dict:
        """How the plan followed the load: the planned over the offered rate
        at steady state (ticks after the warm-up and not within ``settle_s``
        — the long window — after a step), both the rate the plan covers
        (headroom included) and the offered rate it was made for (the law's
        estimate: its headroom is a target utilisation, not a misreading of
        the load), the time from each upward rate step to the first scale-up
        (more replicas or a larger share) of one of the workflow's functions — with the relative
        noise of the offered rate itself (a Poisson count over the window: 1/√(rate·window)), against
        which "within 15%" is to be read —, and, for a workflow the
        machine's capacity held to a rate before the step (``admit_rps``), to the first tick that
        admits more (5% or more, or no limit); and the time to the first tick whose plan covers the
        step's new rate (a re-plan that may need no new replica: the running ones can carry it).
        The estimate is also read against the arrivals' own mean over the stretch of constant
        intensity the tick lies in (at least ``settle_s`` long; none for a diurnal load): over an
        80-s run at 1 rps the arrivals themselves stray ±11% from the generator's rate, and
        no reading of the load can know better than they do."""
        steps = self.steps.get(workflow, [])
        ratios, estimates, noise, nominal, counted = [], [], [], [], []
        sent = sorted(r.sent_s for r in self.results if r.workflow == workflow)
        spans = [(a, b) for a, b in self.constant_spans.get(workflow, []) if b - a >= self.settle_s]
        for row in self.timeline:
            wf = row["workflows"].get(workflow)
            if (wf is None or row["t"] < self.warmup_s or not wf["offered_rps"] or wf["planned_rps"] is None
                    or any(0 <= row["t"] - t < self.settle_s for t in steps)):
                continue
            ratios.append(wf["planned_rps"] / wf["offered_rps"])
            noise.append(1.0 / math.sqrt(wf["offered_rps"] * self.settle_s))
            if wf.get("estimate_rps") is not None:
                estimates.append(wf["estimate_rps"] / wf["offered_rps"])
                if wf.get("nominal_rps"):
                    nominal.append(wf["estimate_rps"] / wf["nominal_rps"])
                span = next(((a, b) for a, b in spans if a <= row["t"] < b), None)
                arrived = None if span is None else \
                    (bisect.bisect_left(sent, span[1]) - bisect.bisect_left(sent, span[0])) / (span[1] - span[0])
                if arrived:
                    counted.append(wf["estimate_rps"] / arrived)
        reaction = []
        functions = {f for row in self.timeline for f in row["workflows"].get(workflow, {}).get("functions", [])}
        for t in steps:
            ups = [a["t"] - t for a in self.actions if a["t"] >= t and a["function"] in functions
                   and a["kind"] in (REPLICAS, GPU_SHARE) and a["before"] is not None
                   and a["after"] is not None and a["after"] > a["before"]]
            reaction.append(round(min(ups), 2) if ups else None)
        # a workflow held at its part of the machine answers a step by admitting more, not by scaling
        admits = [(row["t"], row.get("admit_rps", {}).get(workflow)) for row in self.timeline]
        admitted_more = []
        for t in steps:
            before = [a for at, a in admits if at < t]
            if not before or before[-1] is None:
                admitted_more.append(None)  # not held before the step: its reaction is a scale-up
                continue
            rises = [at - t for at, a in admits if at >= t and (a is None or a > before[-1] * 1.05)]
            admitted_more.append(round(min(rises), 2) if rises else None)
        covering = []
        for t, rate in zip(steps, self.step_rates.get(workflow, [None] * len(steps))):
            planned = [row["t"] - t for row in self.timeline if row["t"] >= t and rate is not None
                       and (row["workflows"].get(workflow) or {}).get("planned_rps") is not None
                       and row["workflows"][workflow]["planned_rps"] >= rate]
            covering.append(round(min(planned), 2) if planned else None)
        return {
            "planned_over_offered_median": _median(ratios),
            "steady_ticks_within_15pct": _within_15pct(ratios),
            "estimate_over_offered_median": _median(estimates),
            "steady_ticks_estimate_within_15pct": _within_15pct(estimates),
            # against the intensity the load generator draws from, free of the window's own noise
            "estimate_over_nominal_median": _median(nominal),
            "steady_ticks_estimate_within_15pct_of_nominal": _within_15pct(nominal),
            # against the arrivals' own mean over the stretch of constant intensity
            "estimate_over_arrivals_median": _median(counted),
            "steady_ticks_estimate_within_15pct_of_arrivals": _within_15pct(counted),
            # how much the offered rate itself moves: a Poisson count over the window, 1/sqrt(rate x window)
            "offered_window_noise_median": _median(noise),
            "step_to_first_scale_up_s": reaction,
            "step_to_admitting_more_s": admitted_more,
            "step_to_plan_covering_s": covering,
        }


def _median(ratios: list[float]) -> Optional[float]:
    return round(statistics.median(ratios), 3) if ratios else None


def _within_15pct(ratios: list[float]) -> Optional[float]:
    """The share of the ratios within 15% of 1."""
    return round(sum(0.85 <= r <= 1.15 for r in ratios) / len(ratios), 3) if ratios else None


def run_up(stack: dict, stack_dir: Path, topology: Topology, profiles: ProfileSet, workload: Workload,
           policy: str, seed: int = 1, interval_s: float = 5.0, max_replicas: int = 3,
           dashboard: Optional[callable] = None, workdir: Optional[Path] = None, cpu_hogs: int = 0,
           admission: Optional[AdmissionSettings] = None, logs_to: Optional[Path] = None,
           zygote: bool = True, queueing_model: str = DEFAULT_QUEUEING_MODEL) -> UpReport:
    """``logs_to``: where the workers' logs (stdout and stderr) are copied at the end; ``zygote``:
    workers forked from a process that imported torch once (``zygote.py``), else each a plain process;
    ``queueing_model``: the scaler's (ESG's plans only)."""
    own_workdir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="esg-up-")) if workdir is None else workdir
    stages = set(topology.functions.values())  # the router runs beside the platform, not as a function
    stack = {**stack, "functions": {k: v for k, v in stack["functions"].items() if k in stages}}
    platform = LocalPlatform(stack, stack_dir, workdir, zygote=zygote)
    servers = []
    control: Optional[threading.Thread] = None
    stop = threading.Event()
    report = UpReport(policy, workload.duration_s, workload.warmup_s,
                      admission=admission.scope if admission else "off", workflows=dict(topology.workflows))
    for load in workload.workflows:
        report.constant_spans[load.workflow.name] = load.arrivals.constant_spans_s(workload.duration_s)
        if load.arrivals.kind == "steps":
            steps = load.arrivals.params["steps"]
            ups = [(float(t), float(r)) for (t, r), (_, before) in zip(steps[1:], steps) if r > before]
            report.steps[load.workflow.name] = [t for t, _ in ups]
            report.step_rates[load.workflow.name] = [r for _, r in ups]
    clock = {"started": time.monotonic()}
    if policy == "esg":  # deployed as planned for the least load, so that the first plans restart nothing
        for fn, state in initial_states(topology, profiles, max_replicas).items():
            platform.functions[fn].state = state
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)
            for _ in range(cpu_hogs)]
    try:
        platform.start()
        gateway_metrics = GatewayMetrics()
        gateway = make_gateway_server(platform, metrics=gateway_metrics)
        servers.append(gateway)
        gateway_url = f"http://127.0.0.1:{gateway.server_address[1]}"
        router = Router(topology, gateway_url, admission=admission)
        router_server = make_router_server(router)
        servers.append(router_server)
        for server in servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        router_url = f"http://127.0.0.1:{router_server.server_address[1]}"
        report.settle_s = max(30.0, 3 * interval_s)
        source = GatewayScrape(gateway_url + "/metrics", window_s=report.settle_s,
                               router_url=router_url + "/metrics", replicas=platform.replica_metrics_urls)
        actuator = LocalActuator(platform)

        def record(now, observation, planned_rps, changes, reasons=None, admit_rps=None, estimates_rps=None):
            row = timeline_row(now - clock["started"], topology, platform, observation, planned_rps, estimates_rps)
            row["reasons"] = {k: v for k, v in (reasons or {}).items() if k in topology.workflows}
            row["admit_rps"] = dict(admit_rps or {})
            row["admission_limit"] = router.admission_limits()
            for load in workload.workflows:  # the intensity the load generator draws from: the true offered rate
                if load.workflow.name in row["workflows"]:
                    row["workflows"][load.workflow.name]["nominal_rps"] = round(load.arrivals.rate_at_rps(row["t"]), 3)
            report.timeline.append(row)
            report.actions.extend({"t": round(now - clock["started"], 2), "function": c.function, "kind": c.kind,
                                   "before": c.before, "after": c.after} for c in changes)

        if policy == "esg":
            settings = ScalerSettings(interval_s=interval_s, window_s=max(30.0, 3 * interval_s),
                                      scale_down_delay_s=30.0, max_replicas=max_replicas,
                                      busy_capacity=UP_BUSY_CAPACITY if admission and profiles.time_shared else 0.0,
                                      queueing_model=queueing_model)

            def on_iteration(now, obs, decision, changes):
                if admission:  # the plan's own limit: what the node cannot serve is shed at once
                    router.set_admit_rates(decision.admit_rps)
                router.set_downstream_ms(decision.downstream_exec_ms)  # each stage's batcher: what runs after it
                record(now, obs, decision.rates_rps, changes, decision.reasons, decision.admit_rps,
                       decision.estimates_rps)

            controller = Scaler(topology, profiles, settings, source, actuator, on_iteration=on_iteration)
        else:
            controller = OpenFaasAutoscaler(topology, profiles, source, actuator, interval_s, max_replicas,
                                            on_iteration=record)
        freeze_start_up_heap()
        started = clock["started"] = time.monotonic()
        control = threading.Thread(target=controller.run, args=(stop,), daemon=True, name="esg-up-control")
        control.start()

        cpus = affinity_cpus()

        def sample():
            while not stop.is_set():
                t = time.monotonic() - started
                report.held.append((t, platform.held_share()))
                times = cpu_times(cpus=cpus)
                if times is not None:
                    report.cpu.append((t, *times))
                report.states.append((t, {n: f.state for n, f in platform.functions.items()}))
                if dashboard is not None:
                    dashboard(t, platform, report, controller)
                stop.wait(1.0)

        threading.Thread(target=sample, daemon=True, name="esg-up-sampler").start()
        _drive(router_url, topology, workload, seed, started, report)
        for sample in gateway_metrics.invocations.collect()[0].samples:
            if sample.name.endswith("_total"):
                name = sample.labels["function_name"].split(".", 1)[0]
                report.gateway_invocations[name] = report.gateway_invocations.get(name, 0) + int(sample.value)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        stop.set()
        if control is not None:  # it may be in a scaling step: let it end
            control.join(timeout=30.0)
        for server in servers:
            server.shutdown()
            server.server_close()
        platform.shutdown()
        report.spawned_pids = list(platform.spawned)
        report.worker_starts = list(platform.started)
        if logs_to is not None:
            shutil.copytree(platform.logs, logs_to, dirs_exist_ok=True)
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def cpu_times(path: str = "/proc/stat", cpus: Optional[Iterable[int]] = None) -> Optional[tuple[int, int]]:
    """(idle, total) CPU time since boot, in clock ticks, from ``/proc/stat``:
    of the whole machine (its first line), or of the CPUs ``cpus`` (their
    ``cpuN`` lines: the cores this run may use, its affinity mask). Idle and
    iowait count as idle; guest time is already in user time and is not
    counted twice. None where it cannot be read or does not parse, or a CPU
    asked for has no line."""
    wanted = None if cpus is None else {f"cpu{n}" for n in cpus}
    idle = total = 0
    lines = []
    try:
        with open(path) as f:
            for line in f:  # the cpu lines come first; the rest (interrupts: long) is not read
                if not line.startswith("cpu"):
                    break
                lines.append(line.split())
    except OSError:
        return None
    rows = [fields for fields in lines if fields and (fields[0] == "cpu" if wanted is None else fields[0] in wanted)]
    if not rows or (wanted is not None and len(rows) != len(wanted)):
        return None
    for fields in rows[:1] if wanted is None else rows:
        try:
            ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        except ValueError:
            return None
        if len(ticks) < 5 or min(ticks) < 0:
            return None
        idle, total = idle + ticks[3] + ticks[4], total + sum(ticks)
    return idle, total


def initial_states(topology: Topology, profiles: ProfileSet, max_replicas: int) -> dict[str, FunctionState]:
    """What the ESG scaler would deploy before any request: its decision for
    no observed load (the law plans for its least rate), as ``esg plan``
    gives a deployment before ``faas-cli deploy``."""
    entries = {topology.functions[(name, stage)]: 0.0 for name, wf in topology.workflows.items() for stage in wf.entries}
    settings = ScalerSettings(max_replicas=max_replicas)
    nothing = Observation(0.0, entries, "deploy", settings.window_s, dict(entries), settings.interval_s)
    return decide_functions(topology, profiles, settings, nothing, {}, Memory(), 0.0).desired


def timeline_row(t: float, topology: Topology, platform: LocalPlatform, observation, planned_rps,
                 estimates_rps=None) -> dict:
    """What the controller saw and wanted at one iteration (see UpReport.timeline)."""
    row = {"t": round(t, 2), "workflows": {}, "functions": {}}
    for name in topology.workflows:
        offered = offered_rps(topology, name, observation) if observation is not None else None
        answers = observation.workflow_answers.get(name) if observation is not None else None
        row["workflows"][name] = {
            "offered_rps": None if offered is None else round(offered[0], 3),
            "offered_recent_rps": None if offered is None else round(offered[1], 3),
            "arrival_cv2": None if observation is None or name not in observation.workflow_arrival_cv2
            else round(observation.workflow_arrival_cv2[name], 2),
            "hop_ms": None if observation is None or name not in observation.workflow_hop_ms
            else round(observation.workflow_hop_ms[name], 2),
            "planned_rps": planned_rps.get(name),
            "estimate_rps": (estimates_rps or {}).get(name),
            "answers": None if answers is None else dict(zip(("ok", "late", "rejected"), answers)),
            "functions": sorted({f for (w, _s), f in topology.functions.items() if w == name})}
    for name, fn in platform.functions.items():
        reading = observation.functions.get(name) if observation is not None else None
        row["functions"][name] = {
            "replicas": len(fn.workers), "desired": fn.state.replicas, "share": fn.state.gpu_share,
            "batch": fn.state.batch_size, "queue": None if reading is None else reading.queue,
            "exec_ms": None if reading is None or reading.exec_ms is None else round(reading.exec_ms, 2),
            "batch_mean": None if reading is None or reading.batch_mean is None else round(reading.batch_mean, 2),
            "cpu_ratio": None if reading is None or reading.cpu_ratio is None else round(reading.cpu_ratio, 3)}
    return row


SEND_LATE_MS = 100.0
"""A request the load generator sent this much after its drawn time was not
offered when the workload says: the report counts them."""


def _time_split(results: list, workflow: Optional[Workflow]) -> dict:
    """Where the answered requests' time went, at the median: in the stages
    (queue and execution, as the runtime reported them, along the longest
    path of the workflow) and in the hops (the rest of the latency: HTTP,
    the gateway, the router)."""
    in_stages, hops = [], []
    for r in results:
        path = time_in_stages_ms(workflow, r.stages_ms) if r.status == 200 and r.stages_ms and workflow else None
        if path is not None:
            in_stages.append(path)
            hops.append(max(0.0, r.latency_ms - path))
    return {"stages_p50_ms": round(statistics.median(in_stages), 1) if in_stages else None,
            "hops_p50_ms": round(statistics.median(hops), 1) if hops else None}


def _send_lag(results: list) -> dict:
    """How faithfully the load generator kept the drawn times: the median and
    99th percentile of its lag, and the share of requests sent ``SEND_LATE_MS`` late."""
    lags = [r.send_lag_ms for r in results]
    if not lags:
        return {"send_lag_p50_ms": None, "send_lag_p99_ms": None, "sent_late_share": None}
    return {"send_lag_p50_ms": round(statistics.median(lags), 1),
            "send_lag_p99_ms": round(float(np.percentile(lags, 99)), 1),
            "sent_late_share": round(sum(lag >= SEND_LATE_MS for lag in lags) / len(lags), 4)}


def _rejected_by(body: str) -> str:
    """What a 429's JSON says turned the request away; "" when it does not say."""
    try:
        doc = loads_json(body)
    except ValueError:
        return ""
    reason = doc.get(C.REJECTED_BY) if isinstance(doc, dict) else None
    return reason if isinstance(reason, str) else ""


def _drive(router_url: str, topology: Topology, workload: Workload, seed: int, started: float,
           report: UpReport) -> None:
    """Open-loop load: every arrival is sent at its time, whatever the answers do."""
    rng = np.random.default_rng(seed)
    arrivals = []
    for load in workload.workflows:
        name = load.workflow.name
        entry = topology.workflows[name].entries[0]
        body, content_type = entry_body(topology.workflows[name].stage(entry).function)
        for t in load.arrivals.times_s(workload.duration_s, rng):
            arrivals.append((float(t), name, body, content_type))
    arrivals.sort(key=lambda a: a[0])
    lock = threading.Lock()

    def send(t, name, body, content_type):
        request = urllib.request.Request(f"{router_url}/workflow/{name}", data=body, method="POST",
                                         headers={"Content-Type": content_type})
        sent = time.monotonic()
        lag_ms = max(0.0, (sent - started - t) * 1000.0)
        status, met, error, stages_ms = 0, False, "", None
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status = response.status
                answer = json.loads(response.read())
                met, stages_ms = bool(answer.get("slo_met")), answer.get("stages_ms")
        except urllib.error.HTTPError as err:
            status, error = err.code, err.read()[:1000].decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as err:
            status, error = -1, str(err)
        latency_ms = (time.monotonic() - sent) * 1000.0
        with lock:
            report.results.append(LoadResult(name, t, latency_ms, status, met and status == 200, error,
                                             _rejected_by(error) if status == 429 else "", lag_ms, stages_ms))

    with ThreadPoolExecutor(256, thread_name_prefix="esg-load") as pool:
        for t, name, body, content_type in arrivals:
            delay = started + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, t, name, body, content_type)


def terminal_dashboard(stream=sys.stderr, every_s: float = 2.0):
    """A live table on a terminal (redrawn in place), a line now and then otherwise."""
    last = [0.0]
    tty = stream.isatty()

    def draw(t, platform, report, controller):
        if t - last[0] < (every_s if tty else 10.0):
            return
        last[0] = t
        done = report.results
        lines = [f"esg up — {report.policy} — {t:5.0f} s / {report.duration_s:g} s — "
                 f"held {platform.held_share():.2f} equivalents — answered {len(done)}"]
        for name in sorted({r.workflow for r in done}):
            mine = [r for r in done if r.workflow == name]
            hit = sum(r.slo_met for r in mine) / len(mine)
            lines.append(f"  workflow {name:<10} requests {len(mine):>6}  SLO hit {hit:6.1%}")
        for fn in platform.functions.values():
            s = fn.state
            lines.append(f"  {fn.name:<20} replicas {len(fn.workers)}  batch {s.batch_size:>2}  "
                         f"wait {s.max_wait_ms:6.1f} ms  share {s.gpu_share:>3}%")
        if tty:
            stream.write("\x1b[2J\x1b[H" + "\n".join(lines) + "\n")
        else:
            stream.write(lines[0] + "\n")
        stream.flush()

    return draw
