"""The scaler service: observe -> decide -> act every interval, and an HTTP
endpoint for probes, metrics and the current plan.

Endpoints: ``GET /healthz`` (200 while the loop is alive: 503 once an
iteration has run past its budget or none has ended for that long — a
stuck loop, so that the kubelet restarts the scaler),
``GET /readyz`` (200 after the first good observation), ``GET /metrics``
(the scaler's own Prometheus metrics), ``GET /plan`` (the current plan per
workflow, the observed rates and why each function is where it is), and
``POST /reconcile`` (run an iteration now; needs ``Authorization: Bearer
<token>``, 403 when no token is configured; 503 when an iteration is
already running for longer than the budget).

The budget of an iteration (``ScalerSettings.iteration_budget_s``): one that
overruns it is counted (``esg_scaler_errors_total{stage="overrun"}``) and
logged; the sources bound what they read (a rate beyond what a platform can
carry is no data) so that the plan's work stays bounded.

A failing metrics source or API never stops the loop: the iteration counts
the error and changes nothing it could not reason about.

The heap a process holds once it has started (modules, clients, profiles)
is moved out of the garbage collector's reach (:func:`freeze_start_up_heap`):
a full collection scans every object the process holds (10–11 ms in
``bench/control.py --no-freeze`` on a fast host), and it falls within
whichever control step allocates when it is due.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..errors import ESGError
from ..jsonhttp import JsonHTTPServer, JsonRequestHandler, bearer_matches
from ..model import ProfileSet, Topology
from .actuators import Actuator, Change
from .actuators.lease import Lease
from .decider import Memory, ScalerDecision, control_law, decide_functions
from .settings import ScalerSettings
from .sources import MetricsSource

log = logging.getLogger("esg.scaler")


class ScalerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.iterations = Counter("esg_scaler_iterations_total", "Control-loop iterations.", registry=r)
        self.plans = Counter("esg_scaler_plans_total", "Workflow plans made.", registry=r)
        self.planning = Histogram("esg_scaler_iteration_seconds", "Time of one iteration (observe, plan, act).",
                                  registry=r)
        self.changes = Counter("esg_scaler_changes_total", "Changes applied, by kind.", ["kind"], registry=r)
        self.errors = Counter("esg_scaler_errors_total", "Errors, by stage of the loop.", ["stage"], registry=r)
        self.staleness = Gauge("esg_scaler_metrics_staleness_seconds", "Seconds since the last good observation.",
                               registry=r)
        self.gateways = Gauge("esg_scaler_gateways", "Gateway replicas whose metrics the last good observation "
                              "summed (gateway_pods; 1 without; 0 until one is read, and from Prometheus, which does "
                              "not say).", registry=r)
        self.rate = Gauge("esg_scaler_workflow_rate_rps", "Rate each workflow is planned for.", ["workflow"],
                          registry=r)
        self.leader = Gauge("esg_scaler_leader", "1 while this scaler holds the lease and acts, else 0.",
                            registry=r)
        self.gpu_free = Gauge("esg_scaler_gpu_free_percent",
                              "Each GPU's free share as last read (HAMi's records); none while not known.", ["gpu"],
                              registry=r)
        self.reloads = Counter("esg_scaler_workload_reloads_total", "Changes of the stack or profiles file, by "
                               "result: loaded (planned from that iteration on), refused (did not load: the "
                               "workload before is kept).", ["result"], registry=r)
        self.settings_reloads = Counter("esg_scaler_settings_reloads_total", "Changes of the settings file, by "
                                        "result: loaded (its live settings taken from that iteration on), refused "
                                        "(did not load: the settings before are kept).", ["result"], registry=r)


@dataclass
class Status:
    ready: bool = False
    last_good_s: Optional[float] = None
    last_iteration_s: Optional[float] = None
    decision: Optional[ScalerDecision] = None
    changes: list[Change] = field(default_factory=list)
    gpu_free_pct: Optional[tuple[int, ...]] = None
    """Each GPU's free share as the actuator read it at the last iteration
    (``Actuator.gpu_room``); None: not read, or not known."""
    workload_refused: Optional[str] = None
    """Why the last change of the workload's files did not load (the workload before it is planned); None
    where the last change loaded, or none was seen."""
    settings_refused: Optional[str] = None
    """Why the last change of the settings file did not load (the settings before it are kept); None where
    the last change loaded, or none was seen."""
    settings_at_restart: tuple[str, ...] = ()
    """The settings the file changes that take effect at the next restart (not ``LIVE_SETTINGS``)."""


class StackFilesLike(Protocol):
    """What the scaler polls for a new workload (``loaders.StackFiles``, a layer above it)."""

    def poll(self) -> tuple[Optional[tuple[Topology, ProfileSet]], Optional[str]]: ...


class SettingsFileLike(Protocol):
    """What the scaler polls for new settings (``loaders.SettingsFile``, a layer above it)."""

    def poll(self) -> tuple[Optional[ScalerSettings], Optional[str]]: ...


class Scaler:
    def __init__(self, topology: Topology, profiles: ProfileSet, settings: ScalerSettings, source: MetricsSource,
                 actuator: Actuator, clock: Callable[[], float] = time.monotonic,
                 on_iteration: Optional[Callable[[float, object, ScalerDecision, list], None]] = None,
                 lease: Optional[Lease] = None, files: Optional[StackFilesLike] = None,
                 settings_file: Optional[SettingsFileLike] = None):
        self.topology = topology
        self.profiles = profiles
        self.settings = settings
        self.source = source
        self.actuator = actuator
        self.clock = clock
        self.memory = Memory()
        self.metrics = ScalerMetrics()
        self.status = Status()
        self.lock = threading.Lock()
        self.last_plans: dict = {}
        self.on_iteration = on_iteration
        """Called after every iteration with (now, observation, decision, changes): esg up's report."""
        self.lease = lease
        """Leader election (``actuators/lease.py``): where given, the scaler acts only while it holds it."""
        if lease is not None:  # what the law learned goes with the lease, to the scaler that holds it next
            lease.record = lambda: control_law(self.topology, self.profiles, self.settings).learned(
                self.memory.state, self.clock())
        self._led = False
        """Whether this scaler held the lease at its last iteration."""
        self.files = files
        """Where given, what ``topology`` and ``profiles`` were loaded from, polled at each iteration
        (``loaders.StackFiles``): a change that loads is planned from then on."""
        self.settings_file = settings_file
        """Where given, what ``settings`` were loaded from, polled at each iteration
        (``loaders.SettingsFile``): a change that loads takes its ``LIVE_SETTINGS`` from then on."""
        self.started_at: Optional[float] = None
        """time.monotonic() when the running iteration began (None between iterations)."""
        self.ended_at = time.monotonic()
        """When the last iteration ended (or the scaler was made)."""

    def healthy(self) -> tuple[bool, str]:
        """Whether the loop is alive: no iteration over its budget, and one
        ended within an interval and the budget."""
        now, budget = time.monotonic(), self.settings.iteration_budget_s
        if self.started_at is not None and now - self.started_at > budget:
            return False, f"an iteration has run for {now - self.started_at:.0f} s, over its budget of {budget:g} s"
        if self.started_at is None and now - self.ended_at > self.settings.interval_s + budget:
            return False, f"no iteration for {now - self.ended_at:.0f} s"
        return True, "ok"

    def iterate(self, wait_s: Optional[float] = None) -> Optional[Status]:
        """One iteration; None if another is running and did not end within ``wait_s``."""
        if not self.lock.acquire(timeout=-1 if wait_s is None else wait_s):
            return None
        self.started_at = time.monotonic()
        try:
            return self._iterate()
        finally:
            elapsed = time.monotonic() - self.started_at
            if elapsed > self.settings.iteration_budget_s:
                log.warning("an iteration took %.1f s, over its budget of %g s", elapsed,
                            self.settings.iteration_budget_s)
                self.metrics.errors.labels(stage="overrun").inc()
            self.started_at, self.ended_at = None, time.monotonic()
            self.lock.release()

    def _iterate(self) -> Status:
        started = time.perf_counter()
        now = self.clock()
        m = self.metrics
        m.iterations.inc()
        self._reload_settings(now)
        self._reload(now)
        try:
            observation = self.source.observe(now)
        except Exception as err:  # a source bug must not stop the loop
            log.warning("metrics source failed: %s", err)
            m.errors.labels(stage="observe").inc()
            observation = None
        if observation is None:
            m.errors.labels(stage="no_data").inc()
        else:
            self.status.last_good_s = now
            self.status.ready = True
            if observation.gateways is not None:
                m.gateways.set(observation.gateways)
        if self.status.last_good_s is not None:
            m.staleness.set(now - self.status.last_good_s)
        functions = sorted(set(self.topology.functions.values()))
        self.actuator.new_iteration()  # a server that went unanswered is asked again
        if self.lease is not None and not self._leads():
            return self._standby(now, started)
        try:
            current = self.actuator.current(functions) if observation is not None else {}
            # read only where the law checks where instances go (``packed_capacity`` over ``capacity_gpus``)
            room = self.actuator.gpu_room() \
                if observation is not None and self.settings.capacity_gpus and self.settings.packed_capacity else None
            self.status.gpu_free_pct = room
            self.metrics.gpu_free.clear()  # a GPU gone, or the room no longer known: no stale series
            for index, pct in enumerate(room or ()):
                self.metrics.gpu_free.labels(gpu=str(index)).set(pct)
            decision = decide_functions(self.topology, self.profiles, self.settings, observation, current, self.memory,
                                        now, room)
            changes = self.actuator.apply(decision.desired) if decision.desired else []
        except Exception as err:
            log.warning("iteration failed: %s", err)
            m.errors.labels(stage="act").inc()
            decision, changes = ScalerDecision({}, {}, {"*": f"error: {err}"}, {}), []
        for change in changes:
            m.changes.labels(kind=change.kind).inc()
            if change.kind in ("error", "gone"):
                m.errors.labels(stage="apply").inc()
        m.plans.inc(len(decision.plans))
        for workflow, rate in decision.rates_rps.items():
            m.rate.labels(workflow=workflow).set(rate)
        if decision.plans:
            self.last_plans.update({w: p.to_dict() for w, p in decision.plans.items()})
        self.status.decision = decision
        self.status.changes = changes
        self.status.last_iteration_s = now
        m.planning.observe(time.perf_counter() - started)
        if self.on_iteration is not None:
            self.on_iteration(now, observation, decision, changes)
        return self.status

    def _reload(self, now: float) -> None:
        """Where the workload's files changed (``StackFiles.poll``): plan
        the new workload from this iteration on (``ControlLaw.take_over``):
        a workflow that is the same — its definition, its functions'
        profiles and the functions its stages are deployed as — goes on as
        it was; one that changed starts again as a restarted scaler's would
        (what runs is its first plan, ``adopt_running``) from what the law
        had learned of it; a new one afresh. Where they changed and do not
        load, keep the workload loaded before (said once per change)."""
        if self.files is None:
            return
        new, why = self._polled(self.files, self.metrics.reloads, "the workload's files changed but do not load "
                                f"(%s): the {len(self.topology.workflows)} workflows loaded before are planned")
        if why is not None:
            self.status.workload_refused = why
        if new is None:
            return
        before_topology, before_law = self.topology, control_law(self.topology, self.profiles, self.settings)
        self.topology, self.profiles = new

        def deployed_alike(name: str) -> bool:
            return {key: fn for key, fn in self.topology.functions.items() if key[0] == name} == \
                {key: fn for key, fn in before_topology.functions.items() if key[0] == name}

        state = self._take_over(before_law, now, deployed_alike, "workload reloaded")
        self.last_plans = {name: plan for name, plan in self.last_plans.items() if name in self.topology.workflows}
        before, after = set(before_topology.workflows), set(self.topology.workflows)
        started = sorted(name for name in after if state.workflows[name].joined_s == now)
        log.info("workload reloaded: %d workflows (new: %s; gone: %s); started again from what runs: %s; "
                 "the others go on as they were", len(after), ", ".join(sorted(after - before)) or "none",
                 ", ".join(sorted(before - after)) or "none", ", ".join(started) or "none")
        self.metrics.reloads.labels(result="loaded").inc()
        self.status.workload_refused = None

    def _reload_settings(self, now: float) -> None:
        """Where the settings file changed (``SettingsFile.poll``): its
        ``LIVE_SETTINGS`` are taken from this iteration on (where the law's
        settings changed, every workflow starts again as a restarted
        scaler's would — from what runs and what the law had learned of it,
        in its ranges); the other settings it changes are said to wait for
        the next restart. Where it changed and does not load, or its live
        settings are not valid beside the others, keep the settings before
        (said once per change)."""
        if self.settings_file is None:
            return
        new, why = self._polled(self.settings_file, self.metrics.settings_reloads,
                                "the settings file changed but does not load (%s): the settings before are kept",
                                self.settings.live_from)
        if why is not None:
            self.status.settings_refused = why
        if new is None:
            return
        (taken, waiting), before = new, self.settings
        changed = sorted(f.name for f in fields(taken) if getattr(taken, f.name) != getattr(before, f.name))
        self.settings = taken
        if taken.control() != before.control():
            self._take_over(control_law(self.topology, self.profiles, before), now, lambda name: False,
                            "settings reloaded")
        log.info("settings reloaded: %s%s", ", ".join(changed) + " taken" if changed else "nothing live changed",
                 "; " + ", ".join(waiting) + " at the next restart" if waiting else "")
        self.metrics.settings_reloads.labels(result="loaded").inc()
        self.status.settings_refused, self.status.settings_at_restart = None, tuple(waiting)

    @staticmethod
    def _polled(files, counter: Counter, refused_said: str, take: Callable = lambda new: new):
        """(``take`` of what ``files.poll`` loaded, or None; why it was not
        taken, or None). A change not taken — the files do not load, or
        ``take`` refuses them with an ``ESGError`` — is logged
        (``refused_said``, %s the reason) and counted in ``counter``."""
        try:
            new, why = files.poll()
            new = None if new is None else take(new)
        except ESGError as err:
            new, why = None, str(err)
        except Exception as err:  # pragma: no cover - poll names what fails; a bug must not stop the loop
            new, why = None, f"{type(err).__name__}: {err}"
        if why is not None:
            log.warning(refused_said, why)
            counter.labels(result="refused").inc()
        return new, why

    def _take_over(self, before_law, now: float, vouched: Callable[[str], bool], what: str):
        """The law of the workload and settings now takes over from
        ``before_law`` (``ControlLaw.take_over``); its state is the scaler's
        memory from here. Returns that state."""
        law = control_law(self.topology, self.profiles, self.settings)
        state, refused = law.take_over(before_law, self.memory.state, now, vouched)
        self.memory = Memory(state)
        for said in refused:
            log.warning("%s: not believed: %s", what, said)
        return state

    def _leads(self) -> bool:
        """Does this scaler hold the lease this iteration? (A failure of the
        lease's own code is an iteration standing by, not a loop stopped.)"""
        try:
            leads = self.lease.hold()
        except Exception as err:  # pragma: no cover - hold() names every API failure
            log.warning("lease failed: %s", err)
            leads = False
        if leads and not self._led:  # taken: the law resumes from what the last holder's had learned
            record = self.lease.learned_record()
            if record is not None:
                law = control_law(self.topology, self.profiles, self.settings)
                for refused in law.resume(self.memory.state, record, self.clock()):
                    log.warning("lease %s/%s: not believed: %s", self.lease.namespace, self.lease.name, refused)
        self._led = leads
        if self.lease.failure is not None:
            self.metrics.errors.labels(stage="lease").inc()
        self.metrics.leader.set(1 if leads else 0)
        return leads

    def _standby(self, now: float, started: float) -> Status:
        """An iteration of a scaler that does not hold the lease: it reads no
        function and changes nothing, and forgets what its law knew and the
        plans it showed — when it leads, its law resumes what the holder's
        had learned (the Lease's record) and what runs is its first plan
        (``adopt_running``)."""
        self.memory = Memory()
        self.last_plans = {}  # /plan shows no plan this scaler does not act on
        holder = self.lease.holder or "another scaler"
        self.status.decision = ScalerDecision({}, {}, {"*": f"standby: the lease {self.lease.namespace}/"
                                                            f"{self.lease.name} is held by {holder}"}, {})
        self.status.changes = []
        self.status.last_iteration_s = now
        self.metrics.planning.observe(time.perf_counter() - started)
        return self.status

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.iterate()
            except Exception as err:  # pragma: no cover - iterate already guards its stages
                log.exception("iteration crashed: %s", err)
            stop.wait(self.settings.interval_s)
        if self.lease is not None:  # a clean stop: the next scaler takes over at once
            self.lease.release()

    def plan_document(self) -> dict:
        status = self.status
        decision = status.decision
        now = self.clock()
        return {
            "ready": status.ready,
            "stale_s": None if status.last_good_s is None else round(now - status.last_good_s, 3),
            "workflows": dict(self.last_plans),
            "rates_rps": decision.rates_rps if decision else {},
            "reasons": decision.reasons if decision else {},
            "last_changes": [{"function": c.function, "kind": c.kind, "before": c.before, "after": c.after}
                             for c in status.changes],
            "gpu_free_pct": None if status.gpu_free_pct is None else list(status.gpu_free_pct),
            "workload": {"workflows": sorted(self.topology.workflows), "refused": status.workload_refused},
            "settings": {"refused": status.settings_refused, "at_restart": list(status.settings_at_restart)},
            "lease": None if self.lease is None else {"name": self.lease.name, "holder": self.lease.holder,
                                                      "leading": self.lease.leading()},
        }


