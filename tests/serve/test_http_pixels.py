"""The service's memory bound (issue 37 item 1, the service's part): decoded pixels capped per request from
the images' headers before anything is decoded (413 naming the limit), each image reduced to the model's
resize right after it is decoded (the batch never holds a full-size decode, answers unchanged), and a
server-wide budget of full-size pixels held at once."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
import torch

from resdense.cli import main
from resdense.preprocess import Preprocess
from resdense.serve import load_predictor
from resdense.serve.http import create_app
from resdense.serve.uploads import PixelBudget, header_size, reduced, request_pixels

from .live import PredictorStandIn, bomb_png, live_server, noise, png_bytes


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("fashion-mnist", weights=True)


class _Recording(PredictorStandIn):
    """The predictor, recording the sizes of the images each model call is handed."""

    def __init__(self, inner):
        super().__init__(inner)
        self.seen = []

    def predict_images(self, images):
        self.seen += [tuple(im.shape) for im in images]
        return self.inner.predict_images(images)


def _png(side: int) -> bytes:
    return png_bytes(np.zeros((side, side), np.uint8))  # compresses to almost nothing: bytes bound nothing


def test_pixels_over_the_cap_are_413_from_the_headers_before_decoding(predictor, monkeypatch):
    """Four blank 2000x2000 PNGs (a few KB on the wire, 16 M pixels) against a 10-megapixel cap: 413 JSON
    naming the option, and no image decoded (the decoder is never called)."""
    import resdense.serve.http as http

    decoded = []
    real = http.decode_image
    monkeypatch.setattr(http, "decode_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    files = [("files", (f"blank{i}.png", _png(2000), "image/png")) for i in range(4)]
    app = create_app(predictor, source="fashion-mnist", max_megapixels=10)
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/predict", files=files)
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/json")
        error = r.json()["error"]
        assert "16,000,000 decoded pixels" in error and "10,000,000" in error and "--max-megapixels" in error
        assert decoded == []
        assert client.get("/model").json()["limits"]["max_megapixels"] == 10
        # under the cap the same images are answered
        ok = client.post("/predict", files=files[:2])
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["predictions"]) == 2


def test_a_header_claiming_more_than_the_cap_is_refused_unread(predictor):
    """A PNG header claiming 5000x5000 with no pixel data behind it: the cap refuses it from the header
    (413), where today's server tries to decode it (a 422 for the cut-short file)."""
    app = create_app(predictor, source="fashion-mnist", max_megapixels=20)
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/predict", content=bomb_png(5000), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "--max-megapixels" in r.json()["error"]


def test_the_batch_holds_reduced_images_and_answers_do_not_change(predictor):
    """A 600x400 colour photo and a 28x28 one: the model call is handed each at the model's 28x28 (never the
    full-size decode), and the answer is the one the full-size image gives."""
    recording = _Recording(predictor)
    big, small = noise(400, 600, 3, seed=5), noise(28, 28, 1, seed=6)
    app = create_app(recording, source="fashion-mnist", batching=False)
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        files = [
            ("a", ("big.png", png_bytes(big), "image/png")),
            ("b", ("small.png", png_bytes(small), "image/png")),
        ]
        r = client.post("/predict", files=files, params={"top": 10, "invert": "no"})
    assert r.status_code == 200, r.text
    assert recording.seen == [(1, 1, 28, 28), (1, 1, 28, 28)]
    from resdense.data.photo import decode_image

    full = [decode_image(png_bytes(a), 1) for a in (big, small)]
    probs = predictor.predict_images(full).softmax(1)
    for p, row in zip(r.json()["predictions"], probs):
        got = {t["class"]: t["probability"] for t in p["top"]}
        want = {predictor.spec.classes[i]: float(v) for i, v in enumerate(row)}
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("fit", ["squash", "shorter"])
@pytest.mark.parametrize(("h", "w"), [(97, 203), (300, 41), (32, 32), (5, 900)])
def test_reduced_then_fitted_is_fitted_exactly(fit, h, w):
    """The reduction is the first step of the fit: fitting the reduced image gives the same pixels, and its
    size is the one counted from the header."""
    pre = Preprocess(resize=36, crop=32, fit=fit, mean=(0.5,) * 3, std=(0.25,) * 3, in_chans=3)
    image = torch.from_numpy(noise(h, w, 3, seed=h * w)).permute(2, 0, 1)[None].contiguous()
    small = reduced(pre, image)
    assert torch.equal(pre.fit_images(small), pre.fit_images(image))
    assert request_pixels(pre, [(w, h)]) == max(w * h, small.shape[-1] * small.shape[-2])


def test_header_size_reads_without_decoding():
    assert header_size(bomb_png(9000)) == (9000, 9000)  # 81 M pixels claimed, 100 bytes read
    assert header_size(bomb_png(40_000)) is None  # over Pillow's bomb limit: the decoder's 422 says so
    assert header_size(b"not an image") is None


def test_the_pixel_budget_makes_a_decode_wait_for_the_pixels():
    """Two decodes of 60 pixels against a budget of 100: the second waits until the first gives its back."""
    budget, order = PixelBudget(100), []
    assert budget.take(60) == 60
    started = threading.Event()

    def second():
        started.set()
        budget.take(60)
        order.append("second took")

    t = threading.Thread(target=second)
    t.start()
    started.wait()
    t.join(timeout=0.2)
    order.append("first gives")
    budget.give(60)
    t.join()
    assert order == ["first gives", "second took"] and budget.free == 40
    # more than the whole budget (refused from its header anyway): clipped to it, never a wait forever
    assert PixelBudget(100).take(500) == 100


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-3", "1e-9"])
def test_max_megapixels_is_validated(value, capsys):
    assert main(["serve", "--weights", "fashion-mnist", "--max-megapixels", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("resdense serve: error: ") and "--max-megapixels" in err and "\n" not in err


def test_concurrent_requests_take_turns_with_their_full_size_decodes(predictor, monkeypatch):
    """A budget of 50,000 pixels and four requests at once, each one 200x200 image (40,000): each request is
    within the cap, but no two decodes are ever held at once."""
    import time

    import resdense.serve.uploads as uploads

    active, most, lock = [0], [0], threading.Lock()
    real = uploads.read_sources

    def counting(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)  # long enough for the other requests' threads to arrive while this one decodes
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(uploads, "read_sources", counting)
    app = create_app(predictor, source="fashion-mnist", max_megapixels=0.05)
    body = png_bytes(noise(200, 200, 1, seed=9))
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        send = lambda: client.post("/predict", content=body, headers={"content-type": "image/png"})  # noqa: E731
        threads = [threading.Thread(target=lambda: codes.append(send().status_code)) for _ in range(4)]
        codes: list[int] = []
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 4 and most[0] == 1
