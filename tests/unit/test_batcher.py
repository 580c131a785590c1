"""The batcher alone, with an injected clock and no threads."""

from concurrent.futures import CancelledError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_plugin.runtime.batcher import (
    BatchSizeMismatch, Batcher, Closed, DeadlineExceeded, ExecEstimate, QueueFull, Request, decide_dispatch,
)
from esg_plugin.runtime.settings import BatchConfig, LiveConfig


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(max_batch=4, wait_ms=10.0, max_queue=1000, run=None):
    clock = FakeClock()
    batches = []

    def run_batch(payloads):
        batches.append(list(payloads))
        clock.now += 0.001  # each batch takes 1 ms of fake time
        return run(payloads) if run else [("done", p) for p in payloads]

    b = Batcher(run_batch, LiveConfig(BatchConfig(max_batch, wait_ms)), max_queue, clock)
    return b, clock, batches


def drain(batcher, clock, until_s):
    """Step the batcher with the fake clock until ``until_s``."""
    while True:
        batch, wake = batcher.step()
        if batch is not None:
            batcher.execute(batch)
            continue
        if wake is None or wake > until_s:
            return
        clock.now = max(clock.now, wake)


def test_decide():
    cfg = BatchConfig(4, 10.0)
    r = lambda t, d=None: Request(None, t, d)  # noqa: E731
    assert decide_dispatch([], cfg, 0.0, 5.0).now is False
    assert decide_dispatch([r(0)] * 4, cfg, 0.0, 0.0).now is True                 # full
    assert decide_dispatch([r(0)], cfg, 0.0, 0.009) == type(decide_dispatch([r(0)], cfg, 0.0, 0.009))(False, 0.010)
    assert decide_dispatch([r(0)], cfg, 0.0, 0.010).now is True                   # waited max_wait
    assert decide_dispatch([r(0, 0.020)], cfg, 0.015, 0.005).now is True         # slack 15 ms <= expected 15 ms
    assert decide_dispatch([r(0, 0.020)], cfg, 0.005, 0.005).wake_at_s == pytest.approx(0.010)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 5), st.one_of(st.none(), st.floats(0.0005, 0.05))),
        st.tuples(st.just("advance"), st.floats(0.0, 0.03), st.none()),
        st.tuples(st.just("cancel"), st.integers(0, 50), st.none()),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, max_batch=st.integers(1, 8), wait_ms=st.floats(0.0, 20.0), max_queue=st.integers(1, 30))
def test_every_request_is_answered_exactly_once_in_order_and_batches_respect_the_limit(ops, max_batch, wait_ms,
                                                                                     max_queue):
    batcher, clock, batches = make(max_batch, wait_ms, max_queue)
    submitted, rejected = [], 0
    for kind, a, b in ops:
        if kind == "submit":
            for _ in range(a):
                deadline = None if b is None else clock.now + b
                try:
                    submitted.append(batcher.submit(len(submitted) + rejected, deadline))
                except QueueFull:
                    rejected += 1
                    assert batcher.queue_length() == max_queue
                except DeadlineExceeded:  # shed on arrival: the queue ahead takes longer
                    rejected += 1
        elif kind == "advance":
            clock.now += a
        elif submitted:
            submitted[a % len(submitted)].future.cancel()
        drain(batcher, clock, clock.now)
    batcher.close()
    drain(batcher, clock, float("inf"))
    # answered exactly once: every future is done, no result was set twice (Future would raise)
    assert all(r.future.done() for r in submitted)
    ran = [p for batch in batches for p in batch]
    assert len(ran) == len(set(ran))
    assert all(len(batch) <= max_batch for batch in batches)
    assert ran == sorted(ran)  # first in, first out
    for r in submitted:
        if r.future.cancelled():
            assert r.payload not in ran
        elif r.payload in ran:
            assert r.future.result() == ("done", r.payload)
            assert 1 <= r.batch_size <= max_batch
        else:
            with pytest.raises(DeadlineExceeded):
                r.future.result()
            assert r.deadline_s is not None


@settings(max_examples=200, deadline=None)
@given(arrivals=st.lists(st.floats(0.0, 0.01), min_size=1, max_size=40), max_batch=st.integers(1, 8),
       wait_ms=st.floats(0.5, 20.0))
def test_no_batch_leaves_before_it_is_full_or_its_oldest_waited_max_wait(arrivals, max_batch, wait_ms):
    batcher, clock, batches = make(max_batch, wait_ms)
    dispatched_at = []
    original = batcher.execute

    def execute(batch):
        dispatched_at.append((clock.now, len(batch), min(r.enqueued_s for r in batch)))
        original(batch)

    batcher.execute = execute
    for gap in arrivals:
        drain(batcher, clock, clock.now + gap)
        clock.now += gap
        batcher.submit(object())
        drain(batcher, clock, clock.now)
    drain(batcher, clock, float("inf"))
    for at, size, oldest in dispatched_at:
        assert size == max_batch or at >= oldest + wait_ms / 1000.0 - 1e-12


