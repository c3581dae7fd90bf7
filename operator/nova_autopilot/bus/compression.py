# mypy: disable-error-code="no-untyped-call"
"""Decompression with a ceiling: a small compressed body cannot expand without end.

kombu decompresses a message that carries a ``compression`` header (as
oslo.messaging sends with ``kombu_compression``) before the intake sees it,
and with no limit: a few kilobytes of zeros compressed can become gigabytes.
:func:`bound_decompression` replaces kombu's decoders for the standard
library's formats (gzip/zlib, bzip2, lzma/xz) with incremental ones that stop
at ``max_bytes``, and refuses the formats it cannot bound (brotli, zstd, when
installed). A body beyond the ceiling fails to decompress: the intake
dead-letters it as ``bad_compression``; one within it is then held to the
intake's own size limit like any other message.

kombu's registry is one per process, so the ceiling is too: the daemon sets it
to the larger of ``[intake] max_message_bytes`` and ``[requests]
max_message_bytes``.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any

from kombu import compression

__all__ = ["BOUNDED", "CompressionRefused", "bound_decompression"]

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
