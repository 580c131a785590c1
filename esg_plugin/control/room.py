"""Room: what the platform says it found no GPU for, and the law's answer.

Where the platform reports a stage's instances it found no room for
(``Observation.unplaced``: the simulator's instances that fit no GPU, a
Deployment's pods ``Unschedulable``) for longer than its function takes
to start, the decision's reasons say which, how many, at what share and
since when (:meth:`Room.waiting_said`); with ``below_no_room``, while the
workflow misses and that stage's requests wait longer than the plan's
whole time there, the stage is planned below that share for a while
(:meth:`Room.hold`; the holds live in the caller's :class:`WorkflowState`).
``docs/control.md``, point 4. Pure.
"""

from __future__ import annotations

from typing import Optional

from ..model import ProfileSet, Stage, Workflow
from .feedback import stage_waits
from .observation import WorkflowObservation
from .settings import ControlSettings
from .state import ControlState, WorkflowState


class Room:
    """The law's reading of the room the platform found (one per :class:`ControlLaw`)."""

    def __init__(self, settings: ControlSettings, profiles: ProfileSet):
        self.settings = settings
        self.profiles = profiles

    def hold(self, workflow: Workflow, ws: WorkflowState, state: ControlState, obs: WorkflowObservation,
             missing: bool, now_s: float) -> Optional[str]:
        """Why to re-plan now where the workflow misses and the platform has
        found no room for a stage's instances for longer than its function
        takes to start (a rolling update frees the room its new instances
        need within about that), while the requests at that stage waited
        longer than the plan's whole time there (what runs is too little),
        at a share its plans may still take; else None. The holds that ended
        are dropped (``below_no_room``; off: None, whatever the platform says,
        which :meth:`waiting_said` reports)."""
        for holds in (ws.no_room, ws.no_room_tried):
            for stage, (_, until_s) in list(holds.items()):
                if now_s >= until_s:
                    del holds[stage]
        waits = None  # parsed only where a stage waits for room: most ticks none does
        for st in workflow.stages:
            if state.unplaced.get((workflow.name, st.name), 0) <= 0:
                ws.unplaced_since.pop(st.name, None)
                continue
            waits = stage_waits(obs) if waits is None else waits
            since = ws.unplaced_since.setdefault(st.name, [now_s, 0.0, 0.0])
            count, total_ms = waits.get(st.name, (0.0, 0.0))
            since[1] += count
            since[2] += total_ms
        if not self.settings.below_no_room or not missing or ws.plan is None:
            return None
        if ws.no_room:
            return None  # one hold at a time: a plan below one share moves the others
        starved = []
        for st in workflow.stages:
            groups = ws.groups.get(st.name)
            since = ws.unplaced_since.get(st.name)
            planned = ws.plan.stages.get(st.name)
            if not groups or planned is None or self._waited_s(st, ws, now_s) is None or \
                    not since[1] or since[2] / since[1] <= planned.latency_ms:
                continue
            share = max(group.gpu_share for group in groups)
            tried = ws.no_room_tried.get(st.name)
            if (tried is not None and share >= tried[0]) or \
                    not (self.profiles[st.function].runnable_arrays()[1] < share).any():
                continue  # tried below it, or nothing smaller runs
            starved.append((since[2] / since[1] / planned.latency_ms, st.name, share))
        if not starved:
            return None
        _, stage, share = max(starved)  # the stage whose requests waited longest for what it runs
        times = ws.no_room_times.get(stage, 0)
        ws.no_room_new = True
        ws.no_room[stage] = (share, now_s + self.settings.scale_down_delay_s * 2 ** min(times, 3))
        ws.no_room_times[stage] = times + 1
        return f"no room for {stage}'s {share}% instances"

    def waiting_said(self, workflow: Workflow, ws: WorkflowState, state: ControlState, now_s: float) -> str:
        """What the decision's reason adds where the platform has found no
        room for a stage's instances for longer than its function takes to
        start (a Deployment's pods ``Unschedulable``): which, how many, at
        what share, since when — "" where none."""
        said = []
        for st in workflow.stages:
            groups, waited_s = ws.groups.get(st.name), self._waited_s(st, ws, now_s)
            if groups and waited_s is not None:
                waiting = state.unplaced.get((workflow.name, st.name), 0)
                said.append(f"{st.name}'s {waiting} instance(s) at {max(g.gpu_share for g in groups)}% "
                            f"for {waited_s:.0f} s")
        return f"; no room on any GPU: {', '.join(said)}" if said else ""

    def _waited_s(self, stage: Stage, ws: WorkflowState, now_s: float) -> Optional[float]:
        """How long the platform has found no room for some of ``stage``'s
        instances, where that is longer than its function takes to start (a
        rolling update frees the room its new instances need within about
        that); else None."""
        since = ws.unplaced_since.get(stage.name)
        if since is None or now_s - since[0] < self.profiles[stage.function].cold_start_ms / 1000.0:
            return None
        return now_s - since[0]