def test_slack_aware_dispatch_leaves_early_for_a_deadline():
    batcher, clock, batches = make(max_batch=8, wait_ms=100.0)
    batcher.estimate.observe(1, 0.004)  # a batch of one takes 4 ms
    batcher.submit("urgent", deadline_s=0.010)
    batch, wake = batcher.step()
    assert batch is None and wake == pytest.approx(0.006)  # 10 ms deadline - 4 ms of work
    clock.now = 0.006
    batch, _ = batcher.step()
    assert [r.payload for r in batch] == ["urgent"]


def learn(batcher, size, seconds):
    """The batcher has run batches of ``size`` taking ``seconds`` (after a slow cold one), just now."""
    batcher.estimate.observe(size, 10 * seconds)  # the first run of a size is a cold start: not counted
    batcher.estimate.observe(size, seconds)
    batcher._last_run_s = batcher.clock()


def test_a_request_that_cannot_make_its_deadline_is_shed_on_arrival_not_at_the_front():
    batcher, clock, batches = make(max_batch=2, wait_ms=100.0)
    learn(batcher, 1, 0.004)
    learn(batcher, 2, 0.006)
    for i in range(4):
        batcher.submit(i)  # no deadline: two full batches ahead, 12 ms at the least
    with pytest.raises(DeadlineExceeded):
        batcher.submit("late", deadline_s=0.015)  # 6 + 6 + 4 = 16 ms > 15 ms
    ok = batcher.submit("in time", deadline_s=0.016)  # exactly makes it: kept
    assert batcher.queue_length() == 5 and not ok.future.done()


def test_a_queued_request_is_shed_as_soon_as_the_queue_shows_it_cannot_make_it():
    batcher, clock, batches = make(max_batch=1, wait_ms=0.0)
    learn(batcher, 1, 0.001)
    first = batcher.submit("a")
    middle = batcher.submit("b", deadline_s=0.0025)   # 1 ms ahead + its own 1 ms: fits now
    last = batcher.submit("c")
    clock.now = 0.002  # the queue has not moved, but time has: 2 + 1 + 1 > 2.5 ms
    batch, _ = batcher.step()
    assert [r.payload for r in batch] == ["a"]
    with pytest.raises(DeadlineExceeded):
        middle.future.result(timeout=0)
    assert batcher.queue_length() == 1 and not last.future.done() and not first.future.done()


def test_the_lower_bound_never_exceeds_what_a_batch_took():
    estimate = ExecEstimate()
    assert estimate.lower_bound_s(8) == 0.0
    estimate.observe(2, 0.500)  # cold: not counted
    assert estimate.lower_bound_s(2) == 0.0
    for seconds in (0.012, 0.010, 0.011):
        estimate.observe(2, seconds)
    estimate.observe(8, 0.9)
    estimate.observe(8, 0.008)  # a larger batch seen faster (noise): its own time counts
    assert estimate.lower_bound_s(1) == 0.0
    assert estimate.lower_bound_s(4) == 0.010  # the fastest run, not the average
    assert estimate.lower_bound_s(16) == 0.008


def test_a_worker_that_would_shed_everything_still_runs_a_probe_now_and_then():
    batcher, clock, batches = make(max_batch=1, wait_ms=0.0)
    learn(batcher, 1, 0.050)  # once slow: every 20 ms deadline looks hopeless
    with pytest.raises(DeadlineExceeded):
        batcher.submit("shed", deadline_s=clock.now + 0.020)
    clock.now += 1.0  # no batch for a second: the next request runs and teaches the batcher
    probe = batcher.submit("probe", deadline_s=clock.now + 0.020)
    drain(batcher, clock, clock.now + 0.01)
    assert probe.future.result(timeout=0) == ("done", "probe")


def test_per_item_errors_and_a_wrong_result_count():
    def run(payloads):
        return [ValueError(f"bad {p}") if p % 2 else p * 10 for p in payloads]

    batcher, clock, _ = make(max_batch=4, wait_ms=0.0, run=run)
    reqs = [batcher.submit(i) for i in range(4)]
    drain(batcher, clock, 1.0)
    assert [r.future.result() for r in reqs if r.payload % 2 == 0] == [0, 20]
    with pytest.raises(ValueError, match="bad 1"):
        reqs[1].future.result()

    batcher, clock, _ = make(max_batch=3, wait_ms=0.0, run=lambda payloads: payloads[:-1])
    reqs = [batcher.submit(i) for i in range(3)]
    drain(batcher, clock, 1.0)
    for r in reqs:
        with pytest.raises(BatchSizeMismatch, match="2 results for a batch of 3"):
            r.future.result()


