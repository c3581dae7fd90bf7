"""What a test does when a real service or tool it needs is missing: skip with a
loud reason, except in CI (``CI`` set to anything but empty, 0, false or no), where
a test that did not run is a failure."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str) -> NoReturn:
    """Skip the test with ``message``, or fail it in CI."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: a skip is a failure here)", pytrace=False)
    pytest.skip(message)
