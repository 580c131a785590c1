"""Leader election: one scaler acts at a time, through a Kubernetes Lease.

Two scalers run at once during the scaler's own rolling update (a
Deployment's default strategy starts the new pod before it stops the old
one), or as the gateway's sidecar beside each of several gateway replicas
— each would plan from what it sees and write the functions' replicas,
batch settings and shares: two controllers fighting over the same objects.
As Kubernetes' own controllers do (client-go's ``leaderelection``), a
scaler that talks to the Kubernetes API acts only while it holds the Lease
(``coordination.k8s.io/v1``) named ``lease_name`` in the functions'
namespace. The holder renews it at every iteration; another takes it over
once the record has not changed for the lease's duration by its own clock,
counted from when it last saw the record change (the holder's timestamps
are never compared with this host's clock); a write carries the
``resourceVersion`` it read, so that two candidates cannot both take it (the
second gets 409). A holder whose renewals fail stops acting once
``RENEW_DEADLINE`` of the duration has passed since its last renewal — before
another may take over. On a clean stop the holder gives the lease up (no
holder), so that the next takes over at its next iteration.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Optional

from ...jsontext import loads_json
from .base import ApiCalls
from .errors import ApiError, Conflict, NotFound

log = logging.getLogger(__name__)

LEARNED = "esg.io/learned"
"""The Lease's annotation that carries what the holder's law learned
(``ControlLaw.learned``, JSON), for the scaler that holds it next."""
LEARNED_MAX_CHARS = 65536
"""A longer record is not read."""
RENEW_DEADLINE = 2.0 / 3.0
"""A holder that could not renew for this part of the lease's duration stops
acting (client-go's defaults: 10 s of 15)."""


def identity() -> str:
    """This process's name as a candidate: the host's (a pod's name, in
    Kubernetes) and a random part, so that two processes on one host differ."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def micro_time(moment: datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339, microseconds, UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """This scaler's hold on the Lease: :meth:`hold` once an iteration,
    :meth:`release` on a clean stop. ``clock``: the scaler's (monotonic)
    clock, which measures how long a record went unchanged; ``wall``: the
    time written into the record, for people reading it."""

    def __init__(self, api_client, calls: ApiCalls, namespace: str, name: str, duration_s: float,
                 candidate: Optional[str] = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        from kubernetes import client

        self.coordination = client.CoordinationV1Api(api_client)
        self.calls, self.namespace, self.name, self.duration_s = calls, namespace, name, duration_s
        self.identity = candidate or identity()
        self.clock, self.wall = clock, wall
        self.holder: Optional[str] = None
        """Who holds the lease, as last read (None: nobody, or not read yet)."""
        self._seen: Optional[tuple] = None
        """The record as last read: (holder, renew time, transitions)."""
        self._seen_at: Optional[float] = None
        """When (``clock``) the record last changed, as read."""
        self._renewed_at: Optional[float] = None
        """When (``clock``) this scaler last wrote the lease as its holder."""
        self.failure: Optional[str] = None
        """What the last :meth:`hold` met where the API failed (None where it answered)."""
        self.record: Callable[[], Optional[dict]] = lambda: None
        """What the holder writes into the lease's record at each renewal (``LEARNED``)."""
        self.said: Optional[str] = None
        """The record as last read (``LEARNED``'s text; None where there is none)."""

    def leading(self) -> bool:
        """Is this scaler the holder, by its last renewal?"""
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.duration_s * RENEW_DEADLINE

    def hold(self) -> bool:
        """Renew the lease, or take it where it is free or expired: whether
        this scaler acts this iteration. An API failure keeps a holder
        acting until its renew deadline, and a candidate waiting."""
        now = self.clock()
        self.failure = None
        try:
            lease = self.calls(self.coordination.read_namespaced_lease, self.name, self.namespace)
        except NotFound:
            self.said = None  # no lease, no record
            return self._write(None, now)
        except ApiError as err:
            self.failure = f"lease {self.namespace}/{self.name} not read: {err}"
            log.warning("%s", self.failure)
            return self.leading()
        self.said = ((lease.metadata.annotations or {}) if lease.metadata else {}).get(LEARNED)
        spec = lease.spec
        holder = spec.holder_identity or None
        record = (holder, spec.renew_time, spec.lease_transitions)
        if record != self._seen:
            self._seen, self._seen_at = record, now
        self.holder = holder
        if holder is not None and holder != self.identity and now - self._seen_at < self.duration_s:
            self._renewed_at = None  # another holds it, and renews it
            return False
        return self._write(lease, now)

    def _write(self, lease, now: float) -> bool:
        """Create the lease (``lease`` None), or write it as its holder with
        the ``resourceVersion`` read; False where another wrote first."""
        stamp = micro_time(self.wall())
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": math.ceil(self.duration_s),
                "renewTime": stamp}
        record = self.record()
        annotations = {} if record is None else {LEARNED: json.dumps(record, separators=(",", ":"))}
        try:
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace, "annotations": annotations},
                        "spec": {**spec, "acquireTime": stamp, "leaseTransitions": 0}}
                self.calls(self.coordination.create_namespaced_lease, self.namespace, body, attempts=1)
            else:
                if lease.spec.holder_identity != self.identity:  # taken over: a transition
                    spec.update(acquireTime=stamp, leaseTransitions=(lease.spec.lease_transitions or 0) + 1)
                body = {"metadata": {"resourceVersion": lease.metadata.resource_version}, "spec": spec}
                if annotations and lease.spec.holder_identity == self.identity:  # a taker keeps the last record
                    body["metadata"]["annotations"] = annotations
                self.calls(self.coordination.patch_namespaced_lease, self.name, self.namespace, body, attempts=1)
        except Conflict:  # another candidate wrote it since it was read (or created it first)
            self._renewed_at = None
            return False
        except ApiError as err:
            self.failure = f"lease {self.namespace}/{self.name} not written: {err}"
            log.warning("%s", self.failure)
            return self.leading()
        if not self.leading():
            log.info("leading: lease %s/%s held by %s", self.namespace, self.name, self.identity)
        self._renewed_at, self.holder = now, self.identity
        return True

    def learned_record(self) -> Optional[object]:
        """The record last read, parsed (None where there is none, or it is
        too long or not JSON: said in the log); what it says is checked by
        the law (``ControlLaw.resume``)."""
        if self.said is None:
            return None
        if len(self.said) > LEARNED_MAX_CHARS:
            log.warning("lease %s/%s: a record of %d characters not read", self.namespace, self.name, len(self.said))
            return None
        try:
            return loads_json(self.said)
        except ValueError as err:
            log.warning("lease %s/%s: its record is not JSON (%s): not read", self.namespace, self.name, err)
            return None

    def release(self) -> None:
        """Give the lease up (a clean stop), where this scaler holds it: the
        record says no holder, and the next candidate takes it at once."""
        if not self.leading():
            return
        self.calls.new_iteration()  # asked afresh: the last iteration's unanswered call is no reason not to
        try:
            lease = self.calls(self.coordination.read_namespaced_lease, self.name, self.namespace, attempts=1)
            if lease.spec.holder_identity == self.identity:
                body = {"metadata": {"resourceVersion": lease.metadata.resource_version},
                        "spec": {"holderIdentity": None, "renewTime": micro_time(self.wall())}}
                self.calls(self.coordination.patch_namespaced_lease, self.name, self.namespace, body, attempts=1)
        except ApiError as err:
            log.warning("lease %s/%s not released: %s", self.namespace, self.name, err)
        self._renewed_at = None
