"""functions/dnn: every DNN stage of the example workflows in one esg-python3
function folder; ESG_FUNCTION picks the stage this deployment serves
(stack.yml deploys the folder once per stage). The model is built when the
runtime imports this module — after it has applied ESG_GPU_SHARE.

ESG_FUNCTION: preprocess, espcn, resnet50, resnet18, ssd-mobilenetv2,
aggregator, langid-cnn, translator, bert-mini.
ESG_WEIGHTS_PATH: a state dict, or a folder of <name>.pt (default: seeded
random weights). See stages.py for each stage's input and output.
"""

import json
import os
from collections import defaultdict

import numpy as np
import torch
from esg_runtime import contract as C  # the template's runtime, as in the function's image

from .common import BadInput, decode_tensor
from .stages import STAGES

#: What `esg profile` can measure here (a literal list: the profiler reads it without importing torch).
PROFILE_NAMES = ["aggregator", "bert-mini", "espcn", "langid-cnn", "preprocess", "resnet18", "resnet50",
                 "ssd-mobilenetv2", "translator"]
assert PROFILE_NAMES == sorted(STAGES)

NAME = os.environ.get(C.ENV_FUNCTION, "")
if NAME not in STAGES:
    raise RuntimeError(f"set {C.ENV_FUNCTION} to one of: {', '.join(PROFILE_NAMES)} (got {NAME!r})")
STAGE = STAGES[NAME]()


def handle_batch(events, context):
    results = [None] * len(events)
    parsed = []
    for i, event in enumerate(events):
        try:
            parsed.append((i, STAGE.parse(event)))
        except BadInput as err:
            results[i] = {"statusCode": 400, "body": {"error": str(err)}}
    if parsed:
        outputs = STAGE.run([item for _, item in parsed])
        for (i, _), output in zip(parsed, outputs):
            results[i] = {"statusCode": 200, "body": output}
    return results


class _SampleEvent:
    """A stand-in for the runtime's event, for the warm-up."""

    def __init__(self, body):
        self.body, self.headers, self.method, self.query, self.path = body, {"Content-Type": "application/json"}, \
            "POST", {}, "/"


def warmup(batch_sizes, context):
    """Run one batch of samples of each size before the function serves
    (the runtime calls this at start): the first real requests then meet a
    warm model."""
    for size in batch_sizes:
        handle_batch([_SampleEvent(body) for body in sample_bodies(size)], context)


def sample_bodies(count):
    """Valid request bodies for this stage, for the profiler."""
    return [json.dumps(STAGE.sample(i)).encode() for i in range(count)]


# --- the Open Inference Protocol (the runtime's v2.py) -----------------------------
IMAGE_IN = {"name": "image", "datatype": "FP32", "shape": [3, -1, -1]}


def _model():
    """This stage's V2 metadata, or None where it takes no tensor in (text,
    detector crops, the aggregator): those stay on the JSON path."""
    if NAME in ("preprocess", "espcn"):
        return {"name": NAME, "inputs": [IMAGE_IN], "outputs": [{"name": "image", "datatype": "FP32",
                                                                  "shape": [3, -1, -1]}]}
    if NAME in ("resnet18", "resnet50") and not os.environ.get("ESG_CROP_CLASS"):
        return {"name": NAME, "inputs": [IMAGE_IN],
                "outputs": [{"name": "label", "datatype": "INT64", "shape": [1]},
                            {"name": "top5_index", "datatype": "INT64", "shape": [5]},
                            {"name": "top5_score", "datatype": "FP32", "shape": [5]}]}
    return None


MODEL = _model()


def _images(tensor):
    """An 'image' input as one [N, 3, H, W] tensor over a copy of its bytes,
    and whether it came as a batch ([N, 3, H, W]) or as one image ([3, H, W])."""
    shape = tensor.shape
    if tensor.datatype != "FP32" or len(shape) not in (3, 4) or shape[-3] != 3 or 0 in shape:
        raise BadInput(f"input 'image' must be FP32 [3, H, W] or [N, 3, H, W], got {tensor.datatype} {shape}")
    x = torch.frombuffer(bytearray(tensor.data), dtype=torch.float32).reshape(shape)
    return (x if len(shape) == 4 else x.unsqueeze(0)), len(shape) == 4


def _fp32_bytes(t):
    """A CPU float32 tensor's values, little-endian and row-major, copied once."""
    return np.ascontiguousarray(t.numpy(), dtype="<f4").tobytes()


def _classes(classes, scores, batched, make):
    """A classifier's ranking (``Classifier.top5``) as tensors: label [N, 1],
    top5_index [N, 5], top5_score [N, 5] for a batch ([1], [5], [5] for one image)."""
    lead = [len(classes)] if batched else []
    return {"label": make("label", "INT64", lead + [1], np.array([c[0] for c in classes], "<i8").tobytes()),
            "top5_index": make("top5_index", "INT64", lead + [5], np.array(classes, "<i8").tobytes()),
            "top5_score": make("top5_score", "FP32", lead + [5], np.array(scores, "<f4").tobytes())}


def sample_infer(count):
    """Valid V2 requests (one binary FP32 image each) for the profiler, or
    None where this stage takes no tensors (the profiler then times the JSON path)."""
    if MODEL is None:
        return None
    from esg_runtime.v2 import InferRequest, Tensor

    images = [decode_tensor(STAGE.sample(i)["image"]) for i in range(count)]
    return [InferRequest(NAME, None, {"image": Tensor("image", "FP32", list(x.shape), _fp32_bytes(x))}) for x in images]


def infer(requests, context):
    """One batch of V2 infer requests: the images of every request's 'image'
    tensor ([3, H, W], or a batch [N, 3, H, W]) through the stage together;
    each request's outputs as tensors (see MODEL), batched as it came."""
    if MODEL is None:
        raise BadInput(f"stage {NAME} takes no tensors: call it with JSON")
    results = [None] * len(requests)
    parsed = []  # (index of the request, its images as [N, 3, H, W], whether it came as a batch)
    for i, request in enumerate(requests):
        try:
            if "image" not in request.inputs:
                raise BadInput("the request needs an input named 'image'")
            images, batched = _images(request.inputs["image"])
            parsed.append((i, images, batched))
        except BadInput as err:
            results[i] = err
    if not parsed:
        return results
    make = type(requests[parsed[0][0]].inputs["image"])  # the runtime's Tensor
    image_out = hasattr(STAGE, "run_batch")  # else a classifier
    by_size = defaultdict(list)  # one forward pass per image size
    for item in parsed:
        by_size[tuple(item[1].shape[1:])].append(item)
    for items in by_size.values():
        # one request's batch runs as it came (no copy); several are joined once
        batch = items[0][1] if len(items) == 1 else torch.cat([images for _, images, _ in items])
        if image_out:  # an image out: the tensor's bytes
            out = STAGE.run_batch(batch).detach().to("cpu", dtype=torch.float32)
        else:  # a classifier: its ranking
            classes, scores = STAGE.top5(batch)
        k = 0
        for i, images, batched in items:
            n = images.shape[0]
            if image_out:
                t = out[k: k + n] if batched else out[k]
                results[i] = {"image": make("image", "FP32", list(t.shape), _fp32_bytes(t))}
            else:
                results[i] = _classes(classes[k: k + n], scores[k: k + n], batched, make)
            k += n
    return results
