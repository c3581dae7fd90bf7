"""The edge to Nova: the only package that imports openstacksdk.

It offers the few calls the actions need, returns plain frozen values
(:class:`ServerState`, :class:`FlavorInfo`), maps openstacksdk's and
keystoneauth's exceptions into our vocabulary (404 ``NotFound``, 409
``Conflict``, 403 quota ``QuotaExceeded``, other 4xx ``Rejected``, 5xx,
time-outs and connection failures ``CloudUnavailable``), and counts every
HTTP request made, in total, per call and per operation; for an operation it
also keeps the calls themselves (which call, method, path template, status),
so that each recorded step can say which requests it made.

:mod:`.client` holds the calls (:class:`Cloud`) and is the one module that
imports openstacksdk; :mod:`.values` the values, :mod:`.accounting` the
counting of requests, :mod:`.pacing` the pace of write calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nova_autopilot.cloud.accounting import (
    CALLS_KEPT,
    PATH_KEPT,
    Call,
    RequestCounter,
    counting_as,
    counting_for,
)
from nova_autopilot.cloud.pacing import WriteLimiter
from nova_autopilot.cloud.values import (
    POWER_STATES,
    FlavorInfo,
    ImageInfo,
    Listing,
    NetworkInfo,
    ServerState,
    server_state,
    server_state_of,
)

if TYPE_CHECKING:
    from nova_autopilot.cloud.client import Cloud

__all__ = [
    "CALLS_KEPT",
    "PATH_KEPT",
    "POWER_STATES",
    "Call",
    "Cloud",
    "FlavorInfo",
    "ImageInfo",
    "Listing",
    "NetworkInfo",
    "RequestCounter",
    "ServerState",
    "WriteLimiter",
    "counting_as",
    "counting_for",
    "server_state",
    "server_state_of",
]


def __getattr__(name: str) -> object:
    """:class:`Cloud`, imported when first asked for: openstacksdk takes about half a
    second to import, and most users of the package need only its values."""
    if name == "Cloud":
        from nova_autopilot.cloud.client import Cloud

        return Cloud
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
