"""The daemon's HTTP endpoints, on the standard library's threaded HTTP server.

=============  ==============================================================
``/``          the status page (HTML, read-only: :mod:`.page`), when one is given
``/metrics``   the Prometheus text format
``/healthz``   200 while the process runs and its main loop turns, else 503
``/readyz``    200 when ready; 503 with ``{"ready": false, "problems": {...}}``
``/status``    the daemon's status document (JSON)
=============  ==============================================================

Every answer is computed by a function handed in; this module only speaks HTTP.
It listens on loopback unless told otherwise (``[metrics] bind_host``). Only GET
is served: nothing here changes anything; any other method is refused (501).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nova_autopilot.daemon.health import Readiness
from nova_autopilot.logs import get_logger

__all__ = ["Endpoints"]

log = get_logger(__name__)

JSON = "application/json"
HTML = "text/html; charset=utf-8"


class Endpoints:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Callable[[], tuple[bytes, str]],
        alive: Callable[[], bool],
        readiness: Callable[[], Readiness],
        status: Callable[[], Mapping[str, Any]],
        page: Callable[[], bytes] | None = None,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, bytes, str]]] = {
            "/metrics": lambda: (200, *metrics()),
            "/healthz": lambda: _health(alive()),
            "/readyz": lambda: _ready(readiness()),
            "/status": lambda: (200, _json(status()), JSON),
        }
        if page is not None:
            routes["/"] = lambda: (200, page(), HTML)
        handler = type("Handler", (_Handler,), {"routes": routes})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="autopilot-http",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and the real port (the one the system chose for port 0)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        host, port = self.address
        log.info("endpoints.listening", host=host, port=port, url=self.url)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5.0)
        self._server.server_close()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode("utf-8") + b"\n"


def _health(alive: bool) -> tuple[int, bytes, str]:
    return (200, b"ok\n", "text/plain") if alive else (503, b"main loop stalled\n", "text/plain")


def _ready(readiness: Readiness) -> tuple[int, bytes, str]:
    return (200 if readiness.ready else 503), _json(readiness.as_dict()), JSON


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Callable[[], tuple[int, bytes, str]]]
    server_version = "nova-autopilot"

    def do_GET(self) -> None:  # the name http.server dispatches to
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, _json({"error": f"no such endpoint: {self.path}"}), JSON)
            return
        try:
            status, body, content_type = route()
        except Exception as exc:  # a failing endpoint must not kill the server
            log.exception("endpoints.failed", path=self.path)
            self._send(500, _json({"error": f"{type(exc).__name__}: {exc}"}), JSON)
            return
        self._send(status, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes and probes every few seconds would flood the log
