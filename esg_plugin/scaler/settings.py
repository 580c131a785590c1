"""Scaler settings: a YAML file, overridden by ESG_SCALER_* environment
variables, validated at start (one line and exit 2 when wrong). The file
is read again when it changes (``loaders.SettingsFile``): the settings in
``LIVE_SETTINGS`` take effect at once, the others at the next restart."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from ..errors import ESGError
from ..control import ControlSettings
from ..model.config import DEFAULT_QUEUEING_MODEL, QUEUEING_MODELS

ACTUATORS = ("dry-run", "openfaas-kubernetes", "openfaas-gateway", "knative")
SHARE_MODES = ("env", "hami")
METRICS_KINDS = ("auto", "gateway", "prometheus")


def is_http_url(text: str) -> bool:
    """An http(s) URL with a host (``metrics_url``, ``gateway_url``, ``esg scaler --kube-api``)."""
    try:
        parts = urlsplit(text)
        parts.port  # a port out of range or not a number raises here, not at the first fetch
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A namespace's name (an RFC 1123 label): the actuators put it in the API's paths."""
_LABEL_KEY = r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
LABEL_SELECTOR = re.compile(rf"{_LABEL_KEY}((==?|!=){_LABEL_VALUE})?(,{_LABEL_KEY}((==?|!=){_LABEL_VALUE})?)*")
"""An equality-based label selector (``app=gateway``, ``a=b,c!=d``, ``e``): terms joined by commas."""


class ScalerSettingsError(ESGError, ValueError):
    """A scaler setting the service cannot start with."""


BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}
"""What a yes-or-no setting may say (YAML's own true/false arrive as bools)."""
MAX_REPLICAS = 10_000
"""The most replicas of one function the scaler will ask for."""


LIVE_SETTINGS = frozenset({
    "slo_margin", "rate_headroom", "scale_down_delay_s", "min_share_saving", "capacity_gpus", "packed_capacity",
    "busy_capacity", "wait_calibration", "adopt_running", "queueing_model",  # the control law's
    "min_replicas", "max_replicas", "wait_threshold_ms", "iteration_budget_s",  # read at each iteration
})
"""The settings a running scaler takes from its changed file
(:meth:`ScalerSettings.live_from`). The others build what the loop runs
with — where it listens, the metrics source and its windows, the actuator
and its API, the lease, the workload's paths — and change at a restart."""


