"""``resdense serve``: a trained model behind an HTTP API, with a page to try it (``resdense.serve.http``)."""

from __future__ import annotations

from .predict import add_weights_args


def add_parser(sub) -> None:
    from ..serve.http import (
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_MAX_BATCH,
        DEFAULT_MAX_MEGAPIXELS,
        DEFAULT_MAX_UPLOAD_MB,
    )

    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: POST /predict, GET /health, GET /model, a page at /",
        description="Serve a run folder, model file (.safetensors, .onnx, TorchScript) or --weights over HTTP "
        "(needs the serve extra: pip install 'resdense[serve]'). POST /predict takes images as multipart or "
        "raw bytes and answers with the top classes as JSON; the page at / lets a person try it; OpenAPI "
        "docs at /docs.",
    )
    p.add_argument(
        "model", metavar="RUN_OR_MODEL_FILE", nargs="?", help="run folder or model file (or --weights)"
    )
    add_weights_args(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"largest request body accepted (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"most images in one request (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        metavar="MPX",
        help="most decoded pixels in one request, read from the images' headers (413 above it), and the most "
        f"full-size pixels the server holds decoded at once (default {DEFAULT_MAX_MEGAPIXELS:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="S",
        help=f"seconds without a byte of a request's body before it is refused with 408 (default {DEFAULT_BODY_TIMEOUT:g})",
    )
    p.add_argument(
        "--access-log",
        choices=("json", "none"),
        default="json",
        help="one JSON line per request on stderr (time, client, method, path, status, seconds, bytes), or none",
    )
    p.add_argument(
        "--no-batching",
        action="store_true",
        help="run each request on its own instead of batching waiting requests together",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..errors import UserError
    from ..serve.http import check_limits, create_app
    from ..serve.telemetry import ACCESS_LOGGER, is_loopback_host
    from ..utils.device import resolve_device
    from .predict import load_model_for

    # before the model is loaded
    check_limits(args.max_upload_mb, args.max_batch, args.body_timeout, args.max_megapixels)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0-65535, got {args.port}")
    if args.weights is not None and args.model is not None:
        raise UserError(f"give either a run/model file ({args.model}) or --weights, not both")
    from ..serve.explain import can_explain, overlay_png

    predictor = load_model_for(args, str(resolve_device(args.device)))
    app = create_app(
        predictor,
        source=args.model or args.weights,
        max_upload_mb=args.max_upload_mb,
        max_batch=args.max_batch,
        batching=not args.no_batching,
        explain=overlay_png if can_explain(predictor) else None,
        body_timeout=args.body_timeout,
        max_megapixels=args.max_megapixels,
        # bound to loopback: only requests naming this machine are answered (DNS rebinding)
        loopback_only=is_loopback_host(args.host),
    )
    import logging

    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False
    if args.access_log == "json" and not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    import socket

    import uvicorn

    try:  # bound here so that a busy port is one line, and so that port 0's choice can be printed
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)  # listening before the line below: a client that reads it can connect at once
    except OSError as e:
        raise UserError(
            f"--host {args.host} --port {args.port}: cannot listen there ({e.strerror or e})"
        ) from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {predictor.spec.model} ({predictor.backend}) at http://{shown}:{port}/ (page), "
        f"/predict, /health, /model, /docs; Ctrl-C stops",
        flush=True,
    )
    if not is_loopback_host(args.host):
        print(f"note: listening on {args.host}, reachable from other machines", file=sys.stderr)
    # uvicorn's own graceful stop on SIGTERM/SIGINT: it stops listening, answers the requests in flight
    # (no timeout: none is dropped), then runs the app's shutdown (the batcher closes after its last batch)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    import contextlib
    import signal

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done, under the handler
    # that was there before it: with the default one a SIGTERM would then kill the process (exit -15,
    # "stopped" never said) after every request had been answered. Ours turns it into a clean exit 0.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with contextlib.suppress(KeyboardInterrupt, Stopped):  # Ctrl-C: re-raised likewise
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return 0
