"""Each GPU's free share from HAMi's records (scaler/actuators/gpu_room.py):
both forms of a node's registration, a pod's allocation per container and
device, and every record that does not say what its form says refused."""

import json
import random

import pytest

from esg_plugin.errors import ESGError
from esg_plugin.scaler.actuators.errors import Unreadable
from esg_plugin.scaler.actuators.gpu_room import NODE_REGISTER, POD_ALLOCATED, Device, free_pct, node_devices, \
    pod_allocations


def node(record):
    return {NODE_REGISTER: record}


def pod(record, phase="Running"):
    return phase, {POD_ALLOCATED: record}


def test_both_forms_of_a_nodes_registration_are_read():
    colon = "GPU-0,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:GPU-1,4,32768,100,NVIDIA-Tesla V100,0,false:"
    assert node_devices(colon) == [Device("GPU-0", 10, 32768, 100, True), Device("GPU-1", 4, 32768, 100, False)]
    assert node_devices("GPU-2,10,81920,100,NVIDIA-H100,1,True,0,hami-core:") == [Device("GPU-2", 10, 81920, 100, True)]
    # JSON leaves a false health out (omitempty): unhealthy
    listed = json.dumps([{"id": "GPU-3", "count": 10, "devmem": 81920, "devcore": 100, "health": True},
                         {"id": "GPU-4", "count": 10, "devmem": 81920, "devcore": 100}])
    assert node_devices(listed) == [Device("GPU-3", 10, 81920, 100, True), Device("GPU-4", 10, 81920, 100, False)]


def test_a_pods_allocation_is_read_per_container_and_device():
    assert pod_allocations("GPU-0,NVIDIA,3000,30:;") == [("GPU-0", 3000, 30)]
    assert pod_allocations("GPU-0,NVIDIA,3000,30:GPU-1,NVIDIA,3000,0:;;GPU-1,NVIDIA,1,5:;") == \
        [("GPU-0", 3000, 30), ("GPU-1", 3000, 0), ("GPU-1", 1, 5)]
    assert pod_allocations(";") == [] and pod_allocations("") == []


def test_each_healthy_gpus_free_share_is_what_hamis_fit_test_would_admit():
    """The cores left (at most 100; under 100 while another task runs on
    a 100-core device: a whole GPU must be alone); no more than the memory
    left admits at ``memory_per_gpu_mb`` per 100%; none once the device's
    task slots are taken."""
    nodes = [node("GPU-0,10,32768,100,T,0,true:GPU-1,10,32768,100,T,0,true:GPU-2,10,32768,100,T,0,false:"),
             node(json.dumps([{"id": "GPU-3", "count": 10, "devmem": 81920, "devcore": 300, "health": True},
                              {"id": "GPU-4", "count": 10, "devmem": 81920, "devcore": 100, "health": True},
                              {"id": "GPU-5", "count": 2, "devmem": 81920, "devcore": 100, "health": True},
                              {"id": "GPU-6", "count": 10, "devmem": 32768, "devcore": 100, "health": True},
                              {"id": "GPU-7", "count": 10, "devmem": 32768, "devcore": 100, "health": True}])),
             {}, None]
    pods = [pod("GPU-0,N,1,30:;"), pod("GPU-0,N,1,50:;GPU-3,N,1,100:;", phase="Pending"),
            pod("GPU-1,N,1,100:;", phase="Succeeded"), pod("GPU-1,N,1,100:;", phase="Failed"),
            pod("GPU-1,N,1,70:GPU-1,N,1,70:;"),       # over-allocated: none left, not less than none
            pod("GPU-4,N,1,0:;"),                      # no cores asked, but a task: no whole GPU there
            pod("GPU-5,N,1,10:;"), pod("GPU-5,N,1,10:;"),  # both its task slots taken
            pod("GPU-6,N,30000,10:;"),                 # little memory left
            pod("GPU-9,N,1,100:;"),                    # a device no listed node has: nothing to take from
            ("Running", {"other": "x"}), ("Running", None)]
    assert free_pct(nodes, pods) == (20, 0, 100, 99, 0, 90, 100)
    # GPU-6: 2768 MiB left, at 16000 MiB per GPU 17%; GPU-7 untouched
    assert free_pct(nodes, pods, memory_per_gpu_mb=16000) == (20, 0, 100, 99, 0, 17, 100)
    assert free_pct([{}, node("GPU-0,10,1,100,T,0,false:")], pods) is None  # no healthy HAMi GPU: not known


