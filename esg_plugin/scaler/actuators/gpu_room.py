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

HAMi's scheduler places a container on a device only where (its fit
test) the device has a task slot left (``count``), the memory asked, and
the cores asked (``nvidia.com/gpucores``, in percent of a GPU, against the
device's cores less those allocated — a device registered with more than
100 cores, HAMi's core scaling, takes more than one GPU's worth), and, for
a whole GPU (100 cores asked of a 100-core device), no other task on it.
So the share a pod of ours finds room for on a GPU is the least of: its
free cores (at most 100; under 100 while another task runs there); its
free memory over the memory a pod of ours asks per 100% of share
(``gpu_memory_mb``: ``nvidia.com/gpumem`` is that times the share), where
that is known; and 0 once its task slots are taken. Counted: every pod not
yet ``Succeeded`` or ``Failed`` (a pod that is terminating still holds its
share: its container holds the GPU until it exits); only healthy devices (HAMi
places nothing on the others). Pure: nodes and pods in, a tuple out; a
record that cannot be read raises :class:`~.errors.Unreadable`, and the
actuator then says the room is not known — a room half known is not
believed (the law packs afresh, as without it).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple, Optional

from ...jsontext import loads_json
from .errors import Unreadable
from .said import said_number

CORES, MEMORY = "nvidia.com/gpucores", "nvidia.com/gpumem"
"""HAMi's resources: a container's share of a GPU's cores (percent) and its memory (MiB)."""
NODE_REGISTER = "hami.io/node-nvidia-register"
POD_ALLOCATED = "hami.io/vgpu-devices-allocated"
DONE_PHASES = ("Succeeded", "Failed")
MAX_CORES = 10_000
"""A device's or an allocation's cores above this are not believed (HAMi
registers 100 per GPU unless its core scaling says more)."""
MAX_MEMORY_MB = 10_000_000
"""Nor a memory above this (MiB: 10 TiB)."""
MAX_TASKS = 10_000
"""Nor more tasks a device may take."""


class Device(NamedTuple):
    """One GPU as HAMi registers it."""

    uuid: str
    tasks: int
    """How many containers it may take (HAMi's ``count``)."""
    memory_mb: int
    cores: int
    healthy: bool


def resources(share_pct: int, memory_per_gpu_mb: int) -> dict[str, str]:
    """What a pod of ours asks HAMi for at a share: the share's cores, and
    the share of ``memory_per_gpu_mb`` (what :func:`free_pct` counts a share's
    memory at), as a container's limits — and its requests, which must equal
    them for an extended resource."""
    return {CORES: str(share_pct), MEMORY: str(int(memory_per_gpu_mb * share_pct / 100))}


def _device(uuid: object, tasks: object, memory_mb: object, cores: object, healthy: bool) -> Device:
    if not isinstance(uuid, str) or not uuid:
        raise Unreadable(f"{NODE_REGISTER}: a device without an id")
    return Device(uuid, int(said_number(tasks, f"{uuid}'s task count", 1, MAX_TASKS)),
                  int(said_number(memory_mb, f"{uuid}'s memory", 1, MAX_MEMORY_MB)),
                  int(said_number(cores, f"{uuid}'s cores", 1, MAX_CORES)), healthy)


def node_devices(annotation: str) -> list[Device]:
    """A node's HAMi registration, device by device."""
    text = annotation.strip()
    if text.startswith("["):
        try:
            entries = loads_json(text)
        except ValueError as err:
            raise Unreadable(f"{NODE_REGISTER} is not JSON: {err}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise Unreadable(f"{NODE_REGISTER} is not a list of devices")
        # JSON leaves out a false health (omitempty): absent is unhealthy
        return [_device(e.get("id"), e.get("count"), e.get("devmem"), e.get("devcore"), e.get("health") is True)
                for e in entries]
    if ":" not in text:
        raise Unreadable(f"{NODE_REGISTER} has no device")
    devices = []
    for segment in text.split(":"):
        if not segment:
            continue
        items = segment.split(",")
        if len(items) not in (7, 9):
            raise Unreadable(f"{NODE_REGISTER}: {len(items)} fields in a device, not 7 or 9")
        health = items[6].strip().lower()
        if health not in ("true", "false"):
            raise Unreadable(f"{NODE_REGISTER}: health {items[6]!r} is not true or false")
        devices.append(_device(items[0], items[1], items[2], items[3], health == "true"))
    return devices


def pod_allocations(annotation: str) -> list[tuple[str, int, int]]:
    """A pod's HAMi allocation: (device id, memory used in MiB, cores used)
    per device of each container."""
    out = []
    for container in annotation.split(";"):
        for segment in container.split(":"):
            if not segment.strip():
                continue
            items = segment.split(",")
            if len(items) < 4 or not items[0]:
                raise Unreadable(f"{POD_ALLOCATED}: {segment!r} is not uuid,type,memory,cores")
            out.append((items[0], int(said_number(items[2], f"memory used on {items[0]}", 0, MAX_MEMORY_MB)),
                        int(said_number(items[3], f"cores used on {items[0]}", 0, MAX_CORES))))
    return out


def free_pct(nodes: Iterable[Optional[Mapping[str, str]]],
             pods: Iterable[tuple[Optional[str], Optional[Mapping[str, str]]]],
             memory_per_gpu_mb: Optional[int] = None) -> Optional[tuple[int, ...]]:
    """Each healthy GPU's free share in whole percents (memory's rounded down), from
    the nodes' annotations and the pods' (phase, annotations), with
    ``memory_per_gpu_mb`` the memory a pod of ours asks per 100% of share
    (None: memory not counted); None where no node registers a healthy GPU.
    Raises :class:`Unreadable` for a record that cannot be read (one device
    registered twice, too)."""
    devices: dict[str, Device] = {}
    for annotations in nodes:
        record = (annotations or {}).get(NODE_REGISTER)
        if record is None:
            continue  # not a HAMi GPU node
        for device in node_devices(record):
            if device.uuid in devices:
                raise Unreadable(f"{NODE_REGISTER}: device {device.uuid} registered twice")
            devices[device.uuid] = device
    used = {uuid: [0, 0, 0] for uuid in devices}  # tasks, memory, cores
    for phase, annotations in pods:
        record = (annotations or {}).get(POD_ALLOCATED)
        if record is None or phase in DONE_PHASES:
            continue
        for uuid, memory_mb, cores in pod_allocations(record):
            if uuid in used:  # a device of a node not listed (gone): nothing to take from
                taken = used[uuid]
                taken[0], taken[1], taken[2] = taken[0] + 1, taken[1] + memory_mb, taken[2] + cores
    room = []
    for device in devices.values():
        if not device.healthy:
            continue
        tasks, memory_mb, cores = used[device.uuid]
        pct = min(100, device.cores - cores)
        if tasks and device.cores == 100:
            pct = min(pct, 99)  # a whole GPU only where no other task runs (HAMi's exclusive test)
        if memory_per_gpu_mb:
            pct = min(pct, math.floor(100 * (device.memory_mb - memory_mb) / memory_per_gpu_mb + 1e-9))
        room.append(0 if tasks >= device.tasks else max(0, pct))
    return tuple(room) if room else None
