"""The HTTP service: a trained model behind ``POST /predict``, with ``GET /health``, ``GET /model``, OpenAPI
docs (``/docs``, ``/openapi.json``) and a page to try it at ``/`` (FastAPI; ``pip install 'resdense[serve]'``).

``POST /predict`` takes one or many images, as ``multipart/form-data`` (any field names, one file per part)
or as the raw bytes of one image (``Content-Type: image/*`` or ``application/octet-stream``), and answers
with the top classes, the same numbers as ``resdense predict`` (the same decoding, inversion rule and
:class:`~resdense.serve.predictor.Predictor`); requests are batched together under load
(:class:`~resdense.serve.batcher.MicroBatcher`).

Bad input is a 4xx with a one-line JSON body ``{"error": "..."}`` and the server keeps serving: an empty
body or no image (400), a file that is not an image, cut short, or a decompression bomb (422), a body
over ``max_upload_mb`` (413, refused from its Content-Length before it is read when it says so), more
images than ``max_batch`` (413), more decoded pixels than ``max_megapixels`` (413, read from the images'
headers before any is decoded: :mod:`resdense.serve.uploads`), a content type that is neither (415). The body is read into memory,
bounded by the limit, and parsed there (no temporary files): a client that goes away mid-upload leaves
nothing behind.

The explanation hook: ``create_app(..., explain=fn)`` with ``fn(predictor, image, class_index) -> PNG
bytes`` (an image: uint8 (1, C, H, W) as decoded, then reduced by the model's resize). ``GET /model`` then says ``"explain": true``, ``POST
/predict?explain=true`` adds ``"explanation"`` (a ``data:image/png;base64,...`` URL) to each prediction,
and the page shows it beside the image. Without ``fn`` the page leaves that panel out.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name types
# imported inside create_app (fastapi is optional), so they must be evaluated where they are written
import asyncio
import base64
import json
import math
from collections.abc import Callable
from functools import partial
from importlib import resources

from ..data.photo import decode_image
from ..errors import UserError
from ..version import __version__
from .batcher import MicroBatcher
from .card import model_card
from .predict import fill_top
from .telemetry import Gate, Telemetry
from .uploads import DEFAULT_MAX_MEGAPIXELS, PixelBudget, header_size, read_reduced, request_pixels

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_MEGAPIXELS",
    "DEFAULT_MAX_UPLOAD_MB",
    "check_limits",
    "create_app",
]

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_BATCH = 64
DEFAULT_BODY_TIMEOUT = 30.0  # seconds without a byte of the body before the upload is refused (408)
# every answer that is not a 200, with what causes it: the OpenAPI document lists them, each with its body
ERRORS = {
    400: "no image, an unreadable form, a Host that is not this server's, a client gone mid-upload",
    408: "the upload stalled: no data for the body timeout",
    413: "a body over --max-upload-mb, more images than --max-batch, more pixels than --max-megapixels",
    415: "a Content-Type that is neither multipart/form-data, image/* nor application/octet-stream",
    422: "a file that is not a readable image, a bad query parameter",
    500: "an error of the server's own (the body says which)",
}
RAW_TYPES = ("application/octet-stream",)  # and any image/*


class HTTPFail(Exception):
    """A bad request: its status and one line saying what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())  # one line, whatever the cause said


def _need_fastapi():
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (form parsing)
        import uvicorn  # noqa: F401
    except ImportError as e:
        name = "python-multipart" if e.name == "python_multipart" else e.name
        raise UserError(
            f"resdense serve needs fastapi, uvicorn and python-multipart ({name} is missing): "
            "pip install 'resdense[serve]'"
        ) from None


DRAIN_CAP = 64 * 2**20  # an over-limit body up to this size is read (and dropped) before the 413


