"""Identity for the box's compute API without Keystone.

Takes the place of keystonemiddleware's ``authtoken`` in the API's paste
pipeline (see :func:`tests.novabox.config.write_api_paste`). The token names
the caller: ``X-Auth-Token: <user>:<project>``. The user ``admin`` has the
roles admin, member and reader; any other user has member and reader. The
middleware sets the headers that ``authtoken`` would set after validating a
token, which Nova's ``keystonecontext`` turns into a request context. Identity
headers sent by the client are dropped first, as ``authtoken`` does.
"""

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_IDENTITY_HEADERS = (
    "HTTP_X_IDENTITY_STATUS",
    "HTTP_X_USER_ID",
    "HTTP_X_USER_NAME",
    "HTTP_X_USER",
    "HTTP_X_PROJECT_ID",
    "HTTP_X_PROJECT_NAME",
    "HTTP_X_TENANT_ID",
    "HTTP_X_TENANT",
    "HTTP_X_ROLES",
    "HTTP_X_ROLE",
    "HTTP_X_SERVICE_CATALOG",
    "HTTP_X_SERVICE_ROLES",
)

ADMIN_ROLES = "admin,member,reader"
MEMBER_ROLES = "member,reader"


class TokenAsIdentity:
    """WSGI middleware: ``user:project`` token -> identity headers."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        for header in _IDENTITY_HEADERS:
            environ.pop(header, None)
        user, project = _parse(environ.get("HTTP_X_AUTH_TOKEN", ""))
        if not user or not project:
            body = b'{"error": {"code": 401, "message": "X-Auth-Token must be user:project"}}'
            start_response(
                "401 Unauthorized",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        environ.update(
            {
                "HTTP_X_IDENTITY_STATUS": "Confirmed",
                "HTTP_X_USER_ID": user,
                "HTTP_X_USER_NAME": user,
                "HTTP_X_PROJECT_ID": project,
                "HTTP_X_PROJECT_NAME": project,
                "HTTP_X_ROLES": ADMIN_ROLES if user == "admin" else MEMBER_ROLES,
            }
        )
        return self.app(environ, start_response)


def _parse(token: str) -> tuple[str, str]:
    user, _, project = token.strip().partition(":")
    return user.strip(), project.strip()


def filter_factory(global_conf: dict[str, str], **local_conf: str) -> Callable[[WsgiApp], WsgiApp]:
    """Paste Deploy entry point."""

    def make_filter(app: WsgiApp) -> WsgiApp:
        return TokenAsIdentity(app)

    return make_filter
