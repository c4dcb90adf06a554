"""``resdense serve`` ready for production (issue 35; issue 37's service gates): an OpenAPI document that
validates and declares every answer the server gives, ``/metrics`` that counts what a load sent, JSON
access logs, a graceful stop on SIGTERM that drops nothing, the Host check on loopback, a body-read
timeout, validated limits, and JSON (never plain text) for a crash or a name that is not UTF-8."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resdense.cli import main
from resdense.serve import load_predictor
from resdense.serve.http import ERRORS, create_app
from resdense.serve.telemetry import ACCESS_LOGGER, is_loopback_host
from resdense.utils.outputs import escape_name

from .live import PredictorStandIn, live_server, noise, png_bytes


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("fashion-mnist", weights=True)


def image() -> bytes:
    return png_bytes(noise(28, 28, 1, seed=3))


def raw_exchange(
    url: str, request: bytes, *, then: bytes = b"", pause: float = 0.0, timeout: float = 20
) -> bytes:
    """Send ``request`` over a plain socket (``then`` after ``pause`` seconds) and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        if then:
            time.sleep(pause)
            s.sendall(then)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(v)
                    for k, v in (h.split(b":", 1) for h in head.split(b"\r\n")[1:])
                    if k.lower() == b"content-length"
                ]
                if length and len(body) >= length[0]:
                    break
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_openapi_validates_and_declares_every_answer_given(predictor):
    """Bad requests of every kind, and a crash: each status the server answers is declared for /predict
    with the JSON error schema, and the document validates (openapi-spec-validator)."""
    from openapi_spec_validator import validate

    app = create_app(
        predictor,
        source="fashion-mnist",
        max_upload_mb=0.01,
        max_batch=2,
        body_timeout=0.5,
        loopback_only=True,
    )
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        spec = client.get("/openapi.json").json()
        validate(spec)
        given = {
            client.post("/predict", content=b"", headers={"content-type": "image/png"}).status_code,  # 400
            client.post("/predict", content=b"x", headers={"content-type": "text/plain"}).status_code,  # 415
            client.post(
                "/predict", content=b"x" * 20_000, headers={"content-type": "image/png"}
            ).status_code,  # 413
            client.post(
                "/predict", content=b"not an image", headers={"content-type": "image/png"}
            ).status_code,  # 422
            client.post(
                "/predict?top=0", content=image(), headers={"content-type": "image/png"}
            ).status_code,  # 422
            client.get("/health", headers={"host": "evil.example"}).status_code,  # 400
            status_of(
                raw_exchange(
                    url,
                    b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: 500\r\n\r\nabc",
                )
            ),  # 408
        }
        broken = create_app(_Broken(predictor), source="x")
    with live_server(broken) as (url2, _), httpx.Client(base_url=url2, timeout=30) as client:
        crash = client.post("/predict", content=image(), headers={"content-type": "image/png"})
        given.add(crash.status_code)
    assert given == {400, 408, 413, 415, 422, 500}
    assert crash.headers["content-type"].startswith("application/json")
    assert crash.json()["error"].startswith("internal error: RuntimeError")
    post = spec["paths"]["/predict"]["post"]
    assert set(post["requestBody"]["content"]) >= {
        "multipart/form-data",
        "image/*",
        "application/octet-stream",
    }
    declared = {int(code) for code in post["responses"]}
    assert declared == {200, *ERRORS} and given <= declared
    for code in ERRORS:
        ref = post["responses"][str(code)]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorAnswer")
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert (
        answer.endswith("/PredictAnswer")
        and "predictions" in spec["components"]["schemas"]["PredictAnswer"]["properties"]
    )
    assert "/metrics" in spec["paths"]


class _Broken(PredictorStandIn):
    """A predictor whose model call fails with an error of the server's own."""

    def predict_images(self, images):
        raise RuntimeError("the model's file vanished")


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_count_what_a_load_sent(predictor, caplog):
    app = create_app(predictor, source="fashion-mnist", max_batch=4)
    good, bad, threads = 12, 5, []
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER), live_server(app) as (url, _):

        def send(i):
            with httpx.Client(base_url=url, timeout=60) as c:
                if i < good:
                    files = [("f", (f"{i}-{k}.png", image(), "image/png")) for k in range(1 + i % 3)]
                    assert c.post("/predict", files=files).status_code == 200
                else:
                    assert (
                        c.post("/predict", content=b"junk", headers={"content-type": "image/png"}).status_code
                        == 422
                    )

        for i in range(good + bad):
            threads.append(threading.Thread(target=send, args=(i,)))
            threads[-1].start()
        for t in threads:
            t.join()
        text = httpx.get(url + "/metrics").text
    images_sent = sum(1 + i % 3 for i in range(good))
    assert metric(text, "resdense_requests_total", path="/predict", status="200") == good
    assert metric(text, "resdense_requests_total", path="/predict", status="422") == bad
    assert metric(text, "resdense_errors_total", status="422") == bad
    assert metric(text, "resdense_request_seconds_count", path="/predict") == good + bad
    assert metric(text, "resdense_images_total") == images_sent
    assert metric(text, "resdense_batch_images_sum") == images_sent
    assert 1 <= metric(text, "resdense_batch_images_count") <= good
    assert metric(text, "resdense_model_info", model="resnet20", source="fashion-mnist") == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    predicted = [x for x in lines if x["path"] == "/predict"]
    assert len(predicted) == good + bad and sorted({x["status"] for x in predicted}) == [200, 422]
    assert all(x["method"] == "POST" and x["seconds"] >= 0 and x["bytes_out"] > 0 for x in predicted)


