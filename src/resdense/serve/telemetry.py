"""What the HTTP service tells its operator, and the door it keeps: Prometheus metrics (``GET /metrics``),
one JSON line per request in the access log, and the Host check of a server bound to loopback.

All three sit in one plain ASGI middleware (:class:`Gate`) around the FastAPI app, so that every answer is
counted and logged, the ones FastAPI's own handlers or Starlette's error middleware give included.
Metrics go to a registry the app owns (not prometheus-client's global one): two apps in one process (the
tests, a notebook) count apart.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from datetime import datetime, timezone

__all__ = ["ACCESS_LOGGER", "Gate", "Telemetry", "is_loopback_host"]

ACCESS_LOGGER = "resdense.access"
# seconds: a CPU answers one small image in milliseconds, a batch of large photos in seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Telemetry:
    """The service's Prometheus metrics, in a registry of its own.

    - ``resdense_requests_total{path, method, status}``: answers given;
    - ``resdense_errors_total{status}``: answers with a 4xx or 5xx status;
    - ``resdense_request_seconds{path}``: a histogram of the time from a request's start to its answer;
    - ``resdense_batch_images``: a histogram of images per forward pass (requests batched together);
    - ``resdense_images_total``: images predicted;
    - ``resdense_model_info{model, backend, source, version}``: what is served."""

    def __init__(self, model: str, backend: str, source: str, version: str):
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "resdense_requests",
            "HTTP answers, by route, method and status",
            ["path", "method", "status"],
            registry=r,
        )
        self.errors = Counter(
            "resdense_errors", "HTTP answers with a 4xx or 5xx status", ["status"], registry=r
        )
        self.latency = Histogram(
            "resdense_request_seconds", "seconds from a request's start to its answer", ["path"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            "resdense_batch_images", "images per forward pass of the model", buckets=BATCH_BUCKETS, registry=r
        )
        self.images = Counter("resdense_images", "images predicted", registry=r)
        Info("resdense_model", "the model served", registry=r).info(
            {"model": model, "backend": backend, "source": source, "version": version}
        )

    def observe_batch(self, n: int) -> None:
        self.batch.observe(n)
        self.images.inc(n)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, path: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(path, method, str(status)).inc()
        self.latency.labels(path).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()


def is_loopback_host(host: str) -> bool:
    """Whether a Host header's name (port stripped) is this machine's own: ``localhost`` (and
    ``*.localhost``, RFC 6761) or a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:  # 127.0.0.1:8000, localhost:8000
        name = name.split(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Gate:
    """ASGI middleware: the Host check (``loopback_only``: a server bound to loopback answers only requests
    that name a loopback host, so a web page on another site cannot reach it through DNS rebinding), then
    the app, each answer counted in ``telemetry`` and logged as one JSON line (``resdense.access``, INFO)."""

    def __init__(self, app, telemetry: Telemetry, *, routes: set[str], loopback_only: bool = False):
        self.app, self.telemetry, self.routes, self.loopback_only = app, telemetry, routes, loopback_only
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        answer = {"status": 500, "bytes": 0}

        async def counted(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        try:
            if self.loopback_only and host and not is_loopback_host(host):
                await self.refuse(
                    counted, 400, f"Host {host!r} is not this server's (it listens on loopback only)"
                )
            else:
                await self.app(scope, receive, counted)
        finally:
            # a path the app does not route is counted as "other": the label's values stay few
            path = scope.get("path", "")
            label = path if path in self.routes else "other"
            seconds = time.perf_counter() - start
            self.telemetry.record(label, scope.get("method", ""), answer["status"], seconds)
            if self.log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("", 0)
                self.log.info(
                    json.dumps(
                        {
                            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                            "client": client[0],
                            "method": scope.get("method"),
                            "path": path,
                            "query": scope.get("query_string", b"").decode("latin-1"),
                            "status": answer["status"],
                            "seconds": round(seconds, 6),
                            "bytes_in": int(headers.get(b"content-length", b"0") or 0)
                            if headers.get(b"content-length", b"").isdigit()
                            else None,
                            "bytes_out": answer["bytes"],
                        }
                    )
                )

    @staticmethod
    async def refuse(send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
