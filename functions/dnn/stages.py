"""The stages of the three workflows. Each stage parses one event (raising
BadInput for a 400), runs a whole batch in one forward pass, and returns
JSON its next stage accepts.

image:   preprocess -> espcn -> resnet50
traffic: ssd-mobilenetv2 -> {resnet18 (vehicle crops), resnet18 (person crops)} -> aggregator
text:    langid-cnn -> translator -> bert-mini

A stage with several predecessors (the aggregator) receives
``{"inputs": {"<stage>": <that stage's output>, ...}}``.
"""

from __future__ import annotations

import base64
import os
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F

from . import text as T
from . import vision as V
from .common import (
    BadInput, content_type, decode_image, decode_tensor, encode_tensor, init_seed, parse_json, seeded, to_device,
)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _image_input(event) -> torch.Tensor:
    """Raw image bytes (Content-Type image/*), {"image_b64": encoded image},
    or {"image": tensor}: a 3 x H x W float tensor."""
    if content_type(event).startswith("image/"):
        return decode_image(event.body)
    doc = parse_json(event)
    if not isinstance(doc, dict):
        raise BadInput("expected a JSON object with 'image' (a tensor) or 'image_b64' (an encoded image)")
    if "image" in doc:
        image = decode_tensor(doc["image"], "image")
    elif "image_b64" in doc:
        try:
            raw = base64.b64decode(doc["image_b64"], validate=True)
        except (ValueError, TypeError):
            raise BadInput("image_b64 is not valid base64") from None
        image = decode_image(raw)
    else:
        raise BadInput("expected 'image' (a tensor) or 'image_b64' (an encoded image)")
    if image.dim() != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 8:
        raise BadInput(f"the image must be 3 x H x W with H, W >= 8, got {list(image.shape)}")
    return image


def _text_input(event, max_chars: int = 256) -> tuple[str, dict]:
    if content_type(event).startswith("text/"):
        try:
            return event.body.decode("utf-8"), {}
        except UnicodeDecodeError:
            raise BadInput("the text is not UTF-8") from None
    doc = parse_json(event)
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise BadInput("expected a JSON object with 'text' (a string)")
    if not doc["text"].strip():
        raise BadInput("'text' is empty")
    return doc["text"][:max_chars], doc


