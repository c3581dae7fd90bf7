"""The sandbox's HTTP server: a real server on a loopback port, in a background thread.

Standard library only (``ThreadingHTTPServer``, one thread per connection,
HTTP/1.1 keep-alive). For each request it finds the route, counts it,
negotiates the microversion, identifies the caller from ``X-Auth-Token``,
lets an injected HTTP fault answer instead if one matches, and otherwise
calls the route's handler. Errors are answered as Nova answers them. Every
write call to a server (any method but GET under ``/v2.1/servers/{id}``) is
also counted for that server once answered, whatever the answer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nova_autopilot.sandbox import errors, microversion
from nova_autopilot.sandbox.api import action_name
from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.faults import FaultBook
from nova_autopilot.sandbox.model import new_request_id
from nova_autopilot.sandbox.request_counts import RequestCounts
from nova_autopilot.sandbox.web import Request, Response, Route, Router

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_sandbox"
_UNVERSIONED = ("/",)
_NO_AUTH = ("/", "/v2.1")
_SERVER_PATH = re.compile(r"^/v2\.1/servers/(?P<server_id>[^/]+)(?P<rest>/.*)?$")
_READS = ("GET", "HEAD")


class HttpServer:
    """Serves the compute API routes and the sandbox's admin routes."""

    def __init__(
        self,
        *,
        routes: Sequence[Route],
        admin_routes: Sequence[Route],
        faults: FaultBook,
        counts: RequestCounts,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._router = Router(routes)
        self._admin = Router(admin_routes)
        self._faults = faults
        self._counts = counts
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._server is None:
            raise RuntimeError("the sandbox's HTTP server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        if self._server is not None:
            return
        handler = type("SandboxHandler", (_Handler,), {"app": self})
        server = ThreadingHTTPServer(self._address, handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-http"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- one request -------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Response:
        arrived = time.monotonic()
        split = urlsplit(target)
        path = split.path or "/"
        if path.startswith(ADMIN_PREFIX):
            return self._answer(method, path, split.query, headers, raw, admin=True)
        response = self._answer(method, path, split.query, headers, raw, admin=False)
        if method not in _READS:
            written = _server_write(method, path, raw, self._router)
            if written is not None:
                self._counts.written(*written, response.status, arrived)
        return response

    def _answer(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        admin: bool,
    ) -> Response:
        query = parse_qs(query_string, keep_blank_values=True)
        request_id = new_request_id()
        host = next((v for k, v in headers.items() if k.lower() == "host"), None)
        base = f"http://{host}" if host else self.url
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self._error(errors.bad_request("Malformed request body"), None, request_id)
        request = Request(method, path, query, headers, body, base)
        if admin:
            return self._dispatch(self._admin, request, None, request_id, count=False)
        return self._dispatch(self._router, request, request_id=request_id, count=True)

    def _dispatch(
        self,
        router: Router,
        request: Request,
        version: microversion.Version | None = None,
        request_id: str = "",
        *,
        count: bool,
    ) -> Response:
        try:
            route, params = router.match(request.method, request.path)
        except errors.ApiError as exc:
            if count:
                self._counts.count(RequestCounts.key(request.method, "(unknown)"))
            return self._error(exc, None, request_id)
        action = action_name(request.body) if route.pattern.endswith("/action") else None
        if count:
            self._counts.count(RequestCounts.key(request.method, route.pattern, action))
        try:
            if count and route.pattern not in _UNVERSIONED:
                version = microversion.requested(request.headers)
            if count and route.pattern not in _NO_AUTH:
                token = request.header("X-Auth-Token") or ""
                context = RequestContext.from_token(token, request_id)
                if context is None:
                    raise errors.ApiError(401, "X-Auth-Token must be user:project")
                request = _with(request, version, context)
            elif version is not None:
                request = _with(request, version, None)
            if count:
                injected = self._faults.take_http(
                    request.method, route.pattern, action, params.get("server_id")
                )
                if injected is not None:
                    return self._error(errors.injected(injected), version, request_id)
            response = route.handler(request, params)
        except errors.ApiError as exc:
            return self._error(exc, version, request_id)
        except Exception:
            log.exception("sandbox.unexpected_error %s %s", request.method, request.path)
            return self._error(errors.ApiError(500, errors.UNEXPECTED_ERROR), version, request_id)
        return _decorate(response, version, request_id)

    def _error(
        self, exc: errors.ApiError, version: microversion.Version | None, request_id: str
    ) -> Response:
        return _decorate(Response(exc.status, exc.body()), version, request_id)


def _server_write(method: str, path: str, raw: bytes, router: Router) -> tuple[str, str] | None:
    """``(server id, name)`` of a write call addressed to one server, else None."""
    found = _SERVER_PATH.match(path)
    if found is None or found["server_id"] == "detail":
        return None
    if method == "POST" and (found["rest"] or "").rstrip("/") == "/action":
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        return found["server_id"], action_name(body) or "(none)"
    try:
        route, _ = router.match(method, path)
    except errors.ApiError:
        return found["server_id"], f"{method} (unknown)"
    return found["server_id"], f"{method} {route.pattern}"


def _with(
    request: Request, version: microversion.Version | None, context: RequestContext | None
) -> Request:
    return Request(
        request.method,
        request.path,
        request.query,
        request.headers,
        request.body,
        request.base_url,
        version or microversion.MIN_VERSION,
        context,
    )


def _decorate(
    response: Response, version: microversion.Version | None, request_id: str
) -> Response:
    if version is not None:
        response.headers.extend(microversion.response_headers(version))
    if request_id:
        response.headers.append(("x-openstack-request-id", request_id))
        response.headers.append(("x-compute-request-id", request_id))
    return response


class _Handler(BaseHTTPRequestHandler):
    app: HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "nova-autopilot-sandbox"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        response = self.app.handle(self.command, self.path, dict(self.headers.items()), raw)
        self._write(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def _write(self, response: Response) -> None:
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status, HTTPStatus(response.status).phrase)
        self.send_header("Content-Type", "application/json")
        if response.status != 204:
            self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if payload and response.status != 204:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox.http " + format, *args)