@dataclass(frozen=True)
class ScalerSettings:
    stack: str = "stack.yml"
    """faas-cli stack with com.esg.* annotations (the workflows and their functions)."""
    profiles: str = "profiles/cpu-2core.json"
    """Profiles JSON (SPEC §1)."""
    metrics_url: str = "http://127.0.0.1:8082/metrics"
    """The gateway's /metrics (sidecar mode) or a Prometheus base URL (standalone)."""
    metrics_kind: str = "auto"
    """gateway, prometheus, or auto (a URL ending in /metrics is a gateway)."""
    gateway_pods: str = ""
    """A label selector of the gateway's pods (``app=gateway``, the OpenFaaS
    chart's) in ``gateway_namespace``: metrics from the gateway are then
    read from every running one — its pod IP at ``metrics_url``'s port and
    path — and their counters summed (``scaler/gateways.py``). With several
    gateway replicas each serves part of the traffic, and a sidecar that
    read only its own gateway planned for that part. Needs the Kubernetes
    API (pods: list, in that namespace). Empty: ``metrics_url`` alone."""
    gateway_namespace: str = "openfaas"
    """Where the gateway's pods run (``gateway_pods``)."""
    actuator: str = "dry-run"
    """dry-run, openfaas-kubernetes, openfaas-gateway or knative."""
    namespace: str = "openfaas-fn"
    """Where the functions run."""
    gateway_url: str = "http://127.0.0.1:8080"
    """For the openfaas-gateway actuator."""
    gateway_user: Optional[str] = None
    gateway_password: Optional[str] = None
    interval_s: float = 5.0
    """Control loop period."""
    window_s: float = 30.0
    """Rates are averaged over this window; data older than it is stale."""
    slo_margin: float = 0.0
    """Share of the SLO kept in reserve at least (the control law's least
    margin); the law raises it while answers come late, 504 or 429 (the
    gateway's status codes, the router's classes) and lowers it back after
    a clean stretch."""
    rate_headroom: float = 0.1
    """Plan for this much more than the observed rate."""
    scale_down_delay_s: float = 60.0
    """Plan for a lower rate only after it has stayed lower this long."""
    min_replicas: int = 1
    max_replicas: int = 5
    """OpenFaaS CE allows at most 5 replicas per function."""
    share_mode: str = "env"
    """env: ESG_GPU_SHARE and CUDA_MPS_ACTIVE_THREAD_PERCENTAGE; hami: nvidia.com/gpucores and gpumem."""
    gpu_memory_mb: int = 16000
    """Per GPU, for hami's nvidia.com/gpumem."""
    capacity_gpus: float = 0.0
    """GPUs the functions may hold in all (the node's, or the quota's): the
    control law's ``capacity_gpus`` — plans beyond what the other workflows
    left are degraded to fit, in planning order (the most urgent first),
    and where the plans on time do not all fit, a workflow above its
    max-min fair share gives back what another's plan on time needs (the
    law's ``fair_share``); a workflow keeps at least its cheapest
    deployment. 0: no limit."""
    packed_capacity: bool = True
    """``capacity_gpus`` counts GPUs of 100% share each, and a plan fits only
    where its pods and the other workflows' find a GPU each (first fit,
    largest share first: the control law's ``packed_capacity``); false:
    ``capacity_gpus`` is a total only (a quota over more GPUs than it
    counts)."""
    busy_capacity: float = 0.0
    """On a time-shared node (``esg up`` on a CPU): the share of it the plans
    may keep busy in all (the control law's ``busy_capacity``); a workflow
    beyond it is planned for, and admits, the rate that fits. 0: no limit."""
    wait_calibration: bool = True
    """Misses while a stage's requests wait longer than the model gives it
    plan that workflow for burstier arrivals (the control law's
    ``wait_calibration``, ``docs/control.md``); false: the margin alone
    answers misses, as before the twenty-seventh session."""
    adopt_running: bool = True
    """A workflow whose functions already run when the scaler starts (a
    restart: a new version, a drained node, a crash) keeps what runs as its
    first plan where that serves more than the first window's rate, brought
    down only by the scale-down path (the control law's ``adopt_running``,
    ``docs/control.md``); false: the first plan is for the first window's
    rate, at once, as before the fifty-eighth session."""
    leader_election: bool = True
    """With the Kubernetes or Knative actuator, act only while holding the
    Lease ``lease_name`` in ``namespace`` (``actuators/lease.py``): of two
    scalers at once — the scaler's own rolling update, a sidecar beside
    each of several gateway replicas — one acts, the other stands by;
    false: every scaler acts."""
    lease_name: str = "esg-scaler"
    """The Lease's name (a Kubernetes name: lowercase letters, digits and -)."""
    lease_duration_s: float = 15.0
    """How long a lease whose record did not change is held by its holder:
    another scaler takes it over after this long (by its own clock), and a
    holder that could not renew for two thirds of it stops acting. At
    least three intervals: the holder renews once an interval."""
    queueing_model: str = DEFAULT_QUEUEING_MODEL
    """The control law's ``queueing_model`` (allen-cunneen or renewal,
    ``model/config.py``). For a comparison."""
    min_share_saving: float = 0.2
    """Restart pods for a smaller share only when it saves at least this share of the stage's cost."""
    wait_threshold_ms: float = 1.0
    """Ignore batching-timeout changes smaller than this."""
    function_port: int = 8080
    """Port of the function pods (the watchdog) for live /_esg/config pushes."""
    function_token: Optional[str] = None
    """The functions' ESG_CONFIG_TOKEN (env ESG_SCALER_FUNCTION_TOKEN)."""
    iteration_budget_s: float = 30.0
    """An iteration over this is counted and logged; one running past it makes /healthz 503."""
    api_timeout_s: float = 10.0
    """How long a call to the platform's API (Kubernetes', the gateway's)
    waits for an answer. Once one of an iteration goes unanswered, the
    iteration makes no more: a stalled server costs it one timeout (the
    actuators' ``ApiCalls``). Less than ``iteration_budget_s``."""
    host: str = "127.0.0.1"
    """Where the HTTP endpoint listens: loopback unless told (a pod sets 0.0.0.0 for its probes)."""
    port: int = 8081
    token: Optional[str] = None
    """Bearer token for the scaler's mutating endpoints (env ESG_SCALER_TOKEN)."""

    @staticmethod
    def load(data: Optional[Mapping[str, Any]], env: Mapping[str, str],
             overrides: Optional[Mapping[str, Any]] = None) -> "ScalerSettings":
        """Settings from a file's ``data``, then ``ESG_SCALER_<NAME>`` in
        ``env``, then ``overrides`` (command-line flags): each layer wins
        over the one before."""
        data = dict(data or {})
        names = {f.name: f for f in fields(ScalerSettings)}
        unknown = set(data) - set(names)
        if unknown:
            raise ScalerSettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name in names:
            key = "ESG_SCALER_" + name.upper()
            if key in env:
                data[name] = env[key]
        data.update(overrides or {})
        settings = ScalerSettings()
        values = {}
        for name, value in data.items():
            default = getattr(settings, name)
            kind = type(default) if default is not None else str
            try:
                if kind is bool:
                    word = str(value).strip().lower()
                    if word not in BOOLEAN_WORDS:
                        raise ValueError
                    values[name] = BOOLEAN_WORDS[word]
                elif kind in (int, float):
                    if isinstance(value, bool):
                        raise ValueError
                    values[name] = kind(value)
                else:
                    values[name] = None if value is None else str(value)
            except (TypeError, ValueError):
                raise ScalerSettingsError(f"{name} must be {kind.__name__}, got {value!r}") from None
        settings = replace(settings, **values)
        settings.validate()
        return settings

    def live_from(self, new: "ScalerSettings") -> tuple["ScalerSettings", list[str]]:
        """(these settings with ``new``'s ``LIVE_SETTINGS``, the names of the
        other settings ``new`` changes — which wait for a restart);
        ``ScalerSettingsError`` where the two together are not valid (a
        budget below the API timeout the scaler started with, say)."""
        taken = replace(self, **{name: getattr(new, name) for name in LIVE_SETTINGS})
        taken.validate()
        waiting = sorted(f.name for f in fields(self)
                         if f.name not in LIVE_SETTINGS and getattr(new, f.name) != getattr(self, f.name))
        return taken, waiting

    def validate(self) -> None:
        """Every number finite and in its range (NaN fails every comparison)."""
        checks = [
            (self.actuator in ACTUATORS, f"actuator must be one of {', '.join(ACTUATORS)}, got {self.actuator!r}"),
            (self.share_mode in SHARE_MODES, f"share_mode must be env or hami, got {self.share_mode!r}"),
            (NAMESPACE.fullmatch(self.namespace) is not None,
             f"namespace must be a Kubernetes namespace name (lowercase letters, digits and '-', at most 63), "
             f"got {self.namespace[:70]!r}"),
            (self.metrics_kind in METRICS_KINDS, "metrics_kind must be auto, gateway or prometheus"),
            (not self.gateway_pods or LABEL_SELECTOR.fullmatch(self.gateway_pods) is not None,
             f"gateway_pods must be a label selector (key=value, terms joined by commas), "
             f"got {self.gateway_pods[:70]!r}"),
            (not self.gateway_pods or self.source_kind == "gateway",
             "gateway_pods is for metrics from the gateway (Prometheus already sums every gateway's counters)"),
            (NAMESPACE.fullmatch(self.gateway_namespace) is not None,
             f"gateway_namespace must be a Kubernetes namespace name (lowercase letters, digits and '-', "
             f"at most 63), got {self.gateway_namespace[:70]!r}"),
            (self.queueing_model in QUEUEING_MODELS,
             f"queueing_model must be one of {', '.join(QUEUEING_MODELS)}, got {self.queueing_model!r}"),
            (0 < self.interval_s <= 3600, "interval_s must lie in (0, 3600]"),
            (self.interval_s <= self.window_s <= 86400, "window_s must lie in [interval_s, 86400]"),
            (0 <= self.slo_margin < ControlSettings.max_margin, f"slo_margin must lie in [0, {ControlSettings.max_margin:g})"),
            (0 <= self.rate_headroom <= 10, "rate_headroom must lie in [0, 10]"),
            (0 <= self.scale_down_delay_s <= 86400, "scale_down_delay_s must lie in [0, 86400]"),
            (1 <= self.min_replicas <= self.max_replicas <= MAX_REPLICAS,
             f"need 1 <= min_replicas <= max_replicas <= {MAX_REPLICAS}"),
            (0 < self.iteration_budget_s <= 3600, "iteration_budget_s must lie in (0, 3600]"),
            (0 < self.api_timeout_s < self.iteration_budget_s,
             "api_timeout_s must lie in (0, iteration_budget_s)"),
            (0 <= self.min_share_saving < 1, "min_share_saving must lie in [0, 1)"),
            (NAMESPACE.fullmatch(self.lease_name) is not None,
             f"lease_name must be a Kubernetes name (lowercase letters, digits and '-', at most 63), "
             f"got {self.lease_name[:70]!r}"),
            (3 * self.interval_s <= self.lease_duration_s <= 3600,
             "lease_duration_s must lie in [3 x interval_s, 3600]: the holder renews once an interval"),
            (0 <= self.capacity_gpus <= 1e6, "capacity_gpus must lie in [0, 1e6] (0: no limit)"),
            (0 <= self.busy_capacity <= 1e6, "busy_capacity must lie in [0, 1e6] (0: no limit)"),
            (0 <= self.port <= 65535, "port must lie in 0..65535"),
            (is_http_url(self.metrics_url), "metrics_url must be an http(s) URL"),
            (is_http_url(self.gateway_url), "gateway_url must be an http(s) URL"),
            (1 <= self.gpu_memory_mb <= 10_000_000, "gpu_memory_mb must lie in 1..10000000 (MiB per GPU)"),
            (1 <= self.function_port <= 65535, "function_port must lie in 1..65535"),
            (0 <= self.wait_threshold_ms <= 60_000, "wait_threshold_ms must lie in [0, 60000]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ScalerSettingsError(message)

    def control(self) -> ControlSettings:
        """The control law's settings (``esg_plugin.control``) these stand for."""
        # under Knative a batch size is the template's env: a change is a new revision (a
        # restart), which a larger batch and back would cost — and so would each new larger
        # batch size that calibration brings
        live_batch_sizes = self.actuator != "knative"
        return ControlSettings(slo_margin=self.slo_margin, rate_headroom=self.rate_headroom,
                               scale_down_delay_s=self.scale_down_delay_s, warmup_s=self.window_s,
                               min_share_saving=self.min_share_saving,
                               capacity_gpus=self.capacity_gpus or None, packed_capacity=self.packed_capacity,
                               busy_capacity=self.busy_capacity or None,
                               wait_calibration=self.wait_calibration, adopt_running=self.adopt_running,
                               queueing_model=self.queueing_model,
                               bridge_batching=live_batch_sizes, burst_batching=live_batch_sizes)

    @property
    def source_kind(self) -> str:
        if self.metrics_kind != "auto":
            return self.metrics_kind
        return "gateway" if self.metrics_url.rstrip("/").endswith("/metrics") else "prometheus"
