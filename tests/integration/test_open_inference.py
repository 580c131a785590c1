"""The Open Inference Protocol (KServe V2) on a real DNN function, through
the real `tritonclient[http]` client from PyPI: binary and JSON tensors give
the same outputs as the function's JSON path, bit for bit in float32."""

import base64
import contextlib
import http.client as httpclient
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("torch")
http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from .test_functions import ROOT, TEMPLATE, dnn_folder, serving  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def functions(tmp_path_factory):
    deployments = {name: {"ESG_FUNCTION": name} for name in ("espcn", "resnet18", "langid-cnn")}
    with serving(dnn_folder(tmp_path_factory.mktemp("oip")), deployments) as started:
        for server in started.values():
            server.batch_size(1)
            assert server.request("PUT", "/_esg/config", b'{"max_wait_ms": 0}', {"Authorization": "Bearer t"})[0] \
                == 200
        yield started


def image(seed, size=56):
    return np.random.default_rng(seed).random((3, size, size), dtype=np.float32)


def json_path(server, array):
    doc = {"image": {"b64": base64.b64encode(array.astype("<f4").tobytes()).decode(), "dtype": "float32",
                     "shape": list(array.shape)}}
    status, _, out = server.post(doc)
    assert status == 200, out
    return out


def client(server):
    return http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=120.0)


def image_input(array, binary=True):
    """The 'image' input of an infer request, as tritonclient sends it."""
    tensor = http.InferInput("image", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def infer_classes(triton, model, array, binary):
    """A classifier's outputs for one image, binary or JSON both ways."""
    return triton.infer(model, [image_input(array, binary)],
                        outputs=[http.InferRequestedOutput(n, binary_data=binary)
                                 for n in ("label", "top5_index", "top5_score")])


def assert_same_classes(result, expected):
    """A V2 classifier answer holds the JSON path's answer, the scores bit for bit."""
    assert result.as_numpy("label").tolist() == [expected["label"]]
    assert result.as_numpy("top5_index").tolist() == [i for i, _ in expected["top5"]]
    assert result.as_numpy("top5_score").tobytes() == np.array([v for _, v in expected["top5"]], "<f4").tobytes()


@pytest.mark.parametrize("binary", [True, False])
def test_an_image_stage_answers_tritonclient_bit_for_bit_as_its_json_path(functions, binary):
    server = functions["espcn"]
    triton = client(server)
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready("espcn")
    meta = triton.get_model_metadata("espcn")
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [3, -1, -1]}]
    for seed in range(3):
        array = image(seed)
        expected = json_path(server, array)["image"]
        result = triton.infer("espcn", [image_input(array, binary)],
                              outputs=[http.InferRequestedOutput("image", binary_data=binary)])
        got = result.as_numpy("image")
        assert list(got.shape) == expected["shape"] and got.dtype == np.float32
        assert got.astype("<f4").tobytes() == base64.b64decode(expected["b64"])  # bit for bit


@pytest.mark.parametrize("binary", [True, False])
def test_a_classifier_answers_tritonclient_as_its_json_path(functions, binary):
    server = functions["resnet18"]
    triton = client(server)
    array = image(7, size=64)
    expected = json_path(server, array)
    assert_same_classes(infer_classes(triton, "resnet18", array, binary), expected)


@pytest.mark.parametrize("stage, outputs", [("espcn", ["image"]), ("resnet18", ["label", "top5_index", "top5_score"])])
def test_requests_of_mixed_sizes_batched_together_each_get_their_own_answers(functions, stage, outputs):
    """One runtime batch holding a [2, 3, 56, 56] request, a [3, 56, 56] one
    and a [3, 40, 40] one: the stage runs once per image size, and each
    request gets its own answers back in its own shape, the same as alone."""
    server = functions[stage]
    requests = [np.stack([image(40), image(41)]), image(42), image(43, size=40)]
    alone = [client(server).infer(stage, [image_input(a)]) for a in requests]
    server.batch_size(8)
    assert server.request("PUT", "/_esg/config", b'{"max_wait_ms": 2000}', {"Authorization": "Bearer t"})[0] == 200
    try:
        before = _batches(server)
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda a: client(server).infer(stage, [image_input(a)]), requests))
        assert _batches(server) == before + 1  # one batch for the three (the wait is long)
    finally:
        server.batch_size(1)
        assert server.request("PUT", "/_esg/config", b'{"max_wait_ms": 0}', {"Authorization": "Bearer t"})[0] == 200
    for got, want in zip(together, alone):
        for name in outputs:
            assert got.as_numpy(name).shape == want.as_numpy(name).shape
            assert np.allclose(got.as_numpy(name), want.as_numpy(name), atol=1e-5)


