"""Each GPU's free share from HAMi's records (scaler/actuators/gpu_room.py):
both forms of a node's registration, a pod's allocation per container and
device, and every record that does not say what its form says refused."""

import json
import random

import pytest

from esg_plugin.errors import ESGError
from esg_plugin.scaler.actuators.errors import Unreadable
from esg_plugin.scaler.actuators.gpu_room import NODE_REGISTER, POD_ALLOCATED, free_pct, node_devices, pod_allocations


def node(record):
    return {NODE_REGISTER: record}


def pod(record, phase="Running"):
    return phase, {POD_ALLOCATED: record}


def test_both_forms_of_a_nodes_registration_are_read():
    colon = "GPU-0,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:GPU-1,10,32768,100,NVIDIA-Tesla V100,0,false:"
    assert node_devices(colon) == [("GPU-0", 100, True), ("GPU-1", 100, False)]
    assert node_devices("GPU-2,10,81920,100,NVIDIA-H100,1,True,0,hami-core:") == [("GPU-2", 100, True)]
    # JSON leaves a false health out (omitempty): unhealthy
    listed = json.dumps([{"id": "GPU-3", "count": 10, "devmem": 81920, "devcore": 100, "health": True},
                         {"id": "GPU-4", "count": 10, "devmem": 81920, "devcore": 100}])
    assert node_devices(listed) == [("GPU-3", 100, True), ("GPU-4", 100, False)]


def test_a_pods_allocation_is_read_per_container_and_device():
    assert pod_allocations("GPU-0,NVIDIA,3000,30:;") == [("GPU-0", 30)]
    assert pod_allocations("GPU-0,NVIDIA,3000,30:GPU-1,NVIDIA,3000,0:;;GPU-1,NVIDIA,1,5:;") == \
        [("GPU-0", 30), ("GPU-1", 0), ("GPU-1", 5)]
    assert pod_allocations(";") == [] and pod_allocations("") == []


def test_each_healthy_gpus_free_share_is_its_cores_less_those_allocated():
    nodes = [node("GPU-0,10,1,100,T,0,true:GPU-1,10,1,100,T,0,true:GPU-2,10,1,100,T,0,false:"),
             node(json.dumps([{"id": "GPU-3", "devcore": 300, "health": True}])), {}, None]
    pods = [pod("GPU-0,N,1,30:;"), pod("GPU-0,N,1,50:;GPU-3,N,1,100:;", phase="Pending"),
            pod("GPU-1,N,1,100:;", phase="Succeeded"), pod("GPU-1,N,1,100:;", phase="Failed"),
            pod("GPU-1,N,1,70:GPU-1,N,1,70:;"),       # over-allocated: none left, not less than none
            pod("GPU-9,N,1,100:;"),                    # a device no listed node has: nothing to take from
            ("Running", {"other": "x"}), ("Running", None)]
    assert free_pct(nodes, pods) == (20, 0, 66)  # GPU-3: 200 of 300 cores, rounded down
    assert free_pct([{}, node("GPU-0,10,1,100,T,0,false:")], pods) is None  # no healthy HAMi GPU: not known


@pytest.mark.parametrize("record", [
    "", "GPU-0", "GPU-0,10,1,100,T,0:", "GPU-0,10,1,100,T,0,true,0:", "GPU-0,10,1,x,T,0,true:",
    "GPU-0,10,1,0,T,0,true:", "GPU-0,10,1,-5,T,0,true:", "GPU-0,10,1,100,T,0,maybe:", ",10,1,100,T,0,true:",
    "GPU-0,10,1,99999,T,0,true:", "[", "{}", "[1]", '[{"devcore": 100}]', '[{"id": "G", "devcore": true}]',
    '[{"id": "G", "devcore": "100"}]x',
])
def test_a_registration_that_does_not_say_what_its_form_says_is_refused(record):
    with pytest.raises(Unreadable):
        node_devices(record)


@pytest.mark.parametrize("record", ["GPU-0;", "GPU-0,N,1:;", "GPU-0,N,1,x:;", "GPU-0,N,1,-1:;", ",N,1,5:;",
                                    "GPU-0,N,1,1e9:;"])
def test_an_allocation_that_does_not_say_what_its_form_says_is_refused(record):
    with pytest.raises(Unreadable) as caught:
        free_pct([node("GPU-0,10,1,100,T,0,true:")], [pod(record)])
    assert isinstance(caught.value, ESGError) and str(caught.value)


def test_one_device_registered_twice_is_refused():
    with pytest.raises(Unreadable, match="twice"):
        free_pct([node("GPU-0,10,1,100,T,0,true:"), node("GPU-0,10,1,100,T,0,true:")], [])


def test_random_records_give_whole_percents_one_per_healthy_gpu():
    """Seeded random clusters: each free share a whole percent in [0, 100],
    one per healthy device, and what the pods took, added back, never more
    than the device's cores."""
    rng = random.Random(56)
    for _ in range(300):
        devices = [(f"GPU-{i}", rng.choice((100, 100, 100, 200, 400)), rng.random() < 0.85)
                   for i in range(rng.randint(0, 12))]
        nodes, i = [], 0
        while i < len(devices):
            k = rng.randint(1, 4)
            part, i = devices[i:i + k], i + k
            if rng.random() < 0.5:
                nodes.append(node(json.dumps([{"id": d, "devcore": c, **({"health": True} if ok else {})}
                                              for d, c, ok in part])))
            else:
                nodes.append(node("".join(f"{d},10,1,{c},T,0,{str(ok).lower()}:" for d, c, ok in part)))
        pods, used = [], {d: 0 for d, _, _ in devices}
        for _ in range(rng.randint(0, 20)):
            phase = rng.choice(("Running", "Running", "Pending", "Succeeded", "Failed"))
            containers = [[(rng.choice(devices)[0] if devices else "GPU-x", rng.choice((0, 10, 30, 50, 100)))
                           for _ in range(rng.randint(1, 2))] for _ in range(rng.randint(1, 2))]
            pods.append(pod("".join("".join(f"{d},N,1,{c}:" for d, c in cs) + ";" for cs in containers), phase))
            if phase in ("Running", "Pending"):
                for cs in containers:
                    for d, c in cs:
                        used[d] = used.get(d, 0) + c
        room = free_pct(nodes, pods)
        healthy = [(d, c) for d, c, ok in devices if ok]
        if not healthy:
            assert room is None
            continue
        assert len(room) == len(healthy)
        for pct, (d, cores) in zip(room, healthy):
            assert isinstance(pct, int) and 0 <= pct <= 100
            assert pct == (100 * max(0, cores - used[d])) // cores