async def read_body(request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT) -> bytes:
    """The request body, refused (413) once it is known to pass ``limit`` bytes, and (408) when no byte of
    it arrives for ``timeout`` seconds: a client that sends less than its Content-Length would otherwise
    hold its connection, and the memory of its partial body, forever.

    The refused body is read to its end and dropped, up to ``DRAIN_CAP`` bytes in all: a server that
    answers and closes while the client is still sending makes the client's socket see a reset instead
    of the 413 (measured: 1 request in 3,000 under load). A larger one is cut off at once."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    if declared is not None and declared > limit:
        message = f"upload of {declared:,} bytes is over the limit of {limit:,} (--max-upload-mb)"
    else:
        message = f"upload is over the limit of {limit:,} bytes (--max-upload-mb)"
    chunks, n, over = [], 0, declared is not None and declared > limit
    if over and declared > DRAIN_CAP:
        raise HTTPFail(413, message)
    stream = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise HTTPFail(408, f"the upload stalled: no data for {timeout:g} s") from None
            n += len(chunk)
            if n > limit:
                over, chunks = True, []
            if over and n > DRAIN_CAP:
                break
            if not over:
                chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPFail(400, "the client disconnected before the upload ended") from None
    if over:
        raise HTTPFail(413, message)
    return b"".join(chunks)


async def parse_uploads(request, body: bytes, max_batch: int, limit: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in the request: the parts of a multipart form, or the raw body."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        from starlette.formparsers import MultiPartException, MultiPartParser

        async def once():
            yield body

        parser = MultiPartParser(request.headers, once(), max_files=max_batch, max_fields=max_batch)
        parser.spool_max_size = limit + 1  # the body is already in memory and bounded: no temporary files
        try:
            form = await parser.parse()
        except MultiPartException as e:
            if "Too many" in str(e):
                raise HTTPFail(
                    413, f"too many images in one request: at most {max_batch} (--max-batch)"
                ) from None
            raise HTTPFail(400, f"unreadable multipart body ({e})") from None
        try:
            uploads = []
            for i, (field, value) in enumerate(form.multi_items()):
                if isinstance(value, str):  # a text field: not an image, and not what this endpoint takes
                    raise HTTPFail(422, f"form field {field!r} is text, not an image file")
                uploads.append((value.filename or f"{field}[{i}]", await value.read()))
            return uploads
        finally:
            await form.close()
    if kind in RAW_TYPES or kind.startswith("image/"):
        return [("image", body)] if body else []
    shown = kind or "none"
    raise HTTPFail(
        415, f"Content-Type {shown}: send multipart/form-data, image/*, or application/octet-stream"
    )


def check_limits(
    max_upload_mb: float,
    max_batch: int,
    body_timeout: float,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> int:
    """The service's limits checked (a one-line UserError naming the option); the upload limit in bytes."""
    if not (isinstance(max_upload_mb, int | float) and math.isfinite(max_upload_mb) and max_upload_mb > 0):
        raise UserError(
            f"--max-upload-mb must be positive (a finite number of megabytes), got {max_upload_mb!r}"
        )
    limit = int(max_upload_mb * 1024 * 1024)
    if limit < 1:
        raise UserError(f"--max-upload-mb must be positive and at least one byte, got {max_upload_mb:g}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise UserError(f"--max-batch must be at least 1 (a whole number), got {max_batch!r}")
    if not (isinstance(body_timeout, int | float) and math.isfinite(body_timeout) and body_timeout > 0):
        raise UserError(f"--body-timeout must be a positive number of seconds, got {body_timeout!r}")
    mpx = max_megapixels
    if not (isinstance(mpx, int | float) and math.isfinite(mpx) and int(mpx * 1e6) >= 1):
        raise UserError(f"--max-megapixels must be positive (at least one pixel, finite), got {mpx!r}")
    return limit


def create_app(
    predictor,
    *,
    source=None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_batch: int = DEFAULT_MAX_BATCH,
    batching: bool = True,
    explain: Callable | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    loopback_only: bool = False,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
):
    """The FastAPI app serving ``predictor`` (loaded from ``source``, which the model card describes).

    Args:
        predictor: the model, as :func:`resdense.serve.load_predictor` gives it.
        source: what it was loaded from (the model card and ``/metrics`` name it).
        max_upload_mb: the largest request body, in megabytes (413 above it).
        max_batch: the most images in one request (413 above it).
        batching: batch waiting requests together (:class:`~resdense.serve.batcher.MicroBatcher`).
        explain: the explanation hook (see the module docstring), or None.
        body_timeout: seconds without a byte of a request's body before it is refused (408).
        loopback_only: answer only requests whose Host header names this machine (a server bound to
            loopback: DNS rebinding cannot reach it from a web page).
        max_megapixels: the most decoded pixels in one request (413 above it, from the headers), and the
            most full-size pixels the server holds decoded at once (:class:`~.uploads.PixelBudget`)."""
    _need_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limit = check_limits(max_upload_mb, max_batch, body_timeout, max_megapixels)
    max_pixels = int(max_megapixels * 1e6)
    budget = PixelBudget(max_pixels)
    card = {
        **model_card(predictor, source),
        "explain": explain is not None,
        "limits": {"max_upload_mb": max_upload_mb, "max_batch": max_batch, "max_megapixels": max_megapixels},
    }
    spec = predictor.spec

    telemetry = Telemetry(spec.model, predictor.backend, str(source or ""), __version__)

    def run_model(images):
        telemetry.observe_batch(len(images))
        return predictor.predict_images(images)

    batcher = MicroBatcher(run_model, max_images=max(max_batch, predictor.batch_size)) if batching else None

    @asynccontextmanager
    async def lifespan(app):
        yield
        if batcher is not None:
            batcher.close()

    class AsciiJSON(JSONResponse):
        """JSON with every non-ASCII character escaped: a class or file name that is not valid UTF-8 (a
        surrogate escape from the file system) is sent as its escape, never a 500 from the encoder."""

        def render(self, content) -> bytes:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
                "ascii"
            )

    app = FastAPI(
        default_response_class=AsciiJSON,
        title="resdense",
        summary=f"{spec.model}: top classes for images",
        version=__version__,
        lifespan=lifespan,
        # FastAPI's Swagger UI and ReDoc load their scripts from a CDN; /docs is our own page (page/docs.html)
        docs_url=None,
        redoc_url=None,
    )
    app.state.predictor, app.state.batcher = predictor, batcher

    def fail(status: int, message: str) -> JSONResponse:
        return AsciiJSON({"error": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        # never a plain-text 500: the server's own error, said in one JSON line (the traceback stays in the
        # server's log, where Starlette's error middleware writes it)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return fail(500, f"internal error: {type(exc).__name__}" + (f": {first}" if first else ""))

    @app.exception_handler(HTTPFail)
    async def _fail(request, exc: HTTPFail):
        return fail(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return fail(422, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        return fail(exc.status_code, exc.detail if isinstance(exc.detail, str) else "bad request")

    from pydantic import BaseModel, ConfigDict, Field

    class ErrorAnswer(BaseModel):
        error: str = Field(description="what is wrong, in one line")

    class TopClass(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        class_: str = Field(alias="class", description="the class name")
        probability: float

    class Prediction(BaseModel):
        path: str = Field(description="the file name sent (or image, for a raw body)")
        top: list[TopClass]
        inverted: bool = Field(False, description="a dark-on-light image was inverted first")
        explanation: str | None = Field(None, description="a data:image/png URL, with ?explain=true")

    class PredictAnswer(BaseModel):
        model: str
        predictions: list[Prediction]

    def described(*codes: int) -> dict:
        return {c: {"model": ErrorAnswer, "description": ERRORS[c]} for c in codes}

    errors = described(*ERRORS)

    @app.get(
        "/health", summary="whether the server is up and its model loaded", responses=described(400, 500)
    )
    async def health():
        return {"status": "ok", "model": spec.model}

    @app.get(
        "/model",
        summary="the model card: architecture, classes, preprocessing, training, limits",
        responses=described(400, 500),
    )
    async def model():
        return card

    @app.post(
        "/predict",
        summary="top classes for one or many images",
        description="Send images as multipart/form-data (one file per part, any field name) or the raw "
        "bytes of one image (Content-Type image/* or application/octet-stream).",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                            },
                        }
                    },
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        response_model=None,
        responses={200: {"model": PredictAnswer, "description": "the top classes of each image"}, **errors},
    )
    async def predict(
        request: Request,
        top: int = Query(3, ge=1, le=1000, description="how many classes per image"),
        invert: str = Query("auto", pattern="^(auto|yes|no)$", description="as resdense predict --invert"),
        explain_: bool = Query(False, alias="explain", description="add an explanation map (if served)"),
    ):
        if explain_ and explain is None:
            raise HTTPFail(400, "explain: this server has no explanation maps")
        body = await read_body(request, limit, body_timeout)
        uploads = await parse_uploads(request, body, max_batch, limit)
        if not uploads:
            raise HTTPFail(400, "no image in the request (empty body or no file parts)")
        if len(uploads) > max_batch:
            raise HTTPFail(413, f"too many images in one request: at most {max_batch} (--max-batch)")
        sizes = [header_size(data) for _, data in uploads]
        pixels = request_pixels(spec.preprocess, sizes)
        if pixels > max_pixels:
            raise HTTPFail(
                413,
                f"{pixels:,} decoded pixels in one request: over the limit of {max_pixels:,} (--max-megapixels)",
            )
        sources = [(name, partial(decode_image, data, name=name)) for name, data in uploads]
        del uploads, body  # the bytes live on in the sources only (bounded by --max-upload-mb)
        results, images = await run_in_threadpool(read_reduced, spec, sources, sizes, invert, budget)
        bad = [r for r in results if r.error]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise HTTPFail(422, bad[0].error + more)
        try:
            logits = await batcher.submit(images) if batcher else await run_in_threadpool(run_model, images)
        except UserError as e:
            raise HTTPFail(422, str(e)) from None
        fill_top(results, logits, spec.classes, top)
        out = [r.to_json() for r in results]
        if explain_:
            for r, image, logit in zip(out, images, logits):
                png = await run_in_threadpool(explain, predictor, image, int(logit.argmax()))
                r["explanation"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return {"model": spec.model, "predictions": out}

    page = resources.files(__package__).joinpath("page")

    def asset(name: str, media: str) -> Response:
        return Response(page.joinpath(name).read_bytes(), media_type=media)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return asset("index.html", "text/html; charset=utf-8")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return asset("docs.html", "text/html; charset=utf-8")

    @app.get("/page.js", include_in_schema=False)
    async def script():
        return asset("page.js", "text/javascript; charset=utf-8")

    @app.get("/page.css", include_in_schema=False)
    async def style():
        return asset("page.css", "text/css; charset=utf-8")

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return asset("favicon.svg", "image/svg+xml")

    @app.get(
        "/metrics",
        summary="Prometheus metrics: requests, errors by status, latency, batch sizes, the model",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **described(400, 500)},
    )
    async def metrics():
        body, media = telemetry.exposition()
        return Response(body, media_type=media)

    app.state.telemetry = telemetry
    routes = {r.path for r in app.routes if hasattr(r, "path")}
    app.add_middleware(Gate, telemetry=telemetry, routes=routes, loopback_only=loopback_only)
    return app
