"""New identifiers: an operation's id, a result message's id.

128 random bits as 32 hex digits, as a random UUID's, drawn from a generator of
this module's own (seeded from the system's randomness, again in a forked
child): ``uuid.uuid4()`` asks the kernel for each one, which on a virtual
machine costs more than the rest of a decision's bookkeeping. The module's
generator is not :mod:`random`'s shared one, which tests may seed."""

from __future__ import annotations

import os
import random

__all__ = ["new_id"]

_source = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_source.seed)


def new_id() -> str:
    """A new random identifier: 32 lowercase hex digits."""
    return f"{_source.getrandbits(128):032x}"
