"""Waiting in tests: on a condition, with a deadline; never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Wait until ``condition()`` is true, checking every 10 ms; returns its first true
    value. Fails the test (an AssertionError naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.01)