def _by_shape(tensors: list[torch.Tensor]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[tuple(t.shape)].append(i)
    return groups


def _run_grouped(model, tensors: list[torch.Tensor]) -> list[Any]:
    """One forward pass per distinct input shape (one for a uniform batch)."""
    outputs: list[Any] = [None] * len(tensors)
    with torch.inference_mode():
        for _, indices in _by_shape(tensors).items():
            result = model(to_device(torch.stack([tensors[i] for i in indices]))).cpu()
            for k, i in enumerate(indices):
                outputs[i] = result[k]
    return outputs


def _rng_image(seed: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=g)


class Preprocess:
    """Resize to ESG_IMAGE_SIZE (default 56) square and scale to [0, 1]."""

    name = "preprocess"

    def __init__(self):
        self.size = _env_int("ESG_IMAGE_SIZE", 56)

    def parse(self, event):
        return _image_input(event)

    def run(self, images):
        return [{"image": encode_tensor(t)} for t in self.run_tensors(images)]

    def run_batch(self, images):
        """[N, 3, H, W] resized to [N, 3, size, size] in one call (the Open Inference Protocol's path)."""
        resized = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return resized.clamp(0, 1)

    def run_tensors(self, images):
        """The resized images as tensors, one call per image (their sizes may differ)."""
        out = []
        for image in images:  # sizes differ before resizing; resizing is cheap
            resized = F.interpolate(image.unsqueeze(0), size=(self.size, self.size), mode="bilinear",
                                    align_corners=False)[0]
            out.append(resized.clamp(0, 1))
        return out

    def sample(self, i):
        return {"image": encode_tensor(_rng_image(i, 96))}


class SuperResolution:
    name = "espcn"

    def __init__(self):
        init_seed(self.name)
        self.model = seeded(self.name, V.ESPCN(scale=_env_int("ESG_SR_SCALE", 2)))

    def parse(self, event):
        return _image_input(event)

    def run(self, images):
        return [{"image": encode_tensor(t)} for t in self.run_tensors(images)]

    def run_tensors(self, images):
        """The upscaled images as tensors."""
        return _run_grouped(self.model, images)

    def run_batch(self, images):
        """[N, 3, H, W] upscaled in one forward pass (the Open Inference Protocol's path)."""
        with torch.inference_mode():
            return self.model(to_device(images)).cpu()

    def sample(self, i):
        return {"image": encode_tensor(_rng_image(i, _env_int("ESG_IMAGE_SIZE", 56)))}


class Classifier:
    """ResNet on one image ({"image": ...}) or, with ESG_CROP_CLASS, on every
    crop of that class in a detector's output ({"crops": {...}})."""

    def __init__(self, name: str, factory):
        self.name = name
        init_seed(name)
        self.model = seeded(name, factory(_env_int("ESG_NUM_CLASSES", 1000)))
        self.crop_class = os.environ.get("ESG_CROP_CLASS") or None

    def parse(self, event):
        if self.crop_class is None:
            return [_image_input(event)]
        doc = parse_json(event)
        crops = doc.get("crops") if isinstance(doc, dict) else None
        if not isinstance(crops, dict):
            raise BadInput("expected a detector's output with 'crops'")
        return [decode_tensor(c, f"crops.{self.crop_class}") for c in crops.get(self.crop_class, [])]

    def top5(self, images: torch.Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """[N, 3, H, W] in one forward pass: each image's five likeliest
        classes and their probabilities, rounded to 6 decimals (as answered).
        The JSON path and the Open Inference Protocol's both rank with this."""
        with torch.inference_mode():
            probs = self.model(to_device(images)).softmax(-1).cpu()
        top = torch.topk(probs, 5, dim=-1)
        return top.indices.tolist(), [[round(v, 6) for v in row] for row in top.values.tolist()]

    def run(self, items):
        flat = [t for crops in items for t in crops]
        ranked: list[Any] = [None] * len(flat)
        for _, indices in _by_shape(flat).items():
            classes, scores = self.top5(torch.stack([flat[i] for i in indices]))
            for k, i in enumerate(indices):
                ranked[i] = (classes[k], scores[k])
        out, k = [], 0
        for crops in items:
            labels = [{"label": classes[0], "score": scores[0], "top5": [list(pair) for pair in zip(classes, scores)]}
                      for classes, scores in ranked[k: k + len(crops)]]
            k += len(crops)
            if self.crop_class is None:
                out.append(labels[0])
            else:
                out.append({"class": self.crop_class, "labels": labels})
        return out

    def sample(self, i):
        if self.crop_class is None:
            return {"image": encode_tensor(_rng_image(i, 112))}
        return {"crops": {self.crop_class: [encode_tensor(_rng_image(i * 7 + j, 64)) for j in range(2)]}}


class Detector:
    """SSD-style head on MobileNetV2. Keeps the ESG_DETECTIONS_PER_CLASS
    (default 2) best boxes of each class and crops them to 64 x 64."""

    name = "ssd-mobilenetv2"
    classes = ["vehicle", "person"]

    def __init__(self):
        init_seed(self.name)
        self.model = seeded(self.name, V.SSDLite(num_classes=len(self.classes)))
        self.size = _env_int("ESG_DETECT_SIZE", 128)
        self.per_class = _env_int("ESG_DETECTIONS_PER_CLASS", 2)

    def parse(self, event):
        image = _image_input(event)
        return F.interpolate(image.unsqueeze(0), size=(self.size, self.size), mode="bilinear",
                             align_corners=False)[0]

    def run(self, images):
        with torch.inference_mode():
            scores, boxes = (t.cpu() for t in self.model(to_device(torch.stack(images))))
        out = []
        for image, score, box in zip(images, scores, boxes):
            detections, crops = [], {}
            for c, cls in enumerate(self.classes):
                best = torch.topk(score[:, c + 1], self.per_class)
                crops[cls] = []
                for value, index in zip(best.values, best.indices):
                    x0, y0, x1, y1 = (box[index] * self.size).tolist()
                    x0, y0 = int(min(x0, self.size - 2)), int(min(y0, self.size - 2))
                    x1, y1 = max(int(x1), x0 + 2), max(int(y1), y0 + 2)
                    crop = F.interpolate(image[:, y0:y1, x0:x1].unsqueeze(0), size=(64, 64), mode="bilinear",
                                         align_corners=False)[0]
                    crops[cls].append(encode_tensor(crop))
                    detections.append({"class": cls, "score": round(float(value), 6),
                                       "box": [round(v / self.size, 6) for v in (x0, y0, x1, y1)]})
            out.append({"detections": detections, "crops": crops})
        return out

    def sample(self, i):
        return {"image": encode_tensor(_rng_image(i, self.size))}


class Aggregator:
    """Joins the classifiers: counts and labels per class."""

    name = "aggregator"

    def parse(self, event):
        doc = parse_json(event)
        inputs = doc.get("inputs") if isinstance(doc, dict) else None
        if not isinstance(inputs, dict) or not inputs:
            raise BadInput("expected {'inputs': {stage: output, ...}} from the classifiers")
        for stage, value in inputs.items():
            if not isinstance(value, dict) or not isinstance(value.get("labels"), list):
                raise BadInput(f"input {stage!r} is not a classifier's output")
        return inputs

    def run(self, items):
        out = []
        for inputs in items:
            counts = defaultdict(int)
            labels = defaultdict(list)
            for value in inputs.values():
                cls = value.get("class", "object")
                counts[cls] += len(value["labels"])
                labels[cls].extend(entry["label"] for entry in value["labels"])
            out.append({"counts": dict(counts), "labels": dict(labels)})
        return out

    def sample(self, i):
        entry = {"label": i, "score": 0.5, "top5": []}
        return {"inputs": {"vehicle": {"class": "vehicle", "labels": [entry]},
                           "person": {"class": "person", "labels": [entry, entry]}}}


def _text_probabilities(model, texts: list[str]) -> torch.Tensor:
    """One padded, masked forward pass of a text classifier over a batch."""
    ids, padded = T.pad([T.encode(t, 256) for t in texts])
    with torch.inference_mode():
        return model(to_device(ids), to_device(padded)).cpu()


class LanguageId:
    name = "langid-cnn"

    def __init__(self):
        init_seed(self.name)
        self.model = seeded(self.name, T.LangIdCNN())

    def parse(self, event):
        return _text_input(event)[0]

    def run(self, texts):
        probs = _text_probabilities(self.model, texts)
        return [{"text": t, "language": T.LANGUAGES[int(p.argmax())], "confidence": round(float(p.max()), 6)}
                for t, p in zip(texts, probs)]

    def sample(self, i):
        return {"text": f"sample sentence number {i} for the language identifier"}


class Translator:
    name = "translator"

    def __init__(self):
        init_seed(self.name)
        self.model = seeded(self.name, T.Translator())
        self.max_new = _env_int("ESG_MAX_NEW_TOKENS", 24)

    def parse(self, event):
        text, doc = _text_input(event, 128)
        return text, doc.get("language", "unknown")

    def run(self, items):
        ids, padded = T.pad([T.encode(text, 128) for text, _ in items])
        outputs = self.model.translate(to_device(ids), to_device(padded), self.max_new)
        return [{"text": T.decode(seq), "source_language": lang, "target_language": "en"}
                for seq, (_, lang) in zip(outputs, items)]

    def sample(self, i):
        return {"text": f"ein Beispielsatz Nummer {i}", "language": "de"}


class Sentiment:
    name = "bert-mini"

    def __init__(self):
        init_seed(self.name)
        self.model = seeded(self.name, T.BertMini())

    def parse(self, event):
        return _text_input(event)[0]

    def run(self, texts):
        probs = _text_probabilities(self.model, texts)
        return [{"sentiment": T.SENTIMENTS[int(p.argmax())],
                 "scores": {label: round(float(v), 6) for label, v in zip(T.SENTIMENTS, p)}} for p in probs]

    def sample(self, i):
        return {"text": f"the service was quick and the answer number {i} was right"}


STAGES = {
    "preprocess": Preprocess,
    "espcn": SuperResolution,
    "resnet50": lambda: Classifier("resnet50", V.resnet50),
    "resnet18": lambda: Classifier("resnet18", V.resnet18),
    "ssd-mobilenetv2": Detector,
    "aggregator": Aggregator,
    "langid-cnn": LanguageId,
    "translator": Translator,
    "bert-mini": Sentiment,
}
