"""Compute API microversions: what a request asks for and what the answer says it used.

As Nova 34: versions 2.1 to 2.104; the ``OpenStack-API-Version: compute X.Y``
header wins over the legacy ``X-OpenStack-Nova-API-Version: X.Y``; no header
means 2.1, ``latest`` means 2.104.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from nova_autopilot.sandbox.errors import ApiError

_FORMAT = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _FORMAT.match(text.strip())
        if match is None:
            raise ApiError(
                400,
                f"API Version String {text.strip()} is of invalid format. "
                "Must be of format MajorNum.MinorNum.",
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def at_least(self, text: str) -> bool:
        return self >= Version.parse(text)


MIN_VERSION = Version(2, 1)
MAX_VERSION = Version(2, 104)


def requested(headers: Mapping[str, str]) -> Version:
    """The version a request asks for (raises Nova's 400 or 406 when it cannot be had)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    text: str | None = None
    standard = lowered.get("openstack-api-version")
    if standard is not None:
        for part in standard.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                text = value.strip()
    if text is None:
        text = lowered.get("x-openstack-nova-api-version")
    if text is None:
        return MIN_VERSION
    if text.strip().lower() == "latest":
        return MAX_VERSION
    version = Version.parse(text)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ApiError(
            406,
            f"Version {version} is not supported by the API. "
            f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}.",
        )
    return version


def response_headers(version: Version) -> list[tuple[str, str]]:
    return [
        ("OpenStack-API-Version", f"compute {version}"),
        ("X-OpenStack-Nova-API-Version", str(version)),
        ("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    ]
