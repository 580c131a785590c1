"""What every stage of functions/dnn shares: input parsing, the tensor wire
format between stages, and weights.

Wire format of a tensor inside JSON: ``{"b64": base64 of the raw bytes,
"dtype": "float32", "shape": [...]}`` (little-endian, C order).
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

import numpy as np
import torch


#: CUDA when the process has a GPU (ESG_DEVICE overrides), else the CPU.
DEVICE = torch.device(os.environ.get("ESG_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def to_device(batch: torch.Tensor) -> torch.Tensor:
    """A batch on DEVICE, copied once: on a GPU from pinned (page-locked)
    host memory without blocking the host, so the copy overlaps what the
    host does next and the GPU orders it before the kernels that use it; on
    the CPU, the tensor itself."""
    if DEVICE.type != "cuda":
        return batch
    return batch.pin_memory().to(DEVICE, non_blocking=True)


class BadInput(ValueError):
    """A request this stage cannot use; answered with 400 and the reason."""


def encode_tensor(t: torch.Tensor) -> dict:
    array = t.detach().to(torch.float32).contiguous().cpu().numpy()
    return {"b64": base64.b64encode(array.astype("<f4").tobytes()).decode(), "dtype": "float32",
            "shape": list(array.shape)}


def decode_tensor(obj: Any, what: str = "tensor") -> torch.Tensor:
    if not isinstance(obj, dict) or not {"b64", "dtype", "shape"} <= set(obj):
        raise BadInput(f"{what} must be an object with b64, dtype and shape")
    if obj["dtype"] != "float32":
        raise BadInput(f"{what}: only float32 tensors are accepted, got {obj['dtype']!r}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise BadInput(f"{what}: shape must be a list of positive integers")
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
    except (ValueError, TypeError):
        raise BadInput(f"{what}: b64 is not valid base64") from None
    if len(raw) != 4 * int(np.prod(shape)):
        raise BadInput(f"{what}: {len(raw)} bytes do not fit shape {shape}")
    return torch.from_numpy(np.frombuffer(raw, dtype="<f4").reshape(shape).copy())


def decode_image(raw: bytes) -> torch.Tensor:
    """Encoded image bytes (PNG, JPEG, PPM, ...) -> float tensor 3 x H x W in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in requirements.txt
        raise BadInput("image bytes need Pillow in the function's requirements") from None
    try:
        image = Image.open(io.BytesIO(raw)).convert("RGB")
    except Exception:
        raise BadInput("the body is not an image Pillow can read") from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def parse_json(event) -> Any:
    try:
        return json.loads(event.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the body must be JSON") from None


def content_type(event) -> str:
    headers = getattr(event, "headers", {}) or {}
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return ""


def seeded(name: str, module: torch.nn.Module) -> torch.nn.Module:
    """Deterministic random weights for ``name`` unless ESG_WEIGHTS_PATH
    points at a state dict (a file, or a folder holding ``<name>.pt``)."""
    path = os.environ.get("ESG_WEIGHTS_PATH")
    if path:
        file = os.path.join(path, f"{name}.pt") if os.path.isdir(path) else path
        module.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return module.eval().to(DEVICE)


def init_seed(name: str) -> None:
    torch.manual_seed(sum(ord(c) * 31 ** i for i, c in enumerate(name)) % (2 ** 31))
