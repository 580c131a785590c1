"""The DNN functions (functions/dnn) served by the esg-python3 template over
real HTTP: each stage answers, a batch of 8 equals 8 single calls, malformed
input gets 400, and the three workflows run end to end, stage after stage."""

import base64
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template/esg-python3"
FUNCTIONS = ROOT / "functions/dnn"

from .test_runtime_server import free_port  # noqa: E402

# deployment name -> environment (as in stack.yml)
DEPLOYMENTS = {
    "preprocess": {"ESG_FUNCTION": "preprocess"},
    "espcn": {"ESG_FUNCTION": "espcn"},
    "resnet50": {"ESG_FUNCTION": "resnet50"},
    "ssd": {"ESG_FUNCTION": "ssd-mobilenetv2"},
    "vehicle": {"ESG_FUNCTION": "resnet18", "ESG_CROP_CLASS": "vehicle"},
    "person": {"ESG_FUNCTION": "resnet18", "ESG_CROP_CLASS": "person"},
    "aggregate": {"ESG_FUNCTION": "aggregator"},
    "langid": {"ESG_FUNCTION": "langid-cnn"},
    "translate": {"ESG_FUNCTION": "translator"},
    "sentiment": {"ESG_FUNCTION": "bert-mini"},
}


class Server:
    def __init__(self, folder: Path, env: dict):
        self.port = free_port()
        # stderr to a file, not a pipe: a pipe nobody reads blocks the process once it fills
        self.err_path = folder / f"stderr-{self.port}.txt"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "index.py"], cwd=folder, stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, **env, "ESG_PORT": str(self.port), "ESG_MAX_BATCH_SIZE": "8",
                     "ESG_MAX_WAIT_MS": "3000", "ESG_CONFIG_TOKEN": "t", "OMP_NUM_THREADS": "1"})

    def wait(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/_esg/health")[0] == 200:
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.err_path.read_text(errors="replace")) from None
                time.sleep(0.1)
        raise RuntimeError("function did not start")

    def request(self, method, path, body=b"", headers=None):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, body, content_type="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        status, headers, out = self.request("POST", "/", body, {"Content-Type": content_type})
        return status, headers, json.loads(out)

    def batch_size(self, n):
        assert self.request("PUT", "/_esg/config", json.dumps({"max_batch_size": n}).encode(),
                            {"Authorization": "Bearer t"})[0] == 200


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with serving(dnn_folder(tmp_path_factory.mktemp("dnn")), DEPLOYMENTS) as started:
        yield started


def dnn_folder(parent: Path) -> Path:
    """The template with functions/dnn overlaid, as faas-cli build makes it."""
    folder = parent / "fn"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(folder / "function")
    shutil.copytree(FUNCTIONS, folder / "function", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function/__init__.py").touch()
    return folder


@contextlib.contextmanager
def serving(folder: Path, deployments: dict):
    """Each deployment (name -> environment) running and healthy; stopped after."""
    started = {name: Server(folder, env) for name, env in deployments.items()}
    try:
        for server in started.values():
            server.wait()
        yield started
    finally:
        for server in started.values():
            server.proc.terminate()
            server.proc.wait()


def png_bytes(seed, size=80):
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def close(a, b, path="$"):
    """Structural equality with tolerances for floats and tensors."""
    if isinstance(a, dict) and {"b64", "dtype", "shape"} <= set(a):
        assert a["shape"] == b["shape"], path
        x = np.frombuffer(base64.b64decode(a["b64"]), "<f4")
        y = np.frombuffer(base64.b64decode(b["b64"]), "<f4")
        assert np.allclose(x, y, atol=1e-4), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), path
    else:
        assert a == b, path


