"""The Open Inference Protocol (KServe V2, as Triton, KServe, MLServer and
TorchServe speak it) over HTTP, with its binary tensor extension.

- ``POST /v2/models/<name>[/versions/<v>]/infer``: a JSON body
  ``{"id", "parameters", "inputs": [{"name", "datatype", "shape", "data"}],
  "outputs": [{"name", "parameters": {"binary_data": bool}}]}``; or, with the
  header ``Inference-Header-Content-Length: N``, that JSON in the first N
  bytes and the raw tensors after it, in the order of the inputs whose
  ``parameters.binary_data_size`` gives their length. Outputs are answered
  in binary when the request asks (``binary_data`` per output, or
  ``binary_data_output`` for all), else as JSON ``data``.
- ``GET /v2/models/<name>`` (metadata), ``GET /v2/models/<name>/ready``,
  ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``.

Tensors stay bytes here (little-endian, row-major): no numpy in the
runtime. A handler that serves V2 defines ``infer(requests, context)``,
taking a list of :class:`InferRequest` (one batch) and returning, per
request, a dict name → :class:`Tensor` (or an exception for that request),
and ``MODEL`` (its metadata: ``inputs`` and ``outputs``, each a list of
``{"name", "datatype", "shape"}``, ``-1`` for a variable dimension).
"""

from __future__ import annotations

import array
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

HEADER = "Inference-Header-Content-Length"
#: datatype -> (array typecode or struct format, bytes per element)
DATATYPES = {"BOOL": ("?", 1), "UINT8": ("B", 1), "UINT16": ("H", 2), "UINT32": ("I", 4), "UINT64": ("Q", 8),
             "INT8": ("b", 1), "INT16": ("h", 2), "INT32": ("i", 4), "INT64": ("q", 8), "FP16": ("e", 2),
             "FP32": ("f", 4), "FP64": ("d", 8), "BYTES": (None, 0)}
MAX_ELEMENTS = 1 << 28
"""Elements of one tensor (a shape beyond it is refused before any allocation)."""