def _batches(server):
    """Batches the function has run (its esg_batch_size histogram's count)."""
    text = server.request("GET", "/_esg/metrics")[2].decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("esg_batch_size_count"))


def test_a_batch_in_one_tensor_gives_each_image_its_own_answer(functions):
    """[N, 3, H, W] in one request: the outputs stacked in the same order,
    each the same as that image's own request."""
    server = functions["resnet18"]
    triton = client(server)
    arrays = np.stack([image(20 + k, size=40) for k in range(4)])
    inputs = [image_input(arrays)]
    result = triton.infer("resnet18", inputs)
    assert result.as_numpy("top5_index").shape == (4, 5) and result.as_numpy("label").shape == (4, 1)
    for k in range(4):
        expected = json_path(server, arrays[k])
        assert result.as_numpy("label")[k].tolist() == [expected["label"]]
        assert result.as_numpy("top5_index")[k].tolist() == [i for i, _ in expected["top5"]]
    upscaled = client(functions["espcn"]).infer("espcn", inputs).as_numpy("image")
    assert upscaled.shape == (4, 3, 80, 80)
    for k in range(4):
        assert np.allclose(upscaled[k], np.frombuffer(base64.b64decode(json_path(functions["espcn"], arrays[k])
                                                                       ["image"]["b64"]), "<f4").reshape(3, 80, 80),
                           atol=1e-5)


