"""The errors the sandbox answers with, worded and shaped as Nova's API words and shapes them.

Nova wraps every error as ``{"<faultName>": {"code": ..., "message": ...}}``
(``nova/api/openstack/wsgi.py``); the messages below are Nova's own.
"""

from __future__ import annotations

from typing import Any

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}

UNEXPECTED_ERROR = (
    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach "
    "the Nova API log if possible.\n<class 'nova.exception.InjectedFault'>"
)


class ApiError(Exception):
    """An HTTP error response of the compute API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        name = FAULT_NAMES.get(self.status, "computeFault")
        return {name: {"code": self.status, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def invalid_state(action: str, server_id: str, attr: str, state: object) -> ApiError:
    """Nova's 409 for an action refused in this vm_state/task_state (``None`` for launched_at)."""
    if state is None:
        return ApiError(409, f"Instance {server_id} is in an invalid state for '{action}'")
    return ApiError(409, f"Cannot '{action}' instance {server_id} while it is in {attr} {state}")


def locked(server_id: str) -> ApiError:
    return ApiError(409, f"Instance {server_id} is locked")


def server_not_found(server_id: str) -> ApiError:
    return ApiError(404, f"Instance {server_id} could not be found.")


def flavor_not_found(flavor_id: str) -> ApiError:
    return ApiError(404, f"Flavor {flavor_id} could not be found.")


def not_resized() -> ApiError:
    return ApiError(400, "Instance has not been resized.")


def injected(status: int) -> ApiError:
    """The error an injected HTTP fault answers with."""
    if status == 500:
        return ApiError(500, UNEXPECTED_ERROR)
    if status == 503:
        return ApiError(
            503, "The server is currently unavailable. Please try again at a later time."
        )
    return ApiError(status, "Injected fault")
