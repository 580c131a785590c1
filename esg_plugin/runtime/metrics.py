"""The runtime's own Prometheus metrics (served on /_esg/metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
