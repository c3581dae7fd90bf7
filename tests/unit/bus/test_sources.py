"""What the bus accepts from its sources: compressed bodies decompress up to a
ceiling and no further, whatever the format; formats that cannot be bounded
are refused."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator

import pytest
from kombu import compression

from nova_autopilot.bus.sources import CompressionRefused, bound_decompression

LIMIT = 100_000
FORMATS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": zlib.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    bound_decompression(LIMIT)
    yield
    bound_decompression(10 * 1024 * 1024)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_body_within_the_ceiling_decompresses_as_before(name: str) -> None:
    body = b'{"event_type": "instance.update"}' * 1000
    assert compression.decompress(FORMATS[name](body), name) == body


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_bomb_stops_at_the_ceiling(name: str) -> None:
    bomb = FORMATS[name](b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(CompressionRefused, match=f"more than {LIMIT} bytes"):
        compression.decompress(bomb, name)


def test_concatenated_streams_count_together() -> None:
    two = bz2.compress(b"a" * 60_000) + bz2.compress(b"b" * 30_000)
    assert compression.decompress(two, "bzip2") == b"a" * 60_000 + b"b" * 30_000
    three = two + bz2.compress(b"c" * 20_000)
    with pytest.raises(CompressionRefused):
        compression.decompress(three, "bzip2")


def test_a_truncated_body_is_refused() -> None:
    with pytest.raises(CompressionRefused, match="ends early"):
        compression.decompress(lzma.compress(b"x" * 1000)[:-20], "xz")


def test_formats_that_cannot_be_bounded_are_refused() -> None:
    others = set(compression.encoders()) - {
        "application/x-gzip",
        "application/x-bz2",
        "application/x-lzma",
    }
    for content_type in others:
        with pytest.raises(CompressionRefused, match="not accepted"):
            compression.decompress(b"anything", content_type)
