"""Waiting on a condition with a deadline, instead of sleeping and hoping."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    """The condition did not hold before the deadline.

    An AssertionError, so that a test that waits in vain reads as a failed
    expectation, with the description of what it waited for.
    """


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    describe_last: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None or False.

    Returns that value. Raises :class:`Timeout` naming ``what`` (and what
    ``describe_last`` says about the last state seen) once ``timeout`` seconds
    have passed. Exceptions from ``probe`` propagate: a probe that can fail
    transiently must catch its own errors and return None.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f"; last seen: {describe_last()}" if describe_last else ""
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(min(interval, remaining))