def test_bad_v2_requests_get_400_with_a_reason(functions):
    server = functions["espcn"]
    triton = client(server)
    wrong = [http.InferInput("image", [2, 8, 8], "FP32")]
    wrong[0].set_data_from_numpy(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(InferenceServerException, match="must be FP32 \\[3, H, W\\] or \\[N, 3, H, W\\]"):
        triton.infer("espcn", wrong)
    with pytest.raises(InferenceServerException, match="no model 'resnet50'"):
        triton.infer("resnet50", wrong)
    status, _, body = server.request("POST", "/v2/models/espcn/infer", b'{"inputs": [{"name": "image", '
                                     b'"datatype": "FP32", "shape": [3, 2, 2], "data": [1, 2]}]}')
    assert status == 400 and "do not fit shape" in json.loads(body)["error"]
    status, _, body = server.request("POST", "/v2/models/espcn/infer", b"{}", {"Inference-Header-Content-Length":
                                                                               "99"})
    assert status == 400 and "outside the body" in json.loads(body)["error"]


def test_a_stage_without_tensor_inputs_says_so(functions):
    status, _, body = functions["langid-cnn"].request("GET", "/v2/models/langid-cnn")
    assert status == 404 and "does not serve the Open Inference Protocol" in json.loads(body)["error"]


STACK = {"functions": {
    "up": {"annotations": {"com.esg.workflow": "w", "com.esg.stage": "upscale", "com.esg.profile": "espcn",
                           "com.esg.slo-ms": "60000"}},
    "cls": {"annotations": {"com.esg.workflow": "w", "com.esg.stage": "classify", "com.esg.profile": "resnet18",
                            "com.esg.after": "upscale"}}}}


@contextlib.contextmanager
def gateway(ports: dict):
    """OpenFaaS's gateway as far as the routers use it: GET /system/functions
    (STACK's annotations) and /function/<fn>/<path> forwarded to the
    function's port in ``ports`` (headers and status kept)."""

    class Gateway(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            if self.path == "/system/functions":
                doc = [{"name": n, "annotations": f["annotations"]} for n, f in STACK["functions"].items()]
                return self._answer(200, [("Content-Type", "application/json")], json.dumps(doc).encode())
            self._forward("GET", b"")

        def do_POST(self):  # noqa: N802
            self._forward("POST", self.rfile.read(int(self.headers["Content-Length"])))

        def _forward(self, method, body):
            _, _, fn, *rest = self.path.split("/")
            keep = {k: v for k, v in self.headers.items()
                    if k.lower().startswith(("content-type", "inference-", "x-esg-"))}
            conn = httpclient.HTTPConnection("127.0.0.1", ports[fn], timeout=120)
            conn.request(method, "/" + "/".join(rest), body=body or None, headers=keep)
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
            self._answer(answer.status, [(k, v) for k, v in answer.getheaders()
                                         if k.lower() not in ("content-length", "date", "server", "connection")],
                         data)

        def _answer(self, status, headers, data):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_workflow_answers(url, expected, array):
    """A V2 client of the workflow "w" at ``url`` gets, binary and JSON, the JSON path's answer."""
    triton = http.InferenceServerClient(url=url, network_timeout=120.0)
    assert triton.is_server_live() and triton.is_model_ready("w")
    for binary in (True, False):
        assert_same_classes(infer_classes(triton, "w", array, binary), expected)


def json_workflow(port, path, array):
    doc = {"image": {"b64": base64.b64encode(array.astype("<f4").tobytes()).decode(), "dtype": "float32",
                     "shape": list(array.shape)}}
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 200
    output = json.loads(answer.read())["output"]
    conn.close()
    return output


def test_a_whole_workflow_answers_tritonclient_as_its_json_path(functions):
    """The router runs a chain (upscale -> classify) with binary tensors
    between the stages, for a V2 client; the same answer as the router's
    JSON path for the same image."""
    from esg_plugin.router import Router, make_router_server
    from esg_plugin.scaler import Topology

    ports = {"up": functions["espcn"].port, "cls": functions["resnet18"].port}
    with gateway(ports) as gateway_url:
        router = make_router_server(Router(Topology.from_stack(STACK), gateway_url))
        threading.Thread(target=router.serve_forever, daemon=True).start()
        try:
            array = image(11, size=32)
            expected = json_workflow(router.server_address[1], "/workflow/w", array)
            check_workflow_answers(f"127.0.0.1:{router.server_address[1]}", expected, array)
        finally:
            router.shutdown()
            router.server_close()


def test_the_router_function_answers_a_whole_workflow_through_the_gateway(functions, tmp_path):
    """The same for the router as an esg-python3 function (functions/router,
    in the template's real runtime), called as a client of OpenFaaS calls
    it: tritonclient at <gateway>/function/router."""
    folder = tmp_path / "router"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(folder / "function")
    shutil.copytree(ROOT / "functions/router", folder / "function", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "function/__init__.py").touch()
    ports = {"up": functions["espcn"].port, "cls": functions["resnet18"].port}
    with gateway(ports) as gateway_url:
        with serving(folder, {"router": {"gateway_url": gateway_url}}) as started:
            router = started["router"]
            assert router.request("PUT", "/_esg/config", b'{"max_batch_size": 1, "max_wait_ms": 0}',
                                  {"Authorization": "Bearer t"})[0] == 200
            ports["router"] = router.port
            port = int(gateway_url.rsplit(":", 1)[1])
            array = image(12, size=32)
            expected = json_workflow(port, "/function/router/workflow/w", array)
            check_workflow_answers(f"127.0.0.1:{port}/function/router", expected, array)
            # a bad request and an unknown workflow: 4xx with a JSON reason, through the gateway
            status, _, body = router.request("POST", "/v2/models/w/infer", b"{}", {"Inference-Header-Content-Length":
                                                                                    "99"})
            assert status == 400 and "outside the body" in json.loads(body)["error"]
            status, _, body = router.request("GET", "/v2/models/nope")
            assert status == 404 and "no workflow 'nope'" in json.loads(body)["error"]
