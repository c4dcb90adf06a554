"""``resdense serve``'s API through an HTTP client against a live uvicorn server on loopback: the answers
(the same numbers as ``resdense predict``), the model card, batching, and every bad input (a 4xx with a
one-line JSON message, after which the server keeps serving)."""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import threading
import time

import httpx
import pytest
import torch

from resdense.serve import load_predictor
from resdense.serve.batcher import MicroBatcher
from resdense.serve.http import DEFAULT_MAX_MEGAPIXELS, create_app
from resdense.serve.predict import predict_files

from .live import bomb_png, jpeg_bytes, live_server, noise, png_bytes

MAX_BATCH = 16
MAX_UPLOAD_MB = 4.0


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("fashion-mnist", weights=True)


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory):
    """The server process's temporary folder for the module: an upload must leave nothing in it."""
    folder = tmp_path_factory.mktemp("server-tmp")
    before, tempfile.tempdir = tempfile.tempdir, str(folder)
    yield folder
    tempfile.tempdir = before


@pytest.fixture(scope="module")
def server(predictor, temp_dir):
    app = create_app(predictor, source="fashion-mnist", max_upload_mb=MAX_UPLOAD_MB, max_batch=MAX_BATCH)
    with live_server(app) as (url, srv), httpx.Client(base_url=url, timeout=60) as client:
        yield client, srv, app


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Image files of several kinds and sizes: grey and colour, PNG and JPEG, light and dark backgrounds."""
    folder = tmp_path_factory.mktemp("images")
    light = noise(50, 40, 3, seed=2) // 4 + 190  # a light background: `auto` inverts it
    files = {
        "grey.png": png_bytes(noise(28, 28, 1, seed=0)),
        "colour.jpg": jpeg_bytes(noise(64, 48, 3, seed=1)),
        "light.png": png_bytes(light),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


def _answers(body: dict) -> list[list[tuple[str, float]]]:
    return [[(t["class"], t["probability"]) for t in p["top"]] for p in body["predictions"]]


def _same(a, b, tol=1e-5) -> bool:
    return all(
        [c for c, _ in x] == [c for c, _ in y] and all(abs(p - q) <= tol for (_, p), (_, q) in zip(x, y))
        for x, y in zip(a, b, strict=True)
    )


def test_health_and_model_card(server):
    client, _, _ = server
    assert client.get("/health").json() == {"status": "ok", "model": "resnet20"}
    card = client.get("/model").json()
    assert card["model"] == "resnet20" and len(card["classes"]) == 10 and card["classes"][9] == "Ankle boot"
    assert card["preprocess"]["input_size"] == 28 and card["preprocess"]["in_chans"] == 1
    assert card["trained"]["dataset"] == "fashion-mnist" and 0.9 < card["trained"]["test_accuracy"] < 1
    assert card["limits"] == {
        "max_upload_mb": MAX_UPLOAD_MB,
        "max_batch": MAX_BATCH,
        "max_megapixels": DEFAULT_MAX_MEGAPIXELS,
    }
    assert card["explain"] is False
    spec = client.get("/openapi.json").json()
    assert "/predict" in spec["paths"] and "multipart/form-data" in json.dumps(spec["paths"]["/predict"])


def test_multipart_and_raw_give_the_numbers_of_resdense_predict(server, predictor, images):
    client, _, _ = server
    folder, files = images
    names = list(files)
    expected = [
        [(c, p) for c, p in r.top]
        for r in predict_files(predictor, [folder / n for n in names], top_k=4, invert="auto")
    ]
    parts = [("files", (n, files[n], "application/octet-stream")) for n in names]
    r = client.post("/predict", params={"top": 4}, files=parts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["path"] for p in body["predictions"]] == names
    assert _same(_answers(body), expected)
    assert body["predictions"][2].get("inverted") is True  # the light background, as predict inverts it
    for i, n in enumerate(names):  # one image as raw bytes, under either content type
        ctype = "image/png" if n.endswith(".png") else "application/octet-stream"
        one = client.post("/predict", params={"top": 4}, content=files[n], headers={"Content-Type": ctype})
        assert one.status_code == 200, one.text
        assert _same(_answers(one.json()), [expected[i]])
    assert (
        len(
            client.post("/predict", content=files[names[0]], headers={"Content-Type": "image/png"}).json()[
                "predictions"
            ][0]["top"]
        )
        == 3
    )


def _assert_one_line_error(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert "\n" not in r.text.strip()
    body = r.json()
    assert list(body) == ["error"] and body["error"] and "\n" not in body["error"]
    for f in fragments:
        assert f.lower() in body["error"].lower(), body["error"]


def _still_serving(client, files) -> None:
    assert client.get("/health").status_code == 200
    r = client.post("/predict", content=files["grey.png"], headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["predictions"][0]["top"]


TINY = png_bytes(noise(2, 2, 1))


BAD = {
    "empty body": (dict(content=b"", headers={"Content-Type": "image/png"}), 400, "no image"),
    "no file parts": (
        dict(files=[], data={}, headers={"Content-Type": "multipart/form-data; boundary=x"}),
        400,
        "no image",
    ),
    "non-image": (
        dict(content=b"hello, not an image" * 20, headers={"Content-Type": "image/png"}),
        422,
        "not an image",
    ),
    "non-image part": (dict(files=[("file", ("notes.txt", b"plain text", "text/plain"))]), 422, "notes.txt"),
    "text field": (
        dict(data={"comment": "hi"}, files=[("file", ("a.png", TINY, "image/png"))]),
        422,
        "comment",
    ),
    "truncated JPEG": (
        dict(files=[("file", ("cut.jpg", jpeg_bytes(noise(64, 64, 3))[:600], "image/jpeg"))]),
        422,
        "cut.jpg",
        "truncated",
    ),
    "decompression bomb": (
        dict(files=[("file", ("bomb.png", bomb_png(), "image/png"))]),
        422,
        "bomb.png",
        "decompression bomb",
    ),
    "over --max-upload-mb": (
        dict(content=b"\xff" * int((MAX_UPLOAD_MB + 1) * 2**20), headers={"Content-Type": "image/jpeg"}),
        413,
        "--max-upload-mb",
    ),
    "wrong content type": (
        dict(content=b'{"image": "x"}', headers={"Content-Type": "application/json"}),
        415,
        "application/json",
    ),
    "no content type": (dict(content=TINY, headers={"Content-Type": ""}), 415, "Content-Type"),
    "10,000 images over --max-batch": (
        dict(files=[("f", (f"{i}.png", TINY, "image/png")) for i in range(10_000)]),
        413,
        "--max-batch",
        "16",
    ),
    "17 images over --max-batch": (
        dict(files=[("f", (f"{i}.png", TINY, "image/png")) for i in range(MAX_BATCH + 1)]),
        413,
        "--max-batch",
    ),
    "bad top": (dict(params={"top": 0}, content=TINY, headers={"Content-Type": "image/png"}), 422, "top"),
    "bad invert": (
        dict(params={"invert": "maybe"}, content=TINY, headers={"Content-Type": "image/png"}),
        422,
        "invert",
    ),
    "explain without an explainer": (
        dict(params={"explain": "true"}, content=TINY, headers={"Content-Type": "image/png"}),
        400,
        "explain",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_with_one_line_json_and_the_server_keeps_serving(server, images, case):
    client, _, _ = server
    kwargs, status, *fragments = BAD[case]
    _assert_one_line_error(client.post("/predict", **kwargs), status, *fragments)
    _still_serving(client, images[1])


def test_unknown_paths_and_methods_are_one_line_json(server, images):
    client, _, _ = server
    _assert_one_line_error(client.get("/nowhere"), 404)
    _assert_one_line_error(client.get("/predict"), 405)


def test_over_the_limit_without_content_length_is_refused_while_streaming(server, images):
    client, _, _ = server

    def chunks():  # chunked transfer: no Content-Length to refuse it by
        for _ in range(int(MAX_UPLOAD_MB) + 2):
            yield b"\0" * 2**20

    r = client.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})
    _assert_one_line_error(r, 413, "--max-upload-mb")
    _still_serving(client, images[1])


def _connections(srv) -> int:
    return len(srv.server_state.connections)


def test_client_disconnect_mid_upload_leaves_nothing_behind(server, images, temp_dir):
    client, srv, _ = server
    port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
    before = _connections(srv)
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port))
        body = (
            b'--b\r\nContent-Disposition: form-data; name="f"; filename="x.png"\r\n\r\n' + b"\x89PNG" * 5000
        )
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 3000000\r\n\r\n" + body
        )
        s.close()  # gone, 2.98 MB short
    deadline = time.monotonic() + 10
    while _connections(srv) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connections(srv) <= before  # every dropped connection closed by the server
    assert list(temp_dir.iterdir()) == []  # no temporary file
    _still_serving(client, images[1])
    # a large upload (over Starlette's 1 MB spool) is parsed in memory too: no temporary file either
    big = png_bytes(noise(900, 900, 3, seed=5))
    assert len(big) > 2**21
    r = client.post("/predict", files=[("file", ("big.png", big, "image/png"))])
    assert r.status_code == 200 and list(temp_dir.iterdir()) == []


def test_concurrent_requests_are_batched_and_answered_alike(server, images):
    client, _, app = server
    _, files = images
    url = str(client.base_url)
    alone = client.post(
        "/predict", content=files["colour.jpg"], headers={"Content-Type": "image/jpeg"}
    ).json()
    batcher = app.state.batcher
    out, errors = [], []

    def one():
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                r = c.post("/predict", content=files["colour.jpg"], headers={"Content-Type": "image/jpeg"})
                out.append(r.json())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 12
    assert all(_same(_answers(o), _answers(alone)) for o in out)  # batched or not, the same answer
    assert batcher.requests >= 12


def test_the_batcher_runs_waiting_requests_as_one_batch():
    calls = []

    def run(images):
        calls.append(len(images))
        time.sleep(0.05)  # the model is busy: the others queue meanwhile
        return torch.stack([im.float().sum() for im in images])[:, None]

    batcher = MicroBatcher(run, max_images=64)

    async def main():
        return await asyncio.gather(
            *[batcher.submit([torch.full((1,), float(i))] * (1 + i % 2)) for i in range(10)]
        )

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert [r[:, 0].tolist() for r in results] == [[float(i)] * (1 + i % 2) for i in range(10)]
    assert sum(calls) == 15 and len(calls) < 10  # fewer passes than requests
    assert batcher.batches == len(calls) and batcher.requests == 10


def test_the_batcher_hands_an_error_to_its_requests_and_lives_on():
    def run(images):
        if len(images) == 3:
            raise ValueError("three is too many")
        return torch.zeros(len(images), 1)

    batcher = MicroBatcher(run)
    try:
        with pytest.raises(ValueError, match="three"):
            asyncio.run(batcher.submit([torch.zeros(1)] * 3))
        assert asyncio.run(batcher.submit([torch.zeros(1)])).shape == (1, 1)
    finally:
        batcher.close()


def test_resdense_serve_command_serves_on_loopback(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "resdense",
        "serve",
        "--weights",
        "fashion-mnist",
        "--port",
        "0",
        "--max-batch",
        "4",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.match(r"serving resnet20 \(torch\) at (http://127\.0\.0\.1:\d+)/ ", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = m.group(1)
        assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and '<script src="page.js"></script>' in page.text
        assert 'src="http' not in page.text and 'href="http' not in page.text  # nothing from elsewhere
        assert httpx.get(url + "/page.js", timeout=30).headers["content-type"].startswith("text/javascript")
        assert httpx.get(url + "/model", timeout=30).json()["limits"]["max_batch"] == 4
        files = [("f", (f"{i}.png", TINY, "image/png")) for i in range(5)]
        r = httpx.post(url + "/predict", files=files, timeout=30)
        assert r.status_code == 413 and "--max-batch" in r.json()["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_resdense_serve_bad_options_are_one_line_errors(capsys):
    from resdense.cli import main

    for argv, fragment in [
        (["--max-batch", "0"], "--max-batch must be at least 1"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be positive"),
        (["--port", "70000"], "--port must be 0-65535"),
    ]:
        assert main(["serve", "--weights", "fashion-mnist", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("resdense serve: error: ") and fragment in err and "\n" not in err
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert main(["serve", "--weights", "fashion-mnist", "--port", str(busy.getsockname()[1])]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot listen there" in err and "\n" not in err
    finally:
        busy.close()
    assert main(["serve", "no/such/run"]) == 2
    assert "no/such/run" in capsys.readouterr().err


def test_a_huge_declared_upload_is_refused_before_any_byte_is_read(server, images):
    client, _, _ = server
    port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        head = ""
        while "}" not in head:  # answered with no body sent at all (headers and body may come apart)
            data = s.recv(4096)
            if not data:
                break
            head += data.decode("latin-1")
    status, _, rest = head.partition("\r\n")
    assert status.startswith("HTTP/1.1 413"), head
    assert '"error":"upload of 10,000,000,000 bytes is over the limit' in rest
    _still_serving(client, images[1])


def test_the_explanation_hook(predictor, images):
    """``create_app(explain=fn)``: the card says so and ``?explain=true`` adds each image's map as a data URL."""
    import base64

    seen = []

    def explain(pred, image, index):
        seen.append((pred is predictor, tuple(image.shape), index))
        return png_bytes(noise(8, 8, 3))

    _, files = images
    with live_server(create_app(predictor, explain=explain)) as (url, _), httpx.Client(base_url=url) as c:
        assert c.get("/model").json()["explain"] is True
        r = c.post(
            "/predict",
            params={"explain": "true"},
            content=files["grey.png"],
            headers={"Content-Type": "image/png"},
        )
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        head, _, data = p["explanation"].partition(",")
        assert head == "data:image/png;base64" and base64.b64decode(data).startswith(b"\x89PNG")
        top = predictor.spec.classes.index(p["top"][0]["class"])
        assert seen == [(True, (1, 1, 28, 28), top)]
        assert (
            "explanation"
            not in c.post(
                "/predict", content=files["grey.png"], headers={"Content-Type": "image/png"}
            ).json()["predictions"][0]
        )


def test_the_served_explanation_is_the_grad_cam_overlay(predictor, images):
    """``resdense serve`` hands the hook Grad-CAM (serve.explain.overlay_png): a PNG of the image the network
    saw (28x28 here, drawn 4x larger) with the map of the top class over it."""
    import base64
    import io

    from PIL import Image

    from resdense.serve.explain import can_explain, overlay_png

    assert can_explain(predictor)
    _, files = images
    with live_server(create_app(predictor, explain=overlay_png)) as (url, _), httpx.Client(base_url=url) as c:
        r = c.post(
            "/predict",
            params={"explain": "true"},
            content=files["grey.png"],
            headers={"Content-Type": "image/png"},
        )
        assert r.status_code == 200, r.text
        data = r.json()["predictions"][0]["explanation"].partition(",")[2]
        png = Image.open(io.BytesIO(base64.b64decode(data)))
        assert png.size == (112, 112) and png.mode == "RGB"
        # a heat map, not the grey image: colour differs between channels somewhere
        import numpy as np

        rgb = np.asarray(png).reshape(-1, 3)
        coloured = rgb[(rgb.max(1) != rgb.min(1))]
        assert len(np.unique(coloured, axis=0)) > 10
