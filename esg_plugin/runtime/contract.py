"""The wire contract between the control plane and a function: every name
that crosses a process boundary, spelled once.

Both sides import this module: the runtime inside each function (it ships in
the image as ``esg_runtime.contract``), and the scaler, the local platform,
the router, the profiler and the model on the other side. A test
(``tests/unit/test_contract.py``) fails when one of these strings is spelled
anywhere else in the product's code. Units are in the names: ``_MS`` is
milliseconds, ``_PCT`` percent of one GPU (on CPU: of the cores a function
may use).

Standard library only, no imports: ``esg_plugin.model`` reads the workflow
annotations from here too.
"""

# --- environment of a function's process (SPEC §6) ---------------------------
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest body a function takes in a request (413 beyond, ``app.py``), and so the largest answer a
caller reads (``client.py``): an answer longer than any next stage would take is no answer."""

ENV_HOST = "ESG_HOST"
ENV_PORT = "ESG_PORT"
ENV_MAX_BATCH_SIZE = "ESG_MAX_BATCH_SIZE"
MAX_BATCH_SIZE = 4096
"""The largest batch the runtime runs (``ESG_MAX_BATCH_SIZE``, ``PUT /_esg/config``):
the most a plan may ask of it, and so the largest batch size a profile may hold."""
ENV_MAX_WAIT_MS = "ESG_MAX_WAIT_MS"
ENV_MAX_QUEUE = "ESG_MAX_QUEUE"
ENV_GPU_SHARE_PCT = "ESG_GPU_SHARE"
ENV_MPS_SHARE_PCT = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
"""NVIDIA MPS reads it at CUDA initialisation; set together with ENV_GPU_SHARE_PCT."""
ENV_MPS_PIPE_DIRECTORY = "CUDA_MPS_PIPE_DIRECTORY"
"""Where an MPS server's control pipe lies (NVIDIA's default: /tmp/nvidia-mps)."""
ENV_CPU_THREADS = "ESG_CPU_THREADS"
ENV_GPU_SHARE_MECHANISM = "ESG_GPU_SHARE_MECHANISM"
"""How a GPU share limits the kernels: auto (default), mps or green-context (runtime/gpu.py)."""
ENV_CONFIG_TOKEN = "ESG_CONFIG_TOKEN"
ENV_HEAP_RETAIN_MB = "ESG_HEAP_RETAIN_MB"
ENV_LIVE_SHARE = "ESG_LIVE_SHARE"
"""1 (default): a CPU instance takes another share live (its threads); 0: a share change needs a restart, as on a GPU."""
ENV_FUNCTION = "ESG_FUNCTION"
"""Which function of a multi-function handler folder this process serves."""

#: Every environment variable that carries a GPU share: a share change sets all.
SHARE_ENVS = (ENV_GPU_SHARE_PCT, ENV_MPS_SHARE_PCT)

# --- HTTP paths of a function ------------------------------------------------
HEALTH_PATH = "/_esg/health"
METRICS_PATH = "/_esg/metrics"
CONFIG_PATH = "/_esg/config"
"""GET the live settings; PUT a JSON object of the CONFIG_* keys below."""
CONTROL_PREFIX = "/_esg/"

# --- the JSON document of CONFIG_PATH -----------------------------------------
# The same concepts carry the same names in a plan (model/plan.py): one name each.
CONFIG_MAX_BATCH_SIZE = "max_batch_size"
CONFIG_MAX_WAIT_MS = "max_wait_ms"
CONFIG_GPU_SHARE_PCT = "gpu_share"
CONFIG_MAX_QUEUE = "max_queue"
CONFIG_RESTART_REQUIRED = "restart_required"
"""In a PUT's answer: the share changes only when the process restarts."""
CONFIG_WRITABLE = (CONFIG_MAX_BATCH_SIZE, CONFIG_MAX_WAIT_MS, CONFIG_GPU_SHARE_PCT)

# --- HTTP headers ---------------------------------------------------------------
DEADLINE_HEADER = "X-ESG-Deadline-Ms"
"""Absolute Unix time in ms after which the answer is useless (504 instead)."""
DOWNSTREAM_HEADER = "X-ESG-Downstream-Ms"
"""Milliseconds the executions the plan runs after this stage take, hops
included and no waits (``esg_plugin.router`` sends the control law's
``Decision.downstream_exec_ms``; the cluster's router function, with no
plan, what the later stages' answers reported): the batcher's slack-aware
dispatch, and its newest-first order when behind the plan."""
MAX_DOWNSTREAM_MS = 3_600_000.0
"""An hour: a downstream figure beyond it (or not a finite number) is not believed (400)."""
REQUEST_ID_HEADER = "X-ESG-Request-Id"
BATCH_SIZE_HEADER = "X-ESG-Batch-Size"
QUEUE_MS_HEADER = "X-ESG-Queue-Ms"
EXEC_MS_HEADER = "X-ESG-Exec-Ms"