def test_host_check_on_loopback(predictor):
    app = create_app(predictor, source="fashion-mnist", loopback_only=True)
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 200  # httpx sends Host: 127.0.0.1:PORT
        for host in ("localhost:8000", "127.0.0.2", "[::1]:80", "app.localhost"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        refused = client.get("/health", headers={"host": "attacker.example:8000"})
        assert refused.status_code == 400 and "attacker.example" in refused.json()["error"]
    open_app = create_app(predictor, source="fashion-mnist")  # bound elsewhere: any Host
    with live_server(open_app) as (url, _):
        assert httpx.get(url + "/health", headers={"host": "my-server.example"}).status_code == 200
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and not is_loopback_host("10.0.0.1")


def test_a_stalled_body_is_answered_408_not_held(predictor):
    app = create_app(predictor, source="fashion-mnist", body_timeout=0.5)
    with live_server(app) as (url, _):
        start = time.monotonic()
        answer = raw_exchange(
            url,
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
        assert status_of(answer) == 408 and b"stalled" in answer
        assert time.monotonic() - start < 15
        assert httpx.get(url + "/health").status_code == 200  # and it keeps serving


def test_names_that_are_not_utf8_are_escaped_not_a_crash(predictor):
    from dataclasses import replace

    inner = load_predictor("fashion-mnist", weights=True)
    inner.spec = replace(inner.spec, classes=["bad\udcffname", *inner.spec.classes[1:]])
    app = create_app(inner, source="run")
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        card = client.get("/model")
        assert card.status_code == 200 and card.json()["classes"][0] == "bad\udcffname"
        answer = client.post("/predict?top=10", files=[("f", ("a.png", image(), "image/png"))])
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        # names are written escaped one way everywhere (utils.outputs.escape_name: a non-UTF-8 byte as \xNN)
        assert escape_name("bad\udcffname") in [t["class"] for t in answer.json()["predictions"][0]["top"]]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--max-upload-mb", "nan"], "--max-upload-mb must be positive"),
        (["--max-upload-mb", "inf"], "--max-upload-mb must be positive"),
        (["--max-upload-mb", "1e-9"], "at least one byte"),
        (["--body-timeout", "0"], "--body-timeout"),
    ],
)
def test_limits_are_validated(argv, fragment, capsys):
    assert main(["serve", "--weights", "fashion-mnist", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("resdense serve: error: ") and fragment in err and "\n" not in err


def test_sigterm_under_load_drops_nothing(tmp_path):
    """``resdense serve`` in its own process: a request half sent, eight more in flight, then SIGTERM; every
    one is answered 200 and the process ends 0, having logged one JSON line per request."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resdense", "serve", "--weights", "fashion-mnist", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split("/ ")[0]
        assert httpx.get(url + "/health", timeout=30).status_code == 200
        body = image()
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        half = {}
        slow = threading.Thread(
            target=lambda: half.update(
                answer=raw_exchange(url, head.encode() + body[:50], then=body[50:], pause=1.5)
            )
        )
        slow.start()
        answers = []

        def send():
            with httpx.Client(timeout=60) as c:
                answers.append(
                    c.post(url + "/predict", files=[("f", ("a.png", image(), "image/png"))] * 8).status_code
                )

        load = [threading.Thread(target=send) for _ in range(8)]
        for t in load:
            t.start()
        time.sleep(0.5)  # the half-sent request is in flight, the others arriving
        proc.send_signal(signal.SIGTERM)
        for t in [*load, slow]:
            t.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        assert answers == [200] * 8
        assert status_of(half["answer"]) == 200 and b'"predictions"' in half["answer"]
        assert "stopped" in proc.stdout.read()
        logged = [json.loads(x) for x in proc.stderr.read().splitlines() if x.startswith("{")]
        assert sum(x["path"] == "/predict" and x["status"] == 200 for x in logged) == 9
    finally:
        if proc.poll() is None:
            proc.kill()
