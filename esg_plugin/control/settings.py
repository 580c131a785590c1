"""The control law's settings: one frozen dataclass, a docstring per field,
validated at construction. Each robust mechanism has a switch, so that an
ablation turns exactly one off (``without``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from ..model.config import DEFAULT_QUEUEING_MODEL, QUEUEING_MODELS
from .errors import ControlError

#: Mechanisms an ablation can switch off, one at a time (``docs/control.md``).
ABLATIONS = ("utilisation", "step", "settle", "exit", "rise", "pooled", "backlog", "feedback", "capacity", "ontime",
             "degraded", "late", "rollback", "starting", "bridge", "carry", "burst", "newest", "latest", "waits",
             "calibration", "packing", "spare", "fair", "later", "reach", "handover", "carryover", "restarts",
             "room", "cold", "tail", "hold", "early", "placeholder", "path", "relax")


@dataclass(frozen=True)
class ControlSettings:
    slo_margin: float = 0.0
    """Share of the SLO held back at start (and the least it goes back to).
    The tail is planned for by ``queue_quantile``; the margin is what the
    feedback adds where the model is still too optimistic."""
    feedback: bool = True
    """Misses raise the margin (by ``margin_step`` per ``feedback_cooldown_s``,
    up to ``max_margin``); a long window without misses lowers it again, never
    below ``slo_margin``."""
    margin_step: float = 0.1
    max_margin: float = 0.6
    margin_in_reach: bool = True
    """Where both feedbacks are spent — the margin at ``max_margin`` and
    out of reach, the capacity feedback at ``max_boost`` — and requests
    still miss, the first budget tried is the fastest plan's own latency
    (every stage at its fastest option), then the margin's grid above it:
    the tightest budget there is, not the grid's next step beyond it. At a
    tight SLO that step can lie beyond the fastest plan by most of the
    slack: a 3-stage chain at 1.23 × its fastest latency (random-2276,
    bursty, 5% utilisation, where a boost adds nothing) kept a plan 0.45
    ms slower than the fastest for 260 s at both limits. Only at both: at
    any margin out of reach it jumped to the fastest plan, often far
    dearer, on every transient raise (``docs/control.md``, point 5). Never
    on a time-shared node, where the boost does not climb. Ablation
    ``reach``."""
    boost_spare_only: bool = True
    """The capacity feedback's boost takes only GPUs the other workflows
    do not need to be on time: a boosted workflow is planned within the
    capacity less, for each other workflow, the larger of what its plan
    holds and — where the capacity held that plan below the plan on time
    for its own rate (late by its model, or for less rate) — what the
    cheapest plan on time would hold; where its plan holds more than that
    leaves, it is planned again within it at once, misses or not (again
    only when that leaves less still). A boost is a hedge against
    bursts; on a full cluster it took the GPUs another workflow needed
    for its arrivals (wide-534: a bursty chain boosted to 4 × its rate held
    13.7 of 16 GPUs while a stepping DAG ran on 2.3 and missed 85% of its
    requests). Ablation ``spare`` — which changes nothing while
    ``fair_share`` is on (that rule yields a boosted plan too, down to its
    fair share)."""
    fair_share: bool = True
    """Where the workflows' plans on time do not all fit the GPUs, a plan
    yields what another workflow needs to be on time, down to its max-min
    fair share: each workflow's claim is what its plan on time holds (the
    plan that runs where it is on time; where the capacity held it below,
    the cheapest plan on time for its rate), the capacity is split by
    water-filling over the claims (the smallest claims met whole, the rest
    split evenly), and a workflow is planned within the capacity less, for
    each other workflow, the larger of what its plan holds and the part of
    its claim its fair share covers. A plan holding more than that and
    more than its own fair share is planned again within what is left at
    once, misses or not (again only when that leaves less still); a
    boosted one likewise (it subsumes ``boost_spare_only``, down to the
    fair share rather than below it). Without it the first workflow
    planned keeps what it took: wide-1879 (three workflows on 16 GPUs)
    gave 11.5 GPUs to a bursty chain at 1.22 x its fastest latency that hit
    38% with them, while a DAG that meets 99.9% alone on 6.4 GPUs ran on
    2.9–4.9 and hit 14% (27.4% in all, nexus 74.5%). Ablation ``fair``."""
    capacity_feedback: bool = True
    """Misses that go on at ``max_margin`` raise the rate planned for (by
    ``feedback.BOOST_STEP`` per ``feedback_cooldown_s``, up to ``max_boost`` times
    the observed rate): when even the tightest budget misses, the model
    errs about more than latency (bursts its queueing formula does not
    see), and capacity is the lever left. A clean stretch of
    ``scale_down_delay_s`` takes one step back, before the margin. Not on a
    time-shared node (``busy_capacity`` set: ``esg up`` on CPU cores), where
    more replicas share the same cores and misses come from contention,
    which calibration measures: there it planned for twice the load while
    a slow host's misses went on (``docs/local.md``)."""
    boost_on_time: bool = True
    """The capacity feedback's rate goes no higher than a plan for it still
    meets the SLO by the model, where a plan for the rate itself does: when
    the plan for the boosted rate is one of the degraded ones (a budget
    beyond the SLO — on a full cluster, batches that wait to fill) and the
    plan without the boost is not, the boost steps back down (÷
    ``feedback.BOOST_STEP`` at a time) to the largest whose plan is on time.
    Where the plan for the rate itself is late too, the boost climbs as
    before (more replicas may reach a plan on time) — unless
    ``boost_no_later``. Off: the boosted rate is planned for whatever its
    plan's latency."""
    boost_no_later: bool = True
    """With ``boost_on_time``, where the plan for the rate itself is late
    by the model too (the capacity holds no plan on time), the boost steps
    back down to the largest whose plan is no later than that one: on a
    full cluster more rate buys no more GPUs, only larger batches that
    wait longer to fill. Without it the boost climbed through ever later
    plans: on wide-1879 an 8-stage DAG at 1.31 x its fastest latency,
    held to 4.4–4.9 GPUs, was planned for 4 x its rate by plans late by 2–4
    x its SLO and hit 44% of its requests (83% with it; the workload
    40.4 → 64.4%, nexus 74.5%). Ablation ``later``."""
    exec_calibration: bool = True
    """Each function's profile is scaled by its observed over profiled
    execution time (bounded, smoothed; ``docs/control.md``, calibration).
    Off: the profiles are believed as they are — the planned peers' way;
    with profiles that are wrong (``esg simulate --profile-error``) the
    difference shows (``docs/EVALUATION.md``)."""
    wait_calibration: bool = True
    """Misses while a stage's requests wait longer than the model gives it
    plan the workflow with its arrivals' cv² times that factor (the law's
    ``WAIT_*`` constants) — more replicas where the queue is — rather than
    raise the margin, which tightens every stage's budget. The queueing
    formula (Allen–Cunneen) gives bursts at a low load a short wait that a
    burst of ten requests on one replica does not have. Needs the stages'
    waits in the observation (``WorkflowObservation.stage_wait``: the
    simulator's, the runtime's ``esg_queue_wait_seconds``); without them,
    off."""
    max_boost: float = 4.0
    """2 before the sixteenth session: over the 500 development workloads
    4 lifted ESG's mean hit rate by 0.24 point for 2.5% more GPUs, almost
    all of it on bursty arrivals at tight SLOs (``docs/EVALUATION.md``)."""
    feedback_cooldown_s: float = 5.0
    miss_tolerance: float = 0.01
    """Missing: the share of late or rejected answers over ``feedback_window_s``
    is above this (the objective: 99% of requests within the SLO)."""
    feedback_window_s: float = 10.0
    utilisations: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3, 0.2, 0.1, 0.05)
    """Utilisation targets each stage may be planned at (the replica count is
    a decision of the planner); the first is the base target. The low ones
    (0.4–0.05: more replicas than the load needs) are what a tight SLO needs,
    where the model's mean wait at 0.5 is already most of the slack, and
    what bursts at a light load need: at 0.2 a stage that the load keeps
    busy less than a fifth of the time was offered one replica only, however
    long a burst waits for it (0.1 and 0.05 since the twenty-eighth
    session, ``docs/EVALUATION.md``). The cheapest plan that meets the
    budget still wins. Off: 0.8 only."""
    no_wait_options: bool = True
    """Offer every batch size above 1 also without a batching wait (a batch
    leaves with what is queued, sized as if it held one item), as a batcher
    with a timeout does: at a low rate, waiting for a batch to fill costs
    more latency than running a partial one, and a profile without batch 1
    has no other way to answer in time. On by default since the evaluation
    after issue 12's second pass (``docs/EVALUATION.md``); off, the SPEC's
    fill wait ``(b − 1) · n / λ`` is the only batching model.
    """
    step_detection: bool = True
    """Plan for the short window's rate as soon as it is significantly above
    the planned rate (a one-sided test with overdispersion ``cv²``), not only
    for the long window's."""
    latest_rate: bool = True
    """In a step (and the panic after it), plan for the rate since the
    source's reading before (``WorkflowObservation.newest_rps``, a count)
    where that is higher than the short window's: where the short window is
    longer than a tick (the simulator's 2 s at 1-s ticks), the window that
    detects a step straddles it and under-reads the new rate by the part
    before the step — by half, on average — and the instances the plan
    starts for the rest come a tick, and a cold start, later. Less one
    standard deviation of the count. A source without such a count (a
    Prometheus ``rate()``; the gateway scrape, whose short window is the
    interval itself) leaves it out, and the short window's rate is planned
    for. From the sixteenth session to the thirty-ninth it was off, as the
    law then took the count as the difference of two overlapping short
    windows, which a Prometheus range is not (``docs/control.md``)."""
    step_z: float = 3.0
    """The test's threshold in standard deviations."""
    step_settle: bool = True
    """In the panic after a step, once a short window that starts after the
    tick that detected it has passed, plan for the arrivals counted since
    the step, not for each short window: the plan is for their rate when
    that is significantly above the rate the plan was made for (``rise_z``)
    or significantly below it (by more than ``step_z`` standard deviations
    of the count), else it holds. A panic plan made for one
    short window that read high — a burst of bursty arrivals, or a plan
    still at a quiet start when the rate rose — comes down as soon as the
    arrivals since say so (when below ``scale_down_below`` of the plan,
    with no backlog and no rising misses; watched as a scale-down,
    ``rollback``), not after the whole ``scale_down_delay_s``; one that read
    low goes up; the noise of later short windows moves nothing. The
    panic's hold on any other scale-down goes on. A step detected again in
    the panic counts from there. While one of the windows counted reads
    significantly above the rate since (the step's own test), the arrivals
    are no one rate — a load that rose and fell again — and the panic goes
    on as without the count: a fall waits for ``scale_down_delay_s``. The
    first plan, made from the first windows, is counted after the same way
    for ``scale_down_delay_s``, but only to come down, and only while the
    window it was made from is within the noise of the count (else the
    load fell: the delay's). Off: the short window
    (when above the long one) throughout the panic, and the first plan
    held like any other."""
    panic_exit: bool = True
    """At the end of the panic after a step — which held the plan for
    ``scale_down_delay_s`` since it — the plan is for the arrivals counted
    since the step (``step_settle``), not held within their noise: it comes
    down at once where they are below it by a step of the rate grid or more
    — not only below ``scale_down_below`` of it: the band is for a plan that
    the count has not yet tested — with no backlog and no rising misses,
    watched as a scale-down (``rollback``);
    Knative's panic mode, where on leaving the panic the stable window
    decides. Not where the arrivals since are no one rate (a load that
    rose and fell: that waits for the delay), nor below a long window
    that reads higher for bursty arrivals (``pooled_max_cv2``); a count
    above the plan goes through the rise test. The first plan's
    ``scale_down_delay_s`` of counting after it (``step_settle``) ends the
    same way, where its first window is within the noise of the count (one
    far above it is a load that fell) and the arrivals are not bursty. Off: the count's noise band holds the plan
    to the end of the panic, and then the long window (or the pooled count)
    must stay below it for a further ``scale_down_delay_s``. (Before the
    thirty-first session, down only below ``scale_down_below`` of the plan:
    a first plan made from two seconds that read 16% high held to the end
    of an 80-s ``esg up`` run, ``bench/tracking.py``.)"""
    step_cv2_hold: bool = True
    """In the panic after a step, plan with the arrivals' cv² as it was when
    the step was detected, when the window's reads higher: a window that
    holds gaps at the old rate and at the new one reads as bursty
    (random-745: cv² 1.0 → 2.4 after a 5.6× step of Poisson arrivals),
    and a plan for bursts holds more for the whole panic. Not a cv² read
    from fewer than ``MIN_GAPS_FOR_CV2`` gaps (the source's 1 for want of
    a reading, at the start of a run): that is no measurement to hold, and
    held, it planned bursty arrivals as Poisson for a whole panic (``esg
    up``, random live seed 18: a burst 4 s in)."""
    backlog_drain: bool = True
    """Plan for rate + backlog / ``drain_s``: requests already waiting are
    served within a bounded time instead of waiting for the queue to shrink."""
    drain_s: float = 2.0
    degraded_cheapest: bool = True
    """When no plan meets the margin budget: the tightest budget up to the SLO
    that fits the capacity, then the fastest plan, then looser budgets — not
    the fastest (dearest) plan at once. Off: the planner's fallback budgets
    (1, 1.5, 2, 4 × SLO)."""
    late_plans: bool = True
    """Where no plan can meet the SLO — the fastest executions alone, as
    calibrated, take longer than it (profiles that said otherwise; over
    every configuration the functions run, whatever shares a stage is
    held to now) — the cheapest plan that keeps up with the rate runs,
    not the one late by the least, and the misses raise neither the
    margin nor the capacity (``capacity_feedback``): every request misses
    whatever runs. Where capacity is reserved only (not with
    ``busy_capacity``: there the slowness is in part the plan's own
    contention). Off: the plan late by
    the least, and both feedbacks on to their limits (in the thirtieth
    session, profiles half as fast as they said on a 1.26x SLO: 13.3
    GPUs for a hit rate of 0, where the peers held 3.1–7.8). A plan late
    only for want of capacity (a full cluster) still raises them: held
    back there too, a wide workload near the cluster's capacity fell from
    77.1% to 63.3% (``docs/EVALUATION.md``)."""
    measured_hops: bool = True
    """Plan with the hop between stages as measured (``WorkflowObservation.hop_ms``)
    where it is longer than the workflow's ``hop_ms``: the planner budgets
    ``hop_ms`` per edge, and a hop that takes longer spends SLO the plan
    thinks it has. Never shorter than the workflow says. The simulator's hops
    are the workflow's own: nothing changes there."""
    rate_headroom: float = 0.1
    """Plan for this much more than the rate estimate, times the square root
    of the arrivals' cv² (at least 1)."""
    rise_z: float = 2.0
    """A rise of the long window re-plans up only when its count is this
    many standard deviations (of a Poisson count inflated by the arrivals'
    cv²) above the rate the plan was made for: noise is no reason to
    re-plan, and re-planning up on every noisy rise, down only below
    ``scale_down_below`` after a delay, ratchets the plan above the load
    (the upper envelope of the window's noise). The same test holds for
    the count since a step in the panic after it (``step_settle``): planned
    up at every reading above the plan, a count whose first windows read
    low rose with each of them and held the highest (``esg up`` at 3x: the
    traffic workflow planned for 1.16 × its arrivals). 0: every rise
    re-plans. A step (the short window) and a backlog re-plan without it;
    misses raise the margin."""
    pooled_rate: bool = True
    """At a steady rate, plan for the arrivals counted since the rate last
    moved (up to ``pool_max_s``), not for the long window alone: re-planning
    up on a window that read high and down only after a delay ratchets the
    plan above the load, by more the lower the rate (a 30-s window at 1 rps
    reads ±18%). The count starts again when the long window reads more than
    ``rise_z`` standard deviations from it, and at each step. Off: the long
    window's rate."""
    pooled_max_cv2: float = 2.0
    """Where the arrivals' cv² is above this (bursty: gamma arrivals of cv
    1.5 and more; Poisson reads about 1), a long window that reads above the
    count is planned for, not the count: the plan rides the bursts, which
    the headroom and the queueing model under-serve. On the 590 development
    workloads the count alone lost 0.04 point of mean hit rate, all of it on
    gamma arrivals of cv 2.4–3.8 (random-856: 78.5% → 66.3%), for 0.4% fewer
    GPUs; with this rule 0.006 point for 0.2% fewer (``docs/EVALUATION.md``,
    the twenty-fourth session)."""
    pool_max_s: float = 120.0
    """The longest the arrivals are counted for ``pooled_rate``: a slow drift
    (a diurnal load) is followed within this."""
    scale_down_below: float = 0.9
    """Re-plan down only once the wanted rate is below this share of the planned one …"""
    scale_down_delay_s: float = 30.0
    """… and has stayed there this long, with no backlog and no rising misses
    (Knative's scale-down delay and panic mode)."""
    rollback: bool = True
    """A scale-down followed within ``scale_down_delay_s`` by misses above
    the tolerance is undone halfway: the workflow is planned again for the
    geometric mean of the rates planned after and before it (a bisection:
    the plan before met the SLO, the one after it was the model's guess,
    and the rate before may have been a backlog's drain), and its next
    scale-down waits twice as long as the last (up to
    ``MAX_ROLLBACK_DOUBLINGS`` doublings), as a crash-looping pod's
    restarts back off. Off: a scale-down that brings misses back is met
    only by the margin's feedback."""
    margin_rollback: bool = True
    """A margin lowered after a clean stretch, followed within
    ``scale_down_delay_s`` by fresh misses above the tolerance, goes back to
    where it was before the lowering — the last margin seen clean — rather
    than a ``margin_step`` above the lowered one; and the next lowering
    waits twice as long as the last (up to ``MAX_ROLLBACK_DOUBLINGS``
    doublings; a lowering that holds for the delay starts the count again):
    the margin's own ``rollback``. Without it the margin sawed where the
    plan one relaxation below the clean one misses by a little more than
    the tolerance in a 10-s window: random-4876 (a 2-stage chain, Poisson
    40 rps) went 0.45 → 0.55 → 0.50 → 0.45 every 70–80 s, its plans 1.4,
    2.8 and 1.8 GPUs: 99.76% at 2.12 GPUs where nexus held 1.50 (99.70%);
    99.83% at 1.73 with it (``docs/EVALUATION.md``, the sixty-ninth
    session). Off: misses after a lowering raise the margin by a step, and
    a lowering waits for a clean stretch only. Ablation ``relax``."""
    steady_misses: bool = True
    """On a time-shared node (``busy_capacity``): misses that hold steady do
    not block a scale-down, nor undo one; only misses significantly above
    the share seen over the scale-down delay before (``MISS_RISE_Z``) do —
    there a host slower than any plan misses at a steady share whatever is
    held, and a plan held above the load for them never came back to it.
    Where capacity is reserved (GPU shares, the simulator), and with this
    off, any misses over the tolerance block a scale-down and undo one
    made within the delay: there held capacity is what helps with them."""
    warmup_s: float = 30.0
    """No scale-down until the law has observed this long (conservative after
    a restart: a full window of data first)."""
    adopt_running: bool = True
    """A workflow whose stages already run when the law first plans it (the
    scaler restarted — a new version, a node drained, a crash — or took
    over functions deployed by hand) keeps what runs as its first plan
    where that serves more than the first window's rate by the model (the
    largest rate at which the running instances meet the margin's budget,
    at no stage above the largest of ``utilisations``): brought down only
    by the scale-down path (``scale_down_delay_s`` of lower load, never
    before ``warmup_s``, never while requests wait or miss), re-planned at
    once for a rate above it; until then a re-plan for misses or moved
    execution times is for the load, and taken only where it holds more
    than what runs. As the Kubernetes HPA records a target's current
    replicas as a recommendation when its controller first sees it, so
    that a restart scales nothing down within the stabilisation window.
    Off: the first plan is for the first window's rate, at once. Never
    acts in the simulator unless it restarts the law (``bench/robustness.py
    --restart-at``): its runs start with nothing running."""
    min_share_saving: float = 0.2
    """Another share restarts a stage's instances: a smaller one is taken only
    when it saves at least this share of the stage's cost; a larger one only
    when the plan at the running shares misses the SLO or costs more than
    1 / (1 - this) times as much."""
    packed_capacity: bool = True
    """Where ``capacity_gpus`` is set (GPUs of 100% share each): a plan fits
    only where its instances and the other workflows' planned instances
    find a GPU each, placed first fit decreasing by share (``packing.py``),
    not only where their shares fit in total — 80% free as 40% on each of
    two GPUs holds no 70% instance. A plan on time that does not is
    searched again with no share above the most room a GPU has left;
    where no plan on time packs, the first on time within the total runs,
    as without it (ablation ``packing``; on since the fortieth session:
    ``docs/control.md``, point 4)."""
    below_no_room: bool = False
    """**Off by default** (tried in the thirty-seventh session; for
    comparisons: ``docs/control.md``, point 4, has the figures). On: where
    a workflow misses and the platform has found no room for a stage's
    instances (``Observation.unplaced``: no GPU with that much of its share
    free, a fragmented cluster) for longer than the function's cold start,
    while that stage's requests waited longer than the plan's whole time
    there, the stage is planned below that share — one stage of a workflow
    at a time — for ``scale_down_delay_s`` × 2^(times before, at most 3),
    unless the plan below it is later by the model than the plan without the
    hold (then the share is not tried again for as long). Off: the stage
    waits for room, with what its rolling update left it (Kubernetes keeps a
    Deployment's new pods ``Pending`` and scales the old ones down all the
    same)."""
    bridge_batching: bool = True
    """While replicas a re-plan added beside a stage's running ones (at
    their share) start — the function's cold start — the running ones carry
    the load alone: every group of the stage runs at its larger batch size
    (the one with the most throughput whose execution fits the stage's part
    of the SLO) with no batching wait — never a smaller one than they ran
    at before the re-plan, where that fits the SLO beside the rest of the
    plan — and as planned once the start is over. A batch size changes live (the runtime's ``/_esg/config``), so
    this costs no restart; under Knative a batch size is the revision's
    env, and every change a new revision: the scaler turns it off there."""
    bridge_carry: bool = True
    """Where the running ones' batch size before the re-plan does not fit
    the SLO beside the rest of the plan (``bridge_batching``) and they
    cannot serve the stage's rate alone at the planned batch size, they run
    at the smallest batch size up to that one at which they can, while
    the replicas added beside them start: late by the model, but a queue
    that grows for a whole cold start misses more (``docs/control.md``)."""
    burst_batching: bool = True
    """A group planned without a batching wait runs at its larger batch
    size, with no wait, where that batch serves at least
    ``burst_min_gain`` times the items a millisecond of the planned one —
    a batch leaves with what is queued, so at a low queue nothing changes,
    and a queue a burst builds drains in larger batches (a dynamic
    batcher's maximum batch size, with no queue delay). The cost: a
    request that arrives while a larger batch runs waits for it, which
    pays only where the larger batch serves much more a millisecond (a
    translator at half of this machine's cores: 8 items in 57 ms against
    one in 26; not ResNet-50 there: two in 67 ms against one in 41). On since the
    thirty-fifth session (``docs/EVALUATION.md``); ungated, in the
    eighteenth, it held 20% more GPUs on the shipped ``mixed`` workload
    for the same hit rate (the misses at tight SLOs raise the margin)."""
    burst_min_gain: float = 2.0
    """``burst_batching``'s threshold: the larger batch's items a
    millisecond over the planned batch's (1: every group planned without
    a wait; at 2 a burst of the larger batch's size drains in at most
    half the time it takes at the planned one)."""
    newest_first: bool = True
    """A stage behind its plan serves the newest requests first: while the
    oldest queued request cannot meet its deadline even if it ran now and
    every execution the plan runs after the stage followed at once
    (``Decision.downstream_exec_ms``), a batch takes the newest — those with
    the most slack — rather than the oldest, which would take this stage's
    capacity and miss at a later one (adaptive LIFO, as in Facebook's "Fail
    at Scale"). Enacted where the requests queue: the runtime's batcher
    (``runtime/batcher.py: behind_plan``; each stage's figure comes as
    ``X-ESG-Downstream-Ms`` — from this decision under ``esg up``, from the
    executions the stages report in a cluster's router function) and the simulator's
    stages, which call the same rule; this switch is the simulator's (its
    ablation ``newest``). Over the 590 development workloads it put 9 more
    within a point of the best peer for 0.4% fewer GPUs, nearly all rate
    steps whose first seconds had missed almost every request; judged by
    the plan's latency downstream (waits included) instead, it also
    deferred bursts' requests that would have made it, and cost 0.7% more
    GPUs: ``docs/EVALUATION.md``, the twenty-sixth session."""
    handover: bool = True
    """A re-plan that holds less for no more load (a margin lowered, a
    boost given back, a scale-down) and moves some stage to another share
    — a restart: its running instances serve until the new ones do —,
    where the model says the mix that runs meanwhile (the other stages as
    planned, the restarted ones as they ran) misses the SLO, keeps every
    other stage as it ran until the restarted stages' instances are in
    service, then moves it: the old plan runs whole until the new one
    can. Without it, the other stages took their new batch size and
    replicas at once, beside the restarting stage's old instances: a mix
    no plan was made for (wide-1185: a batch of 16 upstream where 2 had
    run fed a stage still on its old 10% instance, 20% of the requests
    missed for the 5 s of its start, and the margin went back up — three
    times in 150 s). Not while a restarted stage finds no GPU with room
    (what the others hold may be that room), nor where the mix meets the
    SLO (on a full cluster the instances held a few seconds longer move
    where the next ones find room: wide-151 lost 15 points when every
    such re-plan handed over), nor on a time-shared node
    (``busy_capacity``), where a share changes live. Where the mix meets
    the SLO but the re-plan moves some stages to a smaller share and
    others to a larger one — each stage's new instances serve once ready,
    one stage at a time — and the mix where the smaller ones serve first
    misses by the model, the stages moved down run as they ran until those
    moved up serve, and restart then (wide-1390: a 50% stage serving
    before its neighbour's 90% one shed every request for 1.3 s; since the
    forty-ninth session) — also where every stage restarts (random-5264;
    since the seventy-third). Ablation ``handover``."""
    handover_carry: bool = True
    """A re-plan while a handover is under way that is no handover itself
    (a rollback's for more after the misses of a second, say) keeps it:
    the kept stages run as they ran until the restarted stages' new
    instances serve, where those restart to the same share in the new plan
    and the new plan is for no more load than the kept stages ran for.
    Without it such a re-plan moved the kept stages at once, beside the
    restarted stages' old instances (random-5264: s1 moved from 70% to 20%
    while s0's 90% instance still started, and requests were shed for
    2 s). Since the seventy-fifth session. Ablation ``carryover``."""
    restart_room: bool = True
    """Where the GPUs are counted, a re-plan that moves stages to another
    share (a restart: the old instances serve until the new ones do, both
    holding their shares meanwhile) and whose new instances find no GPU
    each beside every instance that runs now and the other workflows'
    planned ones (placed as ``packed_capacity`` places them; never with it
    off) keeps every stage at the share it runs at — more replicas, a
    larger batch — where that plan is on time by the model (its budget
    within the SLO): in the panic after a step always, and otherwise where
    the stages as they would run while the new instances wait for room —
    a restarted stage on as many of its old instances as the plan wants
    new ones (a Deployment's rolling update scales the old ReplicaSet to
    the new replica count, less the unavailable it allows, while the new
    pods are ``Pending``), the others as planned — miss the SLO by the
    model. Outside a step, the plan at the running shares is also taken
    where it is late by the model but faster by it than those stages left
    while the new instances wait — at the largest boost (``max_boost``: no
    climb of the capacity feedback's rate is left, which a late plan would
    hold back through ``boost_on_time``; random-wide-14: a restart of a
    stage from twelve 10% instances to one at 100% found no room, the
    stage was left one instance, and five instances waited for room to
    the end: 53% met; the plan held instead, 99%), and at any boost where
    the new instances would find no GPU even once the rolling update has
    left each restarted stage its last old instance: they would wait for
    good (random-wide-1779 49.5 → 97.4%, random-extreme-856 6.1 → 77.7%,
    both first uses). A stage whose
    instances wait for room does not run its planned share: it is neither
    held at it nor counted as running. Read from
    wide-1333 (a 6.4× step on a 12-stage chain beside a second workflow:
    its plan for the step served from 125 s, then a raise of the margin at
    127 s restarted six stages whose new instances found no room, and
    about three quarters of the requests missed from 130 to 190 s) and
    random-extreme-722 (a bursty 13-stage chain beside a DAG: a re-plan at
    56 s moved four stages from up to ten small instances to one large
    one each, none found a whole GPU, and each stage was left on one of
    its old instances: 29% of the requests met the SLO). On full clusters
    a run goes one way or the other by tens of points on such a rule
    (``docs/EVALUATION.md``, the fiftieth session). Never at the shares of a
    plan made for the least rate (``min_rate_rps``: before any arrival, or with none):
    chosen for no load, they are not worth keeping (random-wide-1879: a
    bursty chain's first plan for its arrivals held at the one 10%
    instance of a stage, 51.7 → 58.6%; wide-1957 41.8 → 61.2%). Ablation
    ``restarts``."""
    actual_room: bool = True
    """Where the platform says how much share each GPU has free
    (``Observation.gpu_free_pct``: the simulator's cluster; HAMi's records
    under ``esg scaler``), ``restart_room``
    asks whether a restart's new instances fit in that room — where the
    instances that run are placed — rather than packed afresh with every
    instance that runs, which no platform does: on a cluster near full the
    room is in pieces the fresh packing does not see. Each re-plan of a
    tick takes the room its new instances fit in from the next. Read from
    random-wide-1938 (a first use: a lower margin restarted five stages of
    a DAG, on 13.3 of 16 GPUs held, for 10% fewer GPUs; the new 70–90%
    instances found no GPU, and 3.8% of its requests missed where nexus
    missed none; with the rule 100% at 12.10 GPUs, nexus 100% at 14.25).
    On full clusters it moves runs both ways (``docs/EVALUATION.md``, the
    fifty-fifth session). Ablation ``room``."""
    cold_start_misses: bool = True
    """Misses while a stage of the workflow has no instance in service (the
    platform says so: ``Observation.serving``) are the cold start's, not the
    plan's: they raise neither the margin nor the capacity, and the miss
    feedback counts only the answers from a short window after every stage
    serves again (those queued meanwhile are answered late then). Before
    the sixty-second session they raised the margin: in a first plan with
    cold starts of 11–15 s (random-extreme-1390) the margin climbed to its
    largest on start-up misses alone — each raise a faster share, a restart
    and another cold start — and took minutes to come down (2.51 GPUs
    where nexus held 1.90, both at 100%). Ablation ``cold``."""
    keep_starting: bool = True
    """In the panic after a step, a stage whose plan started instances less
    than its function's cold start ago keeps their share when it is
    re-planned (more replicas of it, where that meets the budget), rather
    than moving to another share: a rolling update to a third version
    scales the second, still starting, away (Kubernetes does so too), and
    the stage then waits a whole cold start again while the load that
    called for it queues — in a step, which re-plans at every tick as the
    short window fills, one cold start after another. Held in every search
    of the re-plan, also those that hold other stages at their shares
    (since the forty-eighth session). Not on a
    time-shared node (``busy_capacity`` set: ``esg up`` on CPU cores),
    where a share change is applied live to the running workers and
    throws nothing away. Off: each re-plan picks its shares afresh."""
    free_placeholder_shares: bool = True
    """A plan made for the least rate (``min_rate_rps``: the first, before
    any arrival, or one for no arrivals) holds no stage at its shares: the
    first re-plan for arrivals picks every stage's share afresh — neither
    ``keep_starting`` (its instances still start) nor ``min_share_saving``
    (a restart that saves too little) keeps the shares it started, as
    ``restart_room`` already did not. Chosen for no load, they are no
    choice worth keeping; kept, they stayed as long as the rate did — no
    later re-plan is asked for at the same rate —, and the plan held more
    than the one for that rate: random-wide-3052 (a 5-stage chain, Poisson
    176 rps) held the first plan's shares, with more replicas of them,
    for the whole run: 2.40 GPUs where orion held 2.20, both at 100%
    (2.10 with the rule). Off: as before the
    sixty-eighth session. Ablation ``placeholder``."""
    keep_starting_on_time: bool = True
    """``keep_starting``: the plan at the shares of the instances still
    starting is taken where it is on time by the model (the SLO as its
    budget), not only where it meets the margin's budget — the margin is a
    hedge against misses the model does not see, a restart of what starts
    is one cold start more for certain. Before the sixty-fifth session a
    re-plan for misses in the panic (a margin raised while the step's new
    instances start, their misses the wait for them) took the plan at other
    shares that met the raised margin's budget: random-extreme-1939 (a
    6.5 × step at 81 s, cold starts of 13 s) moved three stages at 87 s
    whose instances were still starting, and missed until 100 s (per second,
    a throw-away count)
    (90.10% at 6.16 GPUs; 93.05% at 5.34 with it). Ablation ``hold``."""
    boost_waits_for_start: bool = True
    """In the panic after a step, while some stage still starts the
    instances a re-plan started (:meth:`ControlLaw._still_starting`), the
    misses raise no boost (``capacity_feedback``): the instances a boost
    adds would start after those, and serve no sooner; the margin still
    rises, and the boost once they serve. Before the sixty-fifth session
    random-extreme-1939's boost climbed to 1.44 × in the 13-s cold start
    of its step's instances, and its misses ended at 95 s all the same (per
    second, a throw-away count)
    (93.05% at 5.34 GPUs; 93.42% at 5.11 with it). Ablation ``early``."""
    min_rate_rps: float = 0.1
    """The least rate planned for."""
    resume_learned: bool = True
    """A law started afresh beside what ran (a restarted scaler, a new
    leader) resumes each workflow's margin, boost and queue factor, and a
    rollback's back-off (its count, the hold on scale-downs that is left,
    the rate it holds), from what the law before it had learned, where its
    caller kept that (``ControlLaw.learned``, ``ControlLaw.resume``: the
    scaler in its Lease's record, the simulator's restart always), each
    believed only in its range. Off: they start where a new law's do."""
    resume_panic: bool = True
    """With ``resume_learned``: a step's panic goes with what was learned
    — its seconds left, the step's age, the arrivals counted since it and
    their cv² before it (``rate.panic_record``) — so that a law that
    resumes within it ends it when the law before would have, counts the
    step's arrivals on from those that law had counted (not the long
    window, which holds both rates) and plans with at most the cv² before
    the step (``step_cv2_hold``). What ran, kept (``adopt_running``), is
    not brought down by the panic's count: it waits for the scale-down
    delay, as it promises. Off: a resumed law starts outside any panic."""
    queueing_aware: bool = True
    """Plan with the queueing-aware latency (``model/config.py``)."""
    queue_quantile: Optional[float] = None
    """Plan each stage's queueing wait at this quantile (the SLO is about the
    tail); None: the mean wait (but see ``low_rate_tail``)."""
    low_rate_tail: bool = True
    """A workflow whose rate gives the miss feedback fewer than
    ``1 / miss_tolerance`` answers over ``feedback_window_s`` (10 rps at the
    defaults), its arrivals not bursty (cv² at most ``pooled_max_cv2``), is
    planned with each stage's wait at its ``1 − miss_tolerance`` quantile,
    not its mean (:meth:`wait_quantile`), where a plan meets the margin's
    budget so (else as without: the mean). There the feedback cannot see
    the tolerance — one miss in its window is already above it, and it
    acts only on ``MIN_MISSES`` (a second miss) in the window, so misses of 1–2% spread
    thin go unseen and only a cluster raises the margin — and what it
    raises, the margin, does not reach the misses the mean hides: at a light load a request rarely
    waits, so the mean wait is almost nothing, but one that arrives while
    its stage's only instance runs waits up to a whole execution, and at a
    load of a few hundredths that is a few percent of the requests. Found
    on random-wide-2508 (a 2-stage chain at 3.9 rps, Poisson, SLO 3.3 × the
    fastest): 98.7% at 0.33 GPUs, the margin sawing between 0 and 0.3 and
    the plan changed for 38 s of 300; 99.1% at 0.41 with it (``docs/EVALUATION.md``, the
    sixty-third session). Not for bursty arrivals: Allen–Cunneen's scaling
    of the M/M/c tail by the cv² is no model of a burst's tail, and there
    the rule lost as much as it won (workloads of gamma streams all below
    10 rps: 97.12% → 96.97%, ``bench/pairs.py``); the wait feedback
    answers bursts. Ablation ``tail``."""
    path_tail: bool = True
    """With ``low_rate_tail``: before the plan at each stage's
    ``1 − miss_tolerance`` quantile, the plans at lower quantiles are
    tried, lowest first (the mean, then the quantiles whose share beyond
    them is the tolerance's times 64, 32, … 2:
    :func:`search.path_tail_quantiles`), and the first whose waits along
    each path stay within what the path leaves for them for all but the
    tolerance's share of requests, by the model (``model/tail.py``: the
    stages' waits summed, not their quantiles), is taken. The sum of
    seven stages' 99% quantiles is far above the 99% quantile of their
    sum: random-4761, a 7-stage chain at 8.7 rps, held 2.62 GPUs where
    infless and fast-gshare held 2.00, all at 100%; 2.20 with it. Off:
    each stage at the tail's quantile (``docs/EVALUATION.md``, the
    sixty-eighth session). Ablation ``path``."""
    queueing_model: str = DEFAULT_QUEUEING_MODEL
    """The queueing wait's model, one of ``QUEUEING_MODELS`` (``model/config.py``
    says each, and why the law plans with Allen–Cunneen). For comparisons."""
    max_replans_per_tick: int = 3
    """At most this many workflows are re-planned in one tick (the most urgent
    first: first plans, then the largest rise); the others at the next tick.
    Bounds the step's time when a change hits every workflow at once."""
    capacity_gpus: Optional[float] = None
    """GPUs (or core-equivalents) there are, for degraded plans; None: no limit."""
    busy_capacity: Optional[float] = None
    """How much of a time-shared node (a CPU: its cores, in share units, 1.0
    the whole node) the plans may keep busy in all: Σ over stages of rate ×
    execution time per request × share (:func:`law.plan_busy`). A workflow
    whose plan would need more than the others leave is planned for the rate
    that fits, and that rate is what it admits (``Decision.admit_rps``); the
    rest is shed at the entry. None: no limit (GPU shares are reserved, not
    time-shared: ``capacity_gpus``)."""

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.slo_margin < 1, "slo_margin must lie in [0, 1)"),
            (self.slo_margin <= self.max_margin < 1, "max_margin must lie in [slo_margin, 1)"),
            (0 < self.margin_step < 1, "margin_step must lie in (0, 1)"),
            (self.feedback_cooldown_s >= 0, "feedback_cooldown_s must not be negative"),
            (0 <= self.miss_tolerance < 1, "miss_tolerance must lie in [0, 1)"),
            (self.feedback_window_s > 0, "feedback_window_s must be positive"),
            (1.0 <= self.max_boost <= 10.0, "max_boost must lie in [1, 10]"),
            (len(self.utilisations) > 0 and all(0 < u <= 1 for u in self.utilisations),
             "utilisations must be a non-empty list of numbers in (0, 1]"),
            (self.step_z > 0, "step_z must be positive"),
            (self.drain_s > 0, "drain_s must be positive"),
            (self.pool_max_s > 0, "pool_max_s must be positive"),
            (self.pooled_max_cv2 >= 0, "pooled_max_cv2 must be a number, at least 0"),
            (self.rate_headroom >= 0, "rate_headroom must not be negative"),
            (0 < self.scale_down_below <= 1, "scale_down_below must lie in (0, 1]"),
            (self.rise_z >= 0, "rise_z must not be negative"),
            (self.scale_down_delay_s >= 0, "scale_down_delay_s must not be negative"),
            (self.warmup_s >= 0, "warmup_s must not be negative"),
            (0 <= self.min_share_saving < 1, "min_share_saving must lie in [0, 1)"),
            (1 <= self.burst_min_gain <= 1e6, "burst_min_gain must lie in [1, 1e6]"),
            (self.min_rate_rps > 0, "min_rate_rps must be positive"),
            (self.max_replans_per_tick >= 1, "max_replans_per_tick must be at least 1"),
            (self.capacity_gpus is None or self.capacity_gpus > 0, "capacity_gpus must be positive"),
            (self.busy_capacity is None or 0 < self.busy_capacity <= 1e6, "busy_capacity must lie in (0, 1e6]"),
            (self.queue_quantile is None or 0 < self.queue_quantile < 1, "queue_quantile must lie in (0, 1)"),
            (self.queueing_model in QUEUEING_MODELS,
             f"queueing_model must be one of {', '.join(QUEUEING_MODELS)}, got {self.queueing_model!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ControlError(message)
        for name in ("slo_margin", "max_margin", "margin_step", "drain_s", "rate_headroom", "scale_down_delay_s",
                     "warmup_s", "min_rate_rps", "step_z", "feedback_cooldown_s", "pool_max_s"):
            if not math.isfinite(getattr(self, name)):
                raise ControlError(f"{name} must be a finite number")

    def wait_quantile(self, rate_rps: float, arrival_cv2: Optional[float]) -> Optional[float]:
        """The quantile of each stage's queueing wait a plan for ``rate_rps``
        (the workflow's rate) at ``arrival_cv2`` budgets first:
        ``queue_quantile`` (None: the mean), or ``1 − miss_tolerance`` where
        that is higher, the rate is too low for the miss feedback to see the
        tolerance and the arrivals are not bursty (``low_rate_tail``; the
        search falls back to ``queue_quantile`` where no plan meets the
        margin's budget with it)."""
        if self.low_rate_tail and self.miss_tolerance > 0 and arrival_cv2 is not None \
                and arrival_cv2 <= self.pooled_max_cv2 \
                and rate_rps * self.feedback_window_s * self.miss_tolerance < 1.0:
            return max(self.queue_quantile or 0.0, 1.0 - self.miss_tolerance)
        return self.queue_quantile

    def without(self, mechanism: Optional[str]) -> "ControlSettings":
        """These settings with one mechanism of :data:`ABLATIONS` switched off."""
        if mechanism is None:
            return self
        if mechanism == "utilisation":
            return replace(self, utilisations=(0.8,))
        if mechanism == "step":
            return replace(self, step_detection=False)
        if mechanism == "settle":
            return replace(self, step_settle=False)
        if mechanism == "exit":
            return replace(self, panic_exit=False)
        if mechanism == "rise":
            return replace(self, rise_z=0.0)
        if mechanism == "pooled":
            return replace(self, pooled_rate=False)
        if mechanism == "backlog":
            return replace(self, backlog_drain=False)
        if mechanism == "feedback":
            return replace(self, feedback=False)
        if mechanism == "capacity":
            return replace(self, capacity_feedback=False)
        if mechanism == "ontime":
            return replace(self, boost_on_time=False)
        if mechanism == "degraded":
            return replace(self, degraded_cheapest=False)
        if mechanism == "late":
            return replace(self, late_plans=False)
        if mechanism == "rollback":
            return replace(self, rollback=False)
        if mechanism == "starting":
            return replace(self, keep_starting=False)
        if mechanism == "hold":
            return replace(self, keep_starting_on_time=False)
        if mechanism == "path":
            return replace(self, path_tail=False)
        if mechanism == "placeholder":
            return replace(self, free_placeholder_shares=False)
        if mechanism == "early":
            return replace(self, boost_waits_for_start=False)
        if mechanism == "bridge":
            return replace(self, bridge_batching=False)
        if mechanism == "carry":
            return replace(self, bridge_carry=False)
        if mechanism == "burst":
            return replace(self, burst_batching=False)
        if mechanism == "newest":
            return replace(self, newest_first=False)
        if mechanism == "latest":
            return replace(self, latest_rate=False)
        if mechanism == "waits":
            return replace(self, wait_calibration=False)
        if mechanism == "calibration":
            return replace(self, exec_calibration=False)
        if mechanism == "packing":
            return replace(self, packed_capacity=False)
        if mechanism == "spare":
            return replace(self, boost_spare_only=False)
        if mechanism == "later":
            return replace(self, boost_no_later=False)
        if mechanism == "fair":
            return replace(self, fair_share=False)
        if mechanism == "room":
            return replace(self, actual_room=False)
        if mechanism == "cold":
            return replace(self, cold_start_misses=False)
        if mechanism == "tail":
            return replace(self, low_rate_tail=False)
        if mechanism == "reach":
            return replace(self, margin_in_reach=False)
        if mechanism == "handover":
            return replace(self, handover=False)
        if mechanism == "carryover":
            return replace(self, handover_carry=False)
        if mechanism == "restarts":
            return replace(self, restart_room=False)
        if mechanism == "relax":
            return replace(self, margin_rollback=False)
        raise ControlError(f"unknown mechanism {mechanism!r}; known: {', '.join(ABLATIONS)}")
