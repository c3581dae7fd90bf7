"""HTTP requests and responses as the sandbox's handlers see them, and how routes are matched."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nova_autopilot.sandbox import errors
from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.microversion import MIN_VERSION, Version


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Without the query string."""
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: Any
    """Parsed JSON, or None when there was no body."""
    base_url: str
    """``http://host:port`` as the client addressed the server (links are built on it)."""
    version: Version = MIN_VERSION
    context: RequestContext | None = None

    @property
    def ctx(self) -> RequestContext:
        if self.context is None:
            raise errors.ApiError(401, "Authentication required")
        return self.context

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class Response:
    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request, Mapping[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    """``/v2.1/servers/{server_id}/action``: what request counts and HTTP faults name."""
    handler: Handler
    regex: re.Pattern[str]

    @classmethod
    def of(cls, method: str, pattern: str, handler: Handler) -> Route:
        regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "/?$"
        return cls(method, pattern, handler, re.compile(regex))


class Router:
    """Finds the route of a request; 404 for an unknown path, 405 for a wrong method."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed = True
        if allowed:
            raise errors.ApiError(405, "The method specified is not allowed for this resource.")
        raise errors.ApiError(404, "The resource could not be found.")


def json_body(request: Request, key: str) -> Any:
    """The value under ``key`` of a JSON object body, or Nova's 400."""
    body = request.body
    if not isinstance(body, dict) or key not in body:
        raise errors.bad_request(
            f"Invalid input for field/attribute {key}. '{key}' is a required property"
        )
    return body[key]