# --- Prometheus metrics a function exports at METRICS_PATH ---------------------
METRIC_REQUESTS = "esg_requests_total"
METRIC_REQUESTS_STARTED = "esg_requests_started_total"
METRIC_REJECTIONS = "esg_rejections_total"
METRIC_QUEUE_LENGTH = "esg_queue_length"
METRIC_BATCH_SIZE = "esg_batch_size"
METRIC_QUEUE_WAIT_SECONDS = "esg_queue_wait_seconds"
METRIC_EXEC_SECONDS = "esg_exec_seconds"
METRIC_EXEC_CPU_SECONDS = "esg_exec_cpu_seconds"
"""A counter (exposed with ``_total``): the processor time the instance used
while its batches ran, over the cores its share allots it (a CPU instance
only) — so its ratio to ``esg_exec_seconds_sum`` is how busy the share's
cores were while it executed: about 1 alone, less where it waited for a
core (time-sharing: the execution time counts the wait, the processor time
does not)."""
METRIC_MAX_BATCH_SIZE = "esg_max_batch_size"
METRIC_MAX_WAIT_SECONDS = "esg_max_wait_seconds"
METRIC_GPU_SHARE_PCT = "esg_gpu_share_percent"
METRIC_GPU_UTILIZATION = "esg_gpu_utilization_ratio"
METRIC_GPU_MEMORY_USED_BYTES = "esg_gpu_memory_used_bytes"

# --- ... and the workflow router -------------------------------------------------
METRIC_WORKFLOW_REQUESTS = "esg_workflow_requests_total"
METRIC_WORKFLOW_LATENCY_SECONDS = "esg_workflow_latency_seconds"
METRIC_WORKFLOW_ARRIVAL_GAP_SECONDS = "esg_workflow_arrival_gap_seconds"
"""A summary (``_count``, ``_sum``) of the gaps between a workflow's
arrivals at the router's entry — every request, admitted or shed."""
METRIC_WORKFLOW_ARRIVAL_GAP_SQUARED_SECONDS = "esg_workflow_arrival_gap_squared_seconds"
"""A counter (exposed with ``_total``): the sum of the same gaps' squares, in
s². With the summary's count and sum over a window it gives the gaps'
variability (``control.gap_cv2``): bursts that a rate alone hides."""

METRIC_WORKFLOW_HOP_SECONDS = "esg_workflow_hop_seconds"
"""A summary (``_count``, ``_sum``): per answered request, its latency less
the time in its stages (queue and execution along the longest path), over
the edges of that path — the time one hop between stages takes, which the
planner budgets as a workflow's ``hop_ms``."""

# --- the workflow router's 429 answers ------------------------------------------
REJECTED_BY = "rejected_by"
"""In the JSON of a 429 from the router: what turned the request away."""
REJECTED_BY_RATE = "rate"
"""The workflow's admitted rate: its part of a full node (``Decision.admit_rps``)."""
REJECTED_BY_IN_FLIGHT = "in_flight"
"""The entry's adaptive limit of requests in flight (``control/admission.py``)."""
REJECTED_BY_STAGE = "stage"
"""A stage's queue was full (the function answered 429)."""

# --- annotations of a function (stack.yml, Deployment, Knative Service) --------
# The workflow (SPEC §2, plus the documented hop-ms, fanout and profile).
ANNOTATION_WORKFLOW = "com.esg.workflow"
ANNOTATION_STAGE = "com.esg.stage"
ANNOTATION_AFTER = "com.esg.after"
ANNOTATION_SLO_MS = "com.esg.slo-ms"
ANNOTATION_HOP_MS = "com.esg.hop-ms"
ANNOTATION_FANOUT = "com.esg.fanout"
ANNOTATION_PROFILE = "com.esg.profile"
# What the scaler last set (a Deployment's metadata; the pods get it pushed).
ANNOTATION_BATCH_SIZE = "com.esg.batch-size"
ANNOTATION_MAX_WAIT_MS = "com.esg.max-wait-ms"


def config_update(max_batch_size: int, max_wait_ms: float) -> dict:
    """The body of a PUT to CONFIG_PATH that sets the live batching."""
    return {CONFIG_MAX_BATCH_SIZE: int(max_batch_size), CONFIG_MAX_WAIT_MS: float(max_wait_ms)}


def share_update(gpu_share_pct: int) -> dict:
    """The body of a PUT to CONFIG_PATH that asks for another share (its
    answer's ``CONFIG_RESTART_REQUIRED`` says whether it took it live)."""
    return {CONFIG_GPU_SHARE_PCT: int(gpu_share_pct)}


def stage_timing(answers_headers) -> dict:
    """A stage's ``queue_ms`` and ``exec_ms`` from the headers of its calls'
    answers (``QUEUE_MS_HEADER``, ``EXEC_MS_HEADER``; the longest call of a
    fan-out); a header missing, or not a finite non-negative number, is left
    out."""
    out = {}
    for key, header in (("queue_ms", QUEUE_MS_HEADER), ("exec_ms", EXEC_MS_HEADER)):
        values = []
        for headers in answers_headers:
            try:
                value = float(headers.get(header))
            except (AttributeError, TypeError, ValueError):
                continue
            if 0 <= value < float("inf"):
                values.append(value)
        if values:
            out[key] = round(max(values), 3)
    return out


def wsgi_header(header: str) -> str:
    """The WSGI environ key of an HTTP header (PEP 3333): X-ESG-Deadline-Ms → HTTP_X_ESG_DEADLINE_MS."""
    return "HTTP_" + header.upper().replace("-", "_")
