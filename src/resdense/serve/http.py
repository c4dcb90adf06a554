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
images than ``max_batch`` (413), a content type that is neither (415). The body is read into memory,
bounded by the limit, and parsed there (no temporary files): a client that goes away mid-upload leaves
nothing behind.

The explanation hook: ``create_app(..., explain=fn)`` with ``fn(predictor, image, class_index) -> PNG
bytes`` (an image: uint8 (1, C, H, W) as decoded). ``GET /model`` then says ``"explain": true``, ``POST
/predict?explain=true`` adds ``"explanation"`` (a ``data:image/png;base64,...`` URL) to each prediction,
and the page shows it beside the image. Without ``fn`` the page leaves that panel out.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name types
# imported inside create_app (fastapi is optional), so they must be evaluated where they are written
import base64
from collections.abc import Callable
from functools import partial
from importlib import resources

from ..data.photo import decode_image
from ..errors import UserError
from ..version import __version__
from .batcher import MicroBatcher
from .card import model_card
from .predict import fill_top, read_sources

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_UPLOAD_MB", "create_app"]

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_BATCH = 64
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


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) once it is known to pass ``limit`` bytes.

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
    try:
        async for chunk in request.stream():
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


def create_app(
    predictor,
    *,
    source=None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_batch: int = DEFAULT_MAX_BATCH,
    batching: bool = True,
    explain: Callable | None = None,
):
    """The FastAPI app serving ``predictor`` (loaded from ``source``, which the model card describes)."""
    _need_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limit = int(max_upload_mb * 1024 * 1024)
    card = {
        **model_card(predictor, source),
        "explain": explain is not None,
        "limits": {"max_upload_mb": max_upload_mb, "max_batch": max_batch},
    }
    spec = predictor.spec

    def run_model(images):
        return predictor.predict_images(images)

    batcher = MicroBatcher(run_model, max_images=max(max_batch, predictor.batch_size)) if batching else None

    @asynccontextmanager
    async def lifespan(app):
        yield
        if batcher is not None:
            batcher.close()

    app = FastAPI(
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
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

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

    @app.get("/health", summary="whether the server is up and its model loaded")
    async def health():
        return {"status": "ok", "model": spec.model}

    @app.get("/model", summary="the model card: architecture, classes, preprocessing, training, limits")
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
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                }
            }
        },
    )
    async def predict(
        request: Request,
        top: int = Query(3, ge=1, le=1000, description="how many classes per image"),
        invert: str = Query("auto", pattern="^(auto|yes|no)$", description="as resdense predict --invert"),
        explain_: bool = Query(False, alias="explain", description="add an explanation map (if served)"),
    ):
        if explain_ and explain is None:
            raise HTTPFail(400, "explain: this server has no explanation maps")
        body = await read_body(request, limit)
        uploads = await parse_uploads(request, body, max_batch, limit)
        if not uploads:
            raise HTTPFail(400, "no image in the request (empty body or no file parts)")
        if len(uploads) > max_batch:
            raise HTTPFail(413, f"too many images in one request: at most {max_batch} (--max-batch)")
        sources = [(name, partial(decode_image, data, name=name)) for name, data in uploads]
        results, images = await run_in_threadpool(read_sources, spec, sources, invert)
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

    return app
