"""The runtime's own Prometheus metrics (served on /_esg/metrics), and the
workflow router's counters (:class:`WorkflowMetrics`: ``esg_plugin.router``
and the cluster's router function, which runs on this runtime)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import contract as C

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RuntimeMetrics:
    """One registry per process (not the global default), so tests can run
    several runtimes side by side."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(C.METRIC_REQUESTS, f"Function requests answered (not {C.CONTROL_PREFIX}*), by HTTP status code.",
                                ["code"], registry=r)
        self.started = Counter(C.METRIC_REQUESTS_STARTED, f"Function requests arrived (not {C.CONTROL_PREFIX}*), "
                               "counted as they arrive: answered or not yet, as the gateway's started counter.",
                               registry=r)
        self.rejections = Counter(C.METRIC_REJECTIONS, "Requests refused without running, by reason.",
                                  ["reason"], registry=r)
        self.queue_length = Gauge(C.METRIC_QUEUE_LENGTH, "Requests waiting for a batch.", registry=r)
        self.batch_size = Histogram(C.METRIC_BATCH_SIZE, "Requests per batch handed to the handler.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram(C.METRIC_QUEUE_WAIT_SECONDS, "Time from arrival to the start of its batch.",
                                    buckets=SECONDS_BUCKETS, registry=r)
        self.exec_time = Histogram(C.METRIC_EXEC_SECONDS, "Execution time of one batch.",
                                   buckets=SECONDS_BUCKETS, registry=r)
        self.exec_cpu = Counter(C.METRIC_EXEC_CPU_SECONDS, "Processor time used while batches ran, over the "
                                "cores this instance's share allots (a CPU instance).", registry=r)
        self.max_batch_size = Gauge(C.METRIC_MAX_BATCH_SIZE, "Live batch size limit.", registry=r)
        self.max_wait = Gauge(C.METRIC_MAX_WAIT_SECONDS, "Live batching timeout.", registry=r)
        self.gpu_share = Gauge(C.METRIC_GPU_SHARE_PCT, "GPU share this instance runs at (CPU: of the cores).",
                               registry=r)
        self.gpu_utilization = Gauge(C.METRIC_GPU_UTILIZATION, "GPU utilisation from NVML, 0..1.", registry=r)
        self.gpu_memory_used = Gauge(C.METRIC_GPU_MEMORY_USED_BYTES, "GPU memory in use, from NVML.", registry=r)

    def render(self, handler_registry=None) -> tuple[bytes, str]:
        """The page: the runtime's metrics, then the handler's own registry's, if it has one."""
        body = generate_latest(self.registry)
        if handler_registry is not None:
            body += generate_latest(handler_registry)
        return body, CONTENT_TYPE_LATEST


class WorkflowMetrics:
    """A workflow router's counters: requests by SLO outcome
    (``esg_workflow_requests_total{workflow,slo}``) and the gaps between each
    workflow's arrivals (``esg_workflow_arrival_gap_seconds``, a summary, and
    ``esg_workflow_arrival_gap_squared_seconds_total``), from which the
    scaler reads how bursty the arrivals are."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(C.METRIC_WORKFLOW_REQUESTS, "Workflow requests, by SLO outcome.",
                                ["workflow", "slo"], registry=self.registry)
        self.gaps = Summary(C.METRIC_WORKFLOW_ARRIVAL_GAP_SECONDS, "Gaps between a workflow's arrivals.",
                            ["workflow"], registry=self.registry)
        self.gap_squares = Counter(C.METRIC_WORKFLOW_ARRIVAL_GAP_SQUARED_SECONDS,
                                   "Sum of the squared gaps between a workflow's arrivals (s^2).", ["workflow"],
                                   registry=self.registry)
        self.hops = Summary(C.METRIC_WORKFLOW_HOP_SECONDS, "Per answered request, the time a hop between "
                            "stages took: latency less the stages' queue and execution, over the path's edges.",
                            ["workflow"], registry=self.registry)
        self._last_arrival_s: dict[str, float] = {}
        self._lock = threading.Lock()

    def arrived(self, workflow: str, now_s: float) -> None:
        """Counts the gap since the workflow's last arrival (every request, admitted or not)."""
        with self._lock:
            last = self._last_arrival_s.get(workflow)
            self._last_arrival_s[workflow] = now_s
        if last is not None and now_s >= last:
            self.gaps.labels(workflow=workflow).observe(now_s - last)
            self.gap_squares.labels(workflow=workflow).inc((now_s - last) ** 2)
