# mypy: disable-error-code="no-untyped-call"
"""The two sources of messages, and what the bus accepts from each.

**Nova's notifications.** The daemon reads its own pool queue (``[notifications]
pool``) bound to Nova's exchange with the routing keys ``<topic>.info`` and
``<topic>.error`` of every topic in ``[notifications] topics`` and
``legacy_topics``: it gets a copy of each notification and takes nothing away
from other consumers, such as those of Nova's own
``versioned_notifications.info`` queue.

**Operator requests** (``docs/requests.md``) arrive on a durable queue bound to
the request exchange. Before anything else a request must fit in ``[requests]
max_message_bytes`` and ``[intake] max_json_depth`` (both checked on the raw
bytes) and pass the injected verifier (the signature check); then it is parsed
strictly, and the injected check decides whether its key may send it. A
request that fails any of these is dead-lettered with the reason: it never
reaches the handler.

**Compressed bodies**: decompression with a ceiling, so a small compressed body
cannot expand without end. kombu decompresses a message that carries a
``compression`` header (as oslo.messaging sends with ``kombu_compression``)
before the intake sees it, and with no limit: a few kilobytes of zeros
compressed can become gigabytes. :func:`bound_decompression` replaces kombu's
decoders for the standard library's formats (gzip/zlib, bzip2, lzma/xz) with
incremental ones that stop at ``max_bytes``, and refuses the formats it cannot
bound (brotli, zstd, when installed). A body beyond the ceiling fails to
decompress: the intake dead-letters it as ``bad_compression``; one within it
is then held to the intake's own size limit like any other message. kombu's
registry is one per process, so the ceiling is too: the daemon sets it to the
larger of ``[intake] max_message_bytes`` and ``[requests] max_message_bytes``.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kombu import compression
from oslo_config import cfg

from nova_autopilot.bus.connection import BrokerSettings, notification_broker, request_broker
from nova_autopilot.bus.copies import RetryPlan
from nova_autopilot.bus.delivery import Decoder, Handler, RefusalSink
from nova_autopilot.bus.intake import Intake
from nova_autopilot.bus.settlement import Counters
from nova_autopilot.bus.topology import IntakeTopology, notification_topology, request_topology
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.events.wire import check_nesting

__all__ = [
    "BOUNDED",
    "CompressionRefused",
    "RequestCheck",
    "Verifier",
    "accept_all",
    "bound_decompression",
    "notification_intake",
    "request_decoder",
    "request_intake",
]

#: Checks a request before it is parsed: ``verify(body, headers)`` returns
#: the id of the key that vouches for it (None when nothing was checked), or
#: raises ``BadMessage("unsigned", ...)`` / ``BadMessage("bad_signature", ...)``
#: (the message is then dead-lettered).
Verifier = Callable[[bytes, Mapping[str, Any]], str | None]

#: Checks a parsed, verified request (may its key send it?): returns, or raises
#: ``BadMessage("not_authorized", ...)`` (the message is then dead-lettered).
RequestCheck = Callable[[Event], None]


def accept_all(body: bytes, headers: Mapping[str, Any]) -> None:
    """The default :data:`Verifier`: every request is accepted, signed by nobody."""
    del body, headers


# --- Nova's notifications ---------------------------------------------------------------


def notification_intake(
    conf: cfg.ConfigOpts,
    *,
    handler: Handler,
    broker: BrokerSettings | None = None,
    retry_delays: Sequence[float] | None = None,
    counters: Counters | None = None,
) -> Intake:
    """An :class:`Intake` of Nova notifications configured from ``conf``.

    ``retry_delays`` overrides ``[notifications] retry_delays`` (whose unit is
    whole seconds); tests use fractions of a second.
    """
    max_bytes = conf.intake.max_message_bytes
    max_depth = conf.intake.max_json_depth

    def decode(body: bytes, headers: Mapping[str, Any]) -> Event:
        del headers
        return parse_message(body, expect="nova", max_bytes=max_bytes, max_depth=max_depth)

    return _intake(
        conf,
        name="notifications",
        topology_of=notification_topology,
        broker=broker or notification_broker(conf),
        decode=decode,
        handler=handler,
        retry_delays=retry_delays,
        counters=counters,
    )


# --- operator requests ------------------------------------------------------------------


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
    decode = request_decoder(
        verify=verify,
        max_bytes=conf.requests.max_message_bytes,
        max_depth=conf.intake.max_json_depth,
        check=check,
    )
    return _intake(
        conf,
        name="requests",
        topology_of=request_topology,
        broker=broker or request_broker(conf),
        decode=decode,
        handler=handler,
        retry_delays=retry_delays,
        counters=counters,
        on_dead_letter=on_dead_letter,
    )


def _intake(
    conf: cfg.ConfigOpts,
    *,
    name: str,
    topology_of: Callable[..., IntakeTopology],
    broker: BrokerSettings,
    decode: Decoder,
    handler: Handler,
    retry_delays: Sequence[float] | None,
    counters: Counters | None,
    on_dead_letter: RefusalSink | None = None,
) -> Intake:
    """Either intake: ``[notifications] executor_threads`` threads, and the
    delays of ``[notifications] retry_delays`` unless ``retry_delays`` is given."""
    delays = list(conf.notifications.retry_delays if retry_delays is None else retry_delays)
    return Intake(
        name=name,
        topology=topology_of(conf, broker, delays=delays),
        broker=broker,
        decode=decode,
        handler=handler,
        threads=conf.notifications.executor_threads,
        retry=RetryPlan.of(delays),
        counters=counters,
        on_dead_letter=on_dead_letter,
    )


# --- compressed bodies ------------------------------------------------------------------


_GZIP, _BZIP2, _LZMA = "application/x-gzip", "application/x-bz2", "application/x-lzma"


class CompressionRefused(ValueError):
    """A compressed body that may not be decompressed."""


def _zlib(limit: int) -> Callable[[bytes], bytes]:
    def decode(body: bytes) -> bytes:
        inflater = zlib.decompressobj()
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise CompressionRefused(f"decompresses to more than {limit} bytes")
        return out

    return decode


def _streams(new: Callable[[], Any], limit: int) -> Callable[[bytes], bytes]:
    """bzip2 and xz: one stream after the other (as their ``decompress`` does),
    never more than ``limit`` bytes in all."""

    def decode(body: bytes) -> bytes:
        out = b""
        rest = body
        while rest:
            stream = new()
            out += stream.decompress(rest, max_length=limit + 1 - len(out))
            if len(out) > limit or (not stream.eof and not stream.needs_input):
                raise CompressionRefused(f"decompresses to more than {limit} bytes")
            if not stream.eof:
                raise CompressionRefused("the compressed body ends early")
            rest = stream.unused_data
        return out

    return decode


def _refuse(content_type: str) -> Callable[[bytes], bytes]:
    def decode(body: bytes) -> bytes:
        raise CompressionRefused(f"{content_type} bodies are not accepted")

    return decode


#: The formats decompressed within the ceiling; any other is refused.
BOUNDED: dict[str, Callable[[int], Callable[[bytes], bytes]]] = {
    _GZIP: _zlib,
    _BZIP2: lambda limit: _streams(bz2.BZ2Decompressor, limit),
    _LZMA: lambda limit: _streams(lzma.LZMADecompressor, limit),
}


def bound_decompression(max_bytes: int) -> None:
    """Make every kombu decompression in this process stop at ``max_bytes``."""
    for content_type in compression.encoders():
        encoder, _ = compression.get_encoder(content_type)
        bounded = BOUNDED.get(content_type)
        decoder = bounded(max_bytes) if bounded else _refuse(content_type)
        compression.register(encoder, decoder, content_type)
