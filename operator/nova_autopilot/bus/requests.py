"""The intake of operator requests (``docs/requests.md``).

Requests arrive on a durable queue bound to the request exchange. Before
anything else a request must fit in ``[requests] max_message_bytes`` and
``[intake] max_json_depth`` (both checked on the raw bytes) and pass the
injected verifier (the signature check); then it is parsed strictly, and the
injected check decides whether its key may send it. A request that fails any
of these is dead-lettered with the reason: it never reaches the handler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from oslo_config import cfg

from nova_autopilot.bus.connection import BrokerSettings, request_broker
from nova_autopilot.bus.copies import RetryPlan
from nova_autopilot.bus.delivery import (
    Decoder,
    Handler,
    RefusalSink,
    RequestCheck,
    Verifier,
    accept_all,
)
from nova_autopilot.bus.intake import Intake
from nova_autopilot.bus.settlement import Counters
from nova_autopilot.bus.topology import request_topology
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.events.wire import check_nesting

__all__ = ["request_decoder", "request_intake"]


def request_decoder(
    *,
    verify: Verifier,
    max_bytes: int,
    max_depth: int,
    check: RequestCheck | None = None,
) -> Decoder:
    """Size and depth checks, then ``verify``, then the strict request parser,
    then ``check`` (the authorisation of the key that signed it)."""

    def decode(body: bytes, headers: Mapping[str, Any]) -> Event:
        if len(body) > max_bytes:
            raise BadMessage(
                "too_large", f"request has {len(body)} bytes, the limit is {max_bytes}"
            )
        check_nesting(body, max_depth=max_depth)
        try:
            key_id = verify(body, headers)
        except BadMessage:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing verifier rejects, never accepts
            raise BadMessage("verify_failed", f"{type(exc).__name__}: {exc}") from None
        event = parse_message(body, expect="request", max_bytes=max_bytes, max_depth=max_depth)
        if key_id is not None:
            event = dataclasses.replace(event, key_id=key_id)
        if check is not None:
            try:
                check(event)
            except BadMessage:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing check rejects, never accepts
                raise BadMessage("check_failed", f"{type(exc).__name__}: {exc}") from None
        return event

    return decode


def request_intake(
    conf: cfg.ConfigOpts,
    *,
    handler: Handler,
    verify: Verifier = accept_all,
    check: RequestCheck | None = None,
    on_dead_letter: RefusalSink | None = None,
    broker: BrokerSettings | None = None,
    retry_delays: Sequence[float] | None = None,
    counters: Counters | None = None,
) -> Intake:
    """An :class:`Intake` of operator requests configured from ``conf``.

    Requests are few: they are handled by up to ``[notifications]
    executor_threads`` threads, and retried with ``[notifications]
    retry_delays`` (or ``retry_delays``) like notifications.
    """
    broker = broker or request_broker(conf)
    delays = list(conf.notifications.retry_delays if retry_delays is None else retry_delays)
    decode = request_decoder(
        verify=verify,
        max_bytes=conf.requests.max_message_bytes,
        max_depth=conf.intake.max_json_depth,
        check=check,
    )
    return Intake(
        name="requests",
        topology=request_topology(conf, broker, delays=delays),
        broker=broker,
        decode=decode,
        handler=handler,
        threads=conf.notifications.executor_threads,
        retry=RetryPlan.of(delays),
        counters=counters,
        on_dead_letter=on_dead_letter,
    )