def freeze_start_up_heap() -> None:
    """Collect once, then move every object that survived start-up into the
    collector's permanent generation (``gc.freeze``): a later full
    collection scans only what the loop itself keeps, not the modules,
    clients and profiles loaded before it (``bench/control.py`` prints the
    collections that fall within its ticks). Called once, after start-up,
    by ``esg scaler`` and ``esg up``."""
    gc.collect()
    gc.freeze()


def make_http_server(scaler: Scaler, host: str, port: int, token: Optional[str]) -> JsonHTTPServer:
    class Handler(JsonRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/healthz":
                ok, why = scaler.healthy()
                self._json(200 if ok else 503, {"status": why})
            elif self.path == "/readyz":
                ready = scaler.status.ready
                self._json(200 if ready else 503, {"ready": ready})
            elif self.path == "/metrics":
                self._send(200, generate_latest(scaler.metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/plan":
                self._json(200, scaler.plan_document())
            else:
                self._json(404, {"error": f"no such path {self.path}"})

        def do_POST(self):  # noqa: N802
            if self.path != "/reconcile":
                self._json(404, {"error": f"no such path {self.path}"})
                return
            if token is None:
                self._json(403, {"error": "mutating endpoints are disabled: no token is configured"})
                return
            if not bearer_matches(self.headers.get("Authorization", ""), token):
                self._json(401, {"error": "a valid 'Authorization: Bearer <token>' header is required"})
                return
            if scaler.iterate(wait_s=scaler.settings.iteration_budget_s) is None:
                self._json(503, {"error": "an iteration is still running; retry later"})
                return
            self._json(200, scaler.plan_document())

    return JsonHTTPServer((host, port), Handler)
