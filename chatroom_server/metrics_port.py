"""/metrics on a port of its own (`--metrics-port`), served by `serve`'s main process.

Why the main process and prometheus-client's own WSGI server, not a second Sanic
listener: with several workers the main process is Sanic's manager, which serves
no request but outlives every worker, and the multiprocess registry (metrics.registry)
reads every worker's figures from PROMETHEUS_MULTIPROC_DIR, so one scrape sees the
whole host whichever worker is busy. With one worker the main process is the
worker and the registry is its own. A daemon thread: it stops with the process.
CHATROOM_METRICS_TOKEN, when set, is required here too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from . import metrics, protocol

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the next one


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape is noise; the public port logs no access lines either


def metrics_app(token: str | None) -> Wsgi:
    """/metrics (the Bearer token checked when set); every other path is a 404."""
    exposition = make_wsgi_app(metrics.registry())

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            return _error(start_response, 404, "Only /metrics is served here.")
        if not metrics.token_allows(environ.get("HTTP_AUTHORIZATION"), token):
            return _error(
                start_response, 401, "The metrics need the metrics token as a Bearer token."
            )
        body: Iterable[bytes] = exposition(environ, start_response)
        return body

    return app


def _error(start_response: StartResponse, status: int, message: str) -> list[bytes]:
    shape = protocol.error_json(status, message)
    body = json.dumps(shape).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if status == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    start_response(f"{status} {shape['description']}", headers)
    return [body]


def start_metrics_server(host: str, port: int, token: str | None) -> WSGIServer:
    """Listen now (an OSError if the address is taken) and serve from a daemon thread."""
    server = make_server(
        host, port, metrics_app(token), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    return server