def test_closing_refuses_new_requests_and_flushes_partial_batches():
    batcher, clock, batches = make(max_batch=8, wait_ms=1000.0)
    first = batcher.submit("a")
    assert batcher.step()[0] is None  # would wait for the batch to fill
    batcher.close()
    with pytest.raises(Closed):
        batcher.submit("b")
    batch, _ = batcher.step()
    batcher.execute(batch)
    assert first.future.result() == ("done", "a")


def test_a_live_config_change_applies_to_the_next_batch():
    batcher, clock, batches = make(max_batch=8, wait_ms=0.0)
    batcher.config.set(BatchConfig(2, 0.0))
    for i in range(5):
        batcher.submit(i)
    drain(batcher, clock, 1.0)
    assert [len(b) for b in batches] == [2, 2, 1]


def test_cancelled_requests_are_dropped_before_their_batch_runs():
    batcher, clock, batches = make(max_batch=4, wait_ms=0.0)
    batcher.submit("keep")
    drop = batcher.submit("drop")
    drop.future.cancel()
    drain(batcher, clock, 1.0)
    assert batches == [["keep"]]
    with pytest.raises(CancelledError):
        drop.future.result()


def test_exec_estimate():
    e = ExecEstimate(weight=0.5)
    assert e.expected_s(4) == 0.0
    e.observe(2, 0.010)
    assert e.expected_s(2) == 0.010
    assert e.expected_s(4) == pytest.approx(0.020)  # scaled up from the nearest smaller size
    e.observe(2, 0.020)
    assert e.expected_s(2) == pytest.approx(0.015)


def test_a_dead_batching_thread_fails_every_request_and_refuses_new_ones():
    """A bug in the loop (here: the on_batch hook raises) must not leave
    requests waiting forever: the queued ones fail with Broken, new ones
    are refused, and the owner is told."""
    import threading

    from esg_plugin.runtime.batcher import Broken

    told = threading.Event()
    first_ran = threading.Event()
    release = threading.Event()

    def run_batch(payloads):
        first_ran.set()
        release.wait(30)
        return payloads

    def on_batch(batch, elapsed):
        raise RuntimeError("a bug after the batch")

    b = Batcher(run_batch, LiveConfig(BatchConfig(1, 0.0)), 100, __import__("time").monotonic,
                on_batch=on_batch, on_failure=lambda err: told.set())
    b.start()
    running = b.submit("a")
    assert first_ran.wait(30)
    queued = b.submit("b")  # waits behind the running batch
    release.set()
    assert told.wait(30)
    assert running.future.result(timeout=30) == "a"  # it ran: its answer stands
    with pytest.raises(Broken):
        queued.future.result(timeout=30)
    with pytest.raises(Broken):
        b.submit("c")
    assert isinstance(b.failure, RuntimeError)


def test_the_downstream_planned_for_a_request_makes_its_batch_leave_earlier():
    """Slack-aware dispatch counts what the plan expects after this stage:
    a lone request due at 100 ms by its deadline leaves at 70 when 30 ms
    are planned downstream (10 of them its own execution)."""
    cfg = BatchConfig(4, 1000.0)
    alone = Request(None, 0.0, 0.100)
    planned = Request(None, 0.0, 0.100, 0.030)
    assert decide_dispatch([alone], cfg, 0.010, 0.0).wake_at_s == pytest.approx(0.090)
    assert decide_dispatch([planned], cfg, 0.010, 0.0).wake_at_s == pytest.approx(0.060)


def test_a_stage_behind_its_plan_serves_the_newest_first_and_in_order_again_once_caught_up():
    """Adaptive LIFO: while the oldest request, run now, would miss by the
    downstream planned for it, a batch takes the newest requests (the most
    slack); once the oldest is within its plan, the oldest go first again.
    Without a downstream figure, always the oldest first."""
    b, clock, batches = make(max_batch=2, wait_ms=0.0)
    b.estimate.observe(1, 0.001)
    b.estimate.observe(2, 0.001)
    for i, deadline in enumerate((0.050, 0.200, 0.300, 0.400)):
        b.submit(i, deadline_s=deadline, downstream_s=0.060)  # the first is behind: 0 + 1 + 60 ms > 50 ms
    batch, _ = b.step()
    assert [r.payload for r in batch] == [3, 2]
    b.execute(batch)
    batch, _ = b.step()  # the oldest (deadline 50 ms) is still behind: the newest left go first
    assert [r.payload for r in batch] == [1, 0]
    b.execute(batch)
    c, clock, batches = make(max_batch=2, wait_ms=0.0)
    for i, deadline in enumerate((0.050, 0.200, 0.300)):
        c.submit(i, deadline_s=deadline)
    batch, _ = c.step()
    assert [r.payload for r in batch] == [0, 1]
    d, clock, batches = make(max_batch=2, wait_ms=0.0)
    for i, deadline in enumerate((0.100, 0.200, 0.300)):
        d.submit(i, deadline_s=deadline, downstream_s=0.060)  # within plan: 0 + 60 ms < 100 ms
    batch, _ = d.step()
    assert [r.payload for r in batch] == [0, 1]