def sample_inputs(name, servers):
    """Eight valid inputs for a deployment, made by the stages before it."""
    if name in ("preprocess", "ssd"):
        return [(png_bytes(i), "image/png") for i in range(8)]
    if name == "espcn":
        return [(servers["preprocess"].post(png_bytes(i), "image/png")[2], None) for i in range(8)]
    if name == "resnet50":
        return [({"image_b64": base64.b64encode(png_bytes(i, 112)).decode()}, None) for i in range(8)]
    if name in ("vehicle", "person"):
        return [(servers["ssd"].post(png_bytes(i), "image/png")[2], None) for i in range(8)]
    if name == "aggregate":
        detections = [servers["ssd"].post(png_bytes(i), "image/png")[2] for i in range(8)]
        return [({"inputs": {"vehicle": servers["vehicle"].post(d)[2], "person": servers["person"].post(d)[2]}},
                 None) for d in detections]
    if name in ("langid", "sentiment"):
        return [(f"sentence {i} is here, and it is fine".encode(), "text/plain") for i in range(8)]
    if name == "translate":
        return [({"text": f"Satz {i} ist hier", "language": "de"}, None) for i in range(8)]
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(DEPLOYMENTS))
def test_a_batch_of_8_equals_8_single_calls(servers, name):
    server = servers[name]
    inputs = sample_inputs(name, servers)
    server.batch_size(8)
    with ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(lambda item: server.post(item[0], item[1] or "application/json"), inputs))
    assert [r[0] for r in batched] == [200] * 8
    assert [r[1]["X-ESG-Batch-Size"] for r in batched] == ["8"] * 8
    server.batch_size(1)
    singles = [server.post(body, ct or "application/json") for body, ct in inputs]
    assert [r[1]["X-ESG-Batch-Size"] for r in singles] == ["1"] * 8
    for (_, _, a), (_, _, b) in zip(batched, singles):
        close(a, b)


@pytest.mark.parametrize("name, body, ct", [
    ("preprocess", b"not an image", "image/png"),
    ("espcn", {"image": {"b64": "!!", "dtype": "float32", "shape": [3, 8, 8]}}, None),
    ("resnet50", {"picture": 1}, None),
    ("ssd", b"{", None),
    ("vehicle", {"crops": "none"}, None),
    ("aggregate", {"inputs": {"vehicle": 3}}, None),
    ("langid", {"text": ""}, None),
    ("translate", {"words": "hallo"}, None),
    ("sentiment", b"\xff\xfe", "text/plain"),
])
def test_malformed_input_gets_400_with_a_reason(servers, name, body, ct):
    status, _, out = servers[name].post(body, ct or "application/json")
    assert status == 400 and out["error"]


def test_the_three_workflows_end_to_end(servers):
    s = servers
    for server in s.values():
        server.batch_size(1)
    # image: preprocess -> espcn -> resnet50
    image = s["preprocess"].post(png_bytes(7, 150), "image/png")[2]
    assert image["image"]["shape"] == [3, 56, 56]
    upscaled = s["espcn"].post(image)[2]
    assert upscaled["image"]["shape"] == [3, 112, 112]
    label = s["resnet50"].post(upscaled)[2]
    assert 0 <= label["label"] < 1000 and len(label["top5"]) == 5
    # traffic: ssd -> {vehicle, person} -> aggregate
    detected = s["ssd"].post(png_bytes(8, 200), "image/png")[2]
    assert {d["class"] for d in detected["detections"]} == {"vehicle", "person"}
    vehicles, persons = s["vehicle"].post(detected)[2], s["person"].post(detected)[2]
    summary = s["aggregate"].post({"inputs": {"vehicle": vehicles, "person": persons}})[2]
    assert summary["counts"] == {"vehicle": 2, "person": 2}
    # text: langid -> translate -> sentiment
    language = s["langid"].post("Das Wetter ist heute schön".encode(), "text/plain; charset=utf-8")[2]
    assert language["language"] in ("en", "de", "fr", "es", "it", "nl", "pt", "sv")
    translated = s["translate"].post(language)[2]
    assert translated["source_language"] == language["language"] and isinstance(translated["text"], str)
    mood = s["sentiment"].post({"text": translated["text"] or "empty"})[2]
    assert mood["sentiment"] in ("negative", "neutral", "positive")


def test_weights_path_loads_real_weights(tmp_path):
    import torch

    sys.path.insert(0, str(FUNCTIONS))
    try:
        import text as text_models
    finally:
        sys.path.remove(str(FUNCTIONS))
    model = text_models.LangIdCNN()
    for parameter in model.parameters():
        torch.nn.init.zeros_(parameter)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(model.state_dict(), weights / "langid-cnn.pt")
    folder = tmp_path / "fn"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(folder / "function")
    shutil.copytree(FUNCTIONS, folder / "function", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function/__init__.py").touch()
    server = Server(folder, {"ESG_FUNCTION": "langid-cnn", "ESG_WEIGHTS_PATH": str(weights)})
    try:
        server.wait()
        server.batch_size(1)
        status, _, out = server.post({"text": "any text at all"})
        assert status == 200
        assert out["confidence"] == pytest.approx(1 / 8)  # zero weights: every language equally likely
    finally:
        server.proc.terminate()
        server.proc.wait()
