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
