"""Each GPU's free share, as HAMi's scheduler records it: the control law's
``Observation.gpu_free_pct`` on a cluster that shares GPUs with HAMi
(``share_mode: hami``).

A device plugin hands out GPUs, but no Kubernetes API says how much of each
one is taken; HAMi keeps that in annotations, and schedules by them:

- each GPU node's ``hami.io/node-nvidia-register``: its devices — a JSON
  list of ``{"id", "count", "devmem", "devcore", "type", "numa",
  "health", ...}``, or (older releases) one ``id,count,devmem,devcore,type,
  numa,health[,index,mode]`` per device, each followed by ``:``;
- each pod HAMi placed, ``hami.io/vgpu-devices-allocated``: per container
  (``;`` after each), per device (``:`` after each)
  ``uuid,type,usedmem,usedcores``.

A GPU's free share is its cores less the cores of the pods allocated on it
— what HAMi's own fit test compares a request's ``nvidia.com/gpucores``
with — as whole percents of the device (a device registered with other
than 100 cores is scaled). Counted: every pod not yet ``Succeeded`` or
``Failed`` (a pod that is terminating still holds its share until it is
gone, as in HAMi's own count); only healthy devices (HAMi places nothing on
the others). Pure: nodes and pods in, a tuple out; a record that cannot be
read raises :class:`~.errors.Unreadable`, and the actuator then says the
room is not known — a room half known is not believed (the law packs
afresh, as without it).
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Mapping, Optional

from .errors import Unreadable

NODE_REGISTER = "hami.io/node-nvidia-register"
POD_ALLOCATED = "hami.io/vgpu-devices-allocated"
DONE_PHASES = ("Succeeded", "Failed")
MAX_CORES = 10_000
"""A device's or an allocation's cores above this are not believed (HAMi
registers 100 per GPU unless its core scaling says more)."""


def _whole(text: object, what: str, low: int = 0) -> int:
    if isinstance(text, bool):
        raise Unreadable(f"{what} is not a whole number: {text!r}")
    if isinstance(text, int):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise Unreadable(f"{what} is not a whole number: {text!r}") from None
    if not low <= value <= MAX_CORES:
        raise Unreadable(f"{what} {value} is outside [{low}, {MAX_CORES}]")
    return value


def node_devices(annotation: str) -> list[tuple[str, int, bool]]:
    """A node's HAMi registration: (device id, its cores, healthy) per device."""
    text = annotation.strip()
    if text.startswith("["):
        try:
            entries = json.loads(text)
        except ValueError as err:
            raise Unreadable(f"{NODE_REGISTER} is not JSON: {err}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise Unreadable(f"{NODE_REGISTER} is not a list of devices")
        devices = []
        for entry in entries:
            uuid = entry.get("id")
            if not isinstance(uuid, str) or not uuid:
                raise Unreadable(f"{NODE_REGISTER}: a device without an id")
            # JSON leaves out a false health (omitempty): absent is unhealthy
            devices.append((uuid, _whole(entry.get("devcore", 0), f"{uuid}'s cores", 1), entry.get("health") is True))
        return devices
    if ":" not in text:
        raise Unreadable(f"{NODE_REGISTER} has no device")
    devices = []
    for segment in text.split(":"):
        if not segment:
            continue
        items = segment.split(",")
        if len(items) not in (7, 9) or not items[0]:
            raise Unreadable(f"{NODE_REGISTER}: {len(items)} fields in a device, not 7 or 9")
        health = items[6].strip().lower()
        if health not in ("true", "false"):
            raise Unreadable(f"{NODE_REGISTER}: health {items[6]!r} is not true or false")
        devices.append((items[0], _whole(items[3], f"{items[0]}'s cores", 1), health == "true"))
    return devices


def pod_allocations(annotation: str) -> list[tuple[str, int]]:
    """A pod's HAMi allocation: (device id, cores used) per device of each container."""
    out = []
    for container in annotation.split(";"):
        for segment in container.split(":"):
            if not segment.strip():
                continue
            items = segment.split(",")
            if len(items) < 4 or not items[0]:
                raise Unreadable(f"{POD_ALLOCATED}: {segment!r} is not uuid,type,memory,cores")
            out.append((items[0], _whole(items[3], f"cores used on {items[0]}")))
    return out


def free_pct(nodes: Iterable[Optional[Mapping[str, str]]],
             pods: Iterable[tuple[Optional[str], Optional[Mapping[str, str]]]]) -> Optional[tuple[int, ...]]:
    """Each healthy GPU's free share in whole percents (rounded down), from
    the nodes' annotations and the pods' (phase, annotations); None where
    no node registers a healthy GPU. Raises :class:`Unreadable` for a
    record that cannot be read (one device twice, too)."""
    cores: dict[str, int] = {}
    healthy: list[str] = []
    for annotations in nodes:
        record = (annotations or {}).get(NODE_REGISTER)
        if record is None:
            continue  # not a HAMi GPU node
        for uuid, total, ok in node_devices(record):
            if uuid in cores:
                raise Unreadable(f"{NODE_REGISTER}: device {uuid} registered twice")
            cores[uuid] = total
            if ok:
                healthy.append(uuid)
    used = dict.fromkeys(cores, 0)
    for phase, annotations in pods:
        record = (annotations or {}).get(POD_ALLOCATED)
        if record is None or phase in DONE_PHASES:
            continue
        for uuid, n in pod_allocations(record):
            if uuid in used:  # a device of a node not listed (gone): nothing to take from
                used[uuid] += n
    if not healthy:
        return None
    return tuple(math.floor(100 * max(0, cores[u] - used[u]) / cores[u] + 1e-9) for u in healthy)