class ProtocolError(ValueError):
    """A request that does not follow the protocol: 400 with the reason."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: bytes
    """Little-endian, row-major; BYTES: each element a 4-byte little-endian length, then its bytes."""

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    def to_list(self) -> list:
        """The flat values, as JSON carries them."""
        code, _ = DATATYPES[self.datatype]
        if self.datatype == "BYTES":
            out, at = [], 0
            while at < len(self.data):
                (n,) = struct.unpack_from("<I", self.data, at)
                out.append(self.data[at + 4: at + 4 + n].decode("utf-8", "replace"))
                at += 4 + n
            return out
        if code in ("?", "e"):
            return list(struct.unpack(f"<{self.elements}{code}", self.data))
        values = array.array(code)
        values.frombytes(self.data)
        if sys.byteorder != "little":  # pragma: no cover - every platform we run on is little-endian
            values.byteswap()
        return values.tolist()

    @staticmethod
    def from_list(name: str, datatype: str, shape: list[int], values: list) -> "Tensor":
        code, _ = DATATYPES[datatype]
        if datatype == "BYTES":
            parts = []
            for v in values:
                raw = v.encode() if isinstance(v, str) else bytes(v)
                parts.append(struct.pack("<I", len(raw)) + raw)
            return Tensor(name, datatype, shape, b"".join(parts))
        if code in ("?", "e"):
            return Tensor(name, datatype, shape, struct.pack(f"<{len(values)}{code}", *values))
        packed = array.array(code, values)
        if sys.byteorder != "little":  # pragma: no cover
            packed.byteswap()
        return Tensor(name, datatype, shape, packed.tobytes())


@dataclass
class InferRequest:
    model: str
    id: Optional[str]
    inputs: dict[str, Tensor]
    binary_outputs: dict[str, bool] = field(default_factory=dict)
    """Requested outputs by name -> whether in binary; empty: all, as ``binary_all``."""
    binary_all: bool = False


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in value):
        raise ProtocolError(f"{where}: shape must be a list of non-negative integers")
    if math.prod(value) > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: more than {MAX_ELEMENTS} elements")
    return value


def _flatten(data: Any) -> list:
    """JSON ``data`` may be flat or nested as the shape; flatten it."""
    out, stack = [], [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _split(body: bytes, header_length: Optional[str]) -> tuple[dict, memoryview]:
    """(the JSON header, the binary part after it) of a request or response."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER} must be an integer, got {header_length[:40]!r}") from None
        if not 0 <= n <= len(body):
            raise ProtocolError(f"{HEADER} {n} is outside the body of {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    else:
        head, rest = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("the inference header must be a JSON object") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the inference header must be a JSON object")
    return doc, rest


def _tensors(items: Any, rest: memoryview, what: str) -> dict[str, Tensor]:
    """The tensors a header's ``inputs`` (or ``outputs``) describe, their
    binary data taken from ``rest`` in order."""
    if not isinstance(items, list) or not items:
        raise ProtocolError(f"the header needs a non-empty '{what}' list")
    tensors: dict[str, Tensor] = {}
    at = 0
    for i, item in enumerate(items):
        where = f"{what}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"{where} needs a name")
        datatype = item.get("datatype")
        if datatype not in DATATYPES:
            raise ProtocolError(f"{where}: datatype must be one of {', '.join(DATATYPES)}, got {datatype!r}")
        shape = _shape(item.get("shape"), where)
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(rest) - at:
                raise ProtocolError(f"{where}: binary_data_size {size!r} does not fit the body")
            data = bytes(rest[at: at + size])
            at += size
            tensor = Tensor(item["name"], datatype, shape, data)
        else:
            if "data" not in item:
                raise ProtocolError(f"{where} has neither data nor binary_data_size")
            values = _flatten(item["data"])
            if len(values) != math.prod(shape):
                raise ProtocolError(f"{where}: {len(values)} values do not fit shape {shape}")
            try:
                tensor = Tensor.from_list(item["name"], datatype, shape, values)
            except (TypeError, ValueError, OverflowError, struct.error):
                raise ProtocolError(f"{where}: the data are not {datatype} values") from None
        width = DATATYPES[datatype][1]
        if width and len(tensor.data) != width * tensor.elements:
            raise ProtocolError(f"{where}: {len(tensor.data)} bytes do not fit {datatype} {shape}")
        tensors[tensor.name] = tensor
    if at != len(rest):
        raise ProtocolError(f"{len(rest) - at} bytes after the {what}' binary data")
    return tensors


def parse_infer(model: str, body: bytes, header_length: Optional[str]) -> InferRequest:
    """An infer request from its body (and the binary extension's header)."""
    doc, rest = _split(body, header_length)
    inputs = _tensors(doc.get("inputs"), rest, "inputs")
    params = doc.get("parameters") or {}
    binary_all = bool(isinstance(params, dict) and params.get("binary_data_output"))
    wanted: dict[str, bool] = {}
    for item in doc.get("outputs") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            p = item.get("parameters") or {}
            wanted[item["name"]] = bool(isinstance(p, dict) and p.get("binary_data", binary_all))
    request_id = doc.get("id")
    return InferRequest(model, request_id if isinstance(request_id, str) else None, inputs, wanted, binary_all)


def encode_response(request: InferRequest, outputs: dict[str, Tensor], version: str = "1") -> tuple[bytes, dict]:
    """(body, extra headers) of an infer response: JSON, or JSON then the
    binary outputs with ``Inference-Header-Content-Length``."""
    names = list(request.binary_outputs) or list(outputs)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ProtocolError(f"the model has no output {', '.join(missing)} (it has {', '.join(outputs)})")
    described, blobs = [], []
    for name in names:
        tensor = outputs[name]
        entry: dict[str, Any] = {"name": name, "datatype": tensor.datatype, "shape": tensor.shape}
        if request.binary_outputs.get(name, request.binary_all):
            entry["parameters"] = {"binary_data_size": len(tensor.data)}
            blobs.append(tensor.data)
        else:
            entry["data"] = tensor.to_list()
        described.append(entry)
    doc: dict[str, Any] = {"model_name": request.model, "model_version": version, "outputs": described}
    if request.id is not None:
        doc["id"] = request.id
    head = json.dumps(doc).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {"Content-Type": "application/octet-stream", HEADER: str(len(head))}


def metadata(name: str, model: dict, version: str = "1", platform: str = "esg-python3") -> dict:
    """A model's metadata (``GET /v2/models/<name>``)."""
    return {"name": name, "versions": [version], "platform": platform,
            "inputs": model.get("inputs", []), "outputs": model.get("outputs", [])}


def server_metadata(name: str, version: str = "1") -> dict:
    """The server's metadata (``GET /v2``)."""
    return {"name": name, "version": version, "extensions": ["binary_tensor_data"]}


def model_path(path: str) -> Optional[tuple[str, list[str]]]:
    """(model, what follows it) of ``/v2/models/<model>[/versions/<v>]/…``
    (one version: any version names it), or None for another path."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if len(parts) < 3 or parts[:2] != ["v2", "models"]:
        return None
    rest = parts[3:]
    return parts[2], rest[2:] if len(rest) >= 2 and rest[0] == "versions" else rest


def encode_request(inputs: dict[str, Tensor], outputs: Optional[dict[str, bool]] = None,
                   request_id: Optional[str] = None) -> tuple[bytes, dict]:
    """(body, headers) of an infer request with every input in binary;
    ``outputs``: name -> binary wanted (None: every output, in binary)."""
    head: dict[str, Any] = {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape,
                                        "parameters": {"binary_data_size": len(t.data)}} for t in inputs.values()]}
    if outputs is None:
        head["parameters"] = {"binary_data_output": True}
    else:
        head["outputs"] = [{"name": n, "parameters": {"binary_data": b}} for n, b in outputs.items()]
    if request_id is not None:
        head["id"] = request_id
    raw = json.dumps(head).encode()
    return raw + b"".join(t.data for t in inputs.values()), {"Content-Type": "application/octet-stream",
                                                              HEADER: str(len(raw))}


def parse_response(body: bytes, header_length: Optional[str]) -> dict[str, Tensor]:
    """The output tensors of an infer response (JSON or binary)."""
    doc, rest = _split(body, header_length)
    return _tensors(doc.get("outputs"), rest, "outputs")


# --- a whole workflow as one model (both workflow routers: the standalone one and the router function) ---
def chain_order(after: dict[str, list[str]], fanout: Optional[dict[str, int]] = None) -> list[str]:
    """The stages of a workflow in order, when they form one chain: one
    entry, each stage after at most one other and before at most one other,
    no fan-out. A workflow is one model only as a chain (a join has no one
    set of inputs); else :class:`ProtocolError` with the reason."""
    before: dict[str, list[str]] = {stage: [] for stage in after}
    for stage, previous in after.items():
        for p in previous:
            if p not in before:
                raise ProtocolError(f"stage {stage!r} comes after an unknown stage {p!r}")
            before[p].append(stage)
    entries = [s for s, previous in after.items() if not previous]
    if len(entries) != 1 or any(len(p) > 1 for p in after.values()) or any(len(n) > 1 for n in before.values()) \
            or any(n > 1 for n in (fanout or {}).values()):
        raise ProtocolError("the workflow is not a chain of stages: the Open Inference Protocol is taken for "
                            "chains; use its JSON path")
    order = entries
    while before[order[-1]]:
        order.append(before[order[-1]][0])
    if len(order) != len(after):
        raise ProtocolError("the workflow's stages are not connected")
    return order


def infer_chain(inputs: dict[str, Tensor], stages: list[tuple[str, str]], call, headers: dict) -> dict[str, Tensor]:
    """Tensors through a chain: each stage's output tensors are the next
    one's inputs, by name, in binary on the wire. ``stages``: (stage, the
    model its function serves), in order; ``call(stage, model, body,
    headers)`` posts one infer request and returns (body, response headers);
    what it raises passes through. A stage that answers outside the protocol
    raises :class:`ProtocolError`."""
    tensors = inputs
    for stage, model in stages:
        payload, extra = encode_request(tensors)
        body, answered = call(stage, model, payload, {**headers, **extra})
        length = next((v for k, v in dict(answered).items() if k.lower() == HEADER.lower()), None)
        try:
            tensors = parse_response(body, length)
        except ProtocolError as err:
            raise ProtocolError(f"stage {stage!r} answered outside the protocol: {err}") from None
    return tensors
