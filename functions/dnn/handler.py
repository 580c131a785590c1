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

import torch

from .common import BadInput
from .stages import STAGES

#: What `esg profile` can measure here (a literal list: the profiler reads it without importing torch).
PROFILE_NAMES = ["aggregator", "bert-mini", "espcn", "langid-cnn", "preprocess", "resnet18", "resnet50",
                 "ssd-mobilenetv2", "translator"]
assert PROFILE_NAMES == sorted(STAGES)

NAME = os.environ.get("ESG_FUNCTION", "")
if NAME not in STAGES:
    raise RuntimeError(f"set ESG_FUNCTION to one of: {', '.join(PROFILE_NAMES)} (got {NAME!r})")
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


def _image(tensor):
    if tensor.datatype != "FP32" or len(tensor.shape) not in (3, 4) or tensor.shape[-3] != 3 \
            or (len(tensor.shape) == 4 and tensor.shape[0] != 1):
        raise BadInput(f"input 'image' must be FP32 [3, H, W] (or [1, 3, H, W]), got {tensor.datatype} "
                       f"{tensor.shape}")
    return torch.frombuffer(bytearray(tensor.data), dtype=torch.float32).reshape(tensor.shape[-3:])


def _to_tensors(output, make):
    """A stage's JSON output as named tensors (the same values, bit for bit)."""
    import base64

    if "image" in output:
        image = output["image"]
        return {"image": make("image", "FP32", list(image["shape"]), base64.b64decode(image["b64"]))}
    import struct

    return {"label": make("label", "INT64", [1], struct.pack("<q", output["label"])),
            "top5_index": make("top5_index", "INT64", [5], struct.pack("<5q", *[i for i, _ in output["top5"]])),
            "top5_score": make("top5_score", "FP32", [5], struct.pack("<5f", *[v for _, v in output["top5"]]))}


def infer(requests, context):
    """One batch of V2 infer requests: each request's 'image' tensor through
    the stage, its output as tensors (see MODEL)."""
    if MODEL is None:
        raise BadInput(f"stage {NAME} takes no tensors: call it with JSON")
    results = [None] * len(requests)
    parsed = []
    for i, request in enumerate(requests):
        try:
            if "image" not in request.inputs:
                raise BadInput("the request needs an input named 'image'")
            image = _image(request.inputs["image"])
            parsed.append((i, [image] if NAME.startswith("resnet") else image))
        except BadInput as err:
            results[i] = err
    if parsed:
        make = type(next(iter(requests[parsed[0][0]].inputs.values())))  # the runtime's Tensor
        items = [item for _, item in parsed]
        if hasattr(STAGE, "run_tensors"):  # image out: the tensor's bytes, no base64 on the way
            for (i, _), t in zip(parsed, STAGE.run_tensors(items)):
                t = t.detach().to("cpu", dtype=torch.float32).contiguous()
                results[i] = {"image": make("image", "FP32", list(t.shape), t.numpy().astype("<f4").tobytes())}
        else:
            for (i, _), output in zip(parsed, STAGE.run(items)):
                results[i] = _to_tensors(output, make)
    return results