@pytest.mark.parametrize("record", [
    "", "GPU-0", "GPU-0,10,1,100,T,0:", "GPU-0,10,1,100,T,0,true,0:", "GPU-0,10,1,x,T,0,true:",
    "GPU-0,10,1,0,T,0,true:", "GPU-0,10,1,-5,T,0,true:", "GPU-0,10,1,100,T,0,maybe:", ",10,1,100,T,0,true:",
    "GPU-0,10,1,99999,T,0,true:", "GPU-0,0,1,100,T,0,true:", "GPU-0,10,0,100,T,0,true:", "[", "{}", "[1]",
    '[{"count": 10, "devmem": 1, "devcore": 100}]', '[{"id": "G", "count": 10, "devmem": 1, "devcore": true}]',
    '[{"id": "G", "devmem": 1, "devcore": 100}]', '[{"id": "G", "count": 10, "devmem": 1, "devcore": 100}]x',
])
def test_a_registration_that_does_not_say_what_its_form_says_is_refused(record):
    with pytest.raises(Unreadable):
        node_devices(record)


@pytest.mark.parametrize("record", ["GPU-0;", "GPU-0,N,1:;", "GPU-0,N,1,x:;", "GPU-0,N,1,-1:;", ",N,1,5:;",
                                    "GPU-0,N,1,1e9:;", "GPU-0,N,-1,5:;", "GPU-0,N,lots,5:;"])
def test_an_allocation_that_does_not_say_what_its_form_says_is_refused(record):
    with pytest.raises(Unreadable) as caught:
        free_pct([node("GPU-0,10,1,100,T,0,true:")], [pod(record)])
    assert isinstance(caught.value, ESGError) and str(caught.value)


def test_one_device_registered_twice_is_refused():
    with pytest.raises(Unreadable, match="twice"):
        free_pct([node("GPU-0,10,1,100,T,0,true:"), node("GPU-0,10,1,100,T,0,true:")], [])


def test_random_records_give_what_hamis_fit_test_admits_one_per_healthy_gpu():
    """Seeded random clusters: one free share per healthy device, each a
    whole percent in [0, 100], and a share fits there (by HAMi's fit test,
    written out here apart from the code) exactly where it is no more than
    the free share."""
    rng = random.Random(56)
    for _ in range(300):
        devices = [(f"GPU-{i}", rng.choice((2, 4, 10)), rng.choice((16000, 32768, 81920)),
                    rng.choice((100, 100, 100, 200, 400)), rng.random() < 0.85) for i in range(rng.randint(0, 12))]
        nodes, i = [], 0
        while i < len(devices):
            k = rng.randint(1, 4)
            part, i = devices[i:i + k], i + k
            if rng.random() < 0.5:
                nodes.append(node(json.dumps([{"id": d, "count": n, "devmem": m, "devcore": c,
                                               **({"health": True} if ok else {})} for d, n, m, c, ok in part])))
            else:
                nodes.append(node("".join(f"{d},{n},{m},{c},T,0,{str(ok).lower()}:" for d, n, m, c, ok in part)))
        pods, used = [], {d[0]: [0, 0, 0] for d in devices}
        for _ in range(rng.randint(0, 20)):
            phase = rng.choice(("Running", "Running", "Pending", "Succeeded", "Failed"))
            containers = [[(rng.choice(devices)[0] if devices else "GPU-x", rng.choice((0, 4000, 8000)),
                            rng.choice((0, 10, 30, 50, 100))) for _ in range(rng.randint(1, 2))]
                          for _ in range(rng.randint(1, 2))]
            pods.append(pod("".join("".join(f"{d},N,{m},{c}:" for d, m, c in cs) + ";" for cs in containers), phase))
            if phase in ("Running", "Pending"):
                for cs in containers:
                    for d, m, c in cs:
                        taken = used.setdefault(d, [0, 0, 0])
                        taken[0], taken[1], taken[2] = taken[0] + 1, taken[1] + m, taken[2] + c
        per_gpu_mb = rng.choice((None, 16000, 40000))
        room = free_pct(nodes, pods, per_gpu_mb)
        healthy = [d for d in devices if d[4]]
        if not healthy:
            assert room is None
            continue
        assert len(room) == len(healthy)
        for pct, (d, slots, memory, cores, _) in zip(room, healthy):
            assert isinstance(pct, int) and 0 <= pct <= 100
            tasks, memory_used, cores_used = used[d]
            for share in range(10, 101, 10):
                fits = tasks < slots and cores - cores_used >= share \
                    and not (cores == 100 and share == 100 and tasks > 0) \
                    and (per_gpu_mb is None or memory - memory_used >= per_gpu_mb * share / 100)
                assert fits == (share <= pct), (d, share, pct, used[d], devices)
