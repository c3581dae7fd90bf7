"""What can go wrong with the journal, in the project's vocabulary (nova_autopilot.errors).

* :class:`JournalError` is temporary: the database is unreachable, locked, out of disk
  space or chose this transaction as a deadlock victim more often than the journal
  retries by itself. Nothing was written; the same call may succeed later.
* The others are permanent: retrying the same call cannot help.
"""

from __future__ import annotations

from nova_autopilot.errors import PermanentError, TemporaryError

__all__ = [
    "DuplicateOperation",
    "JournalError",
    "OperationFinished",
    "SchemaMismatch",
    "StaleOperation",
    "UnknownOperation",
]


class JournalError(TemporaryError):
    """The journal's database cannot be used right now; nothing was written."""


class UnknownOperation(PermanentError, LookupError):
    """No operation has this id (never created, or pruned)."""

    def __init__(self, operation_id: str) -> None:
        super().__init__(f"no operation {operation_id!r} in the journal")
        self.operation_id = operation_id


class StaleOperation(PermanentError):
    """The operation changed since it was read (another worker moved or claimed it):
    re-read it before deciding anything."""

    def __init__(self, operation_id: str, *, expected: int, actual: int) -> None:
        super().__init__(
            f"operation {operation_id!r} is at version {actual}, not {expected}: "
            "someone else changed it"
        )
        self.operation_id = operation_id
        self.expected = expected
        self.actual = actual


class OperationFinished(PermanentError):
    """The operation already has its outcome; it cannot move or finish again."""

    def __init__(self, operation_id: str, outcome: str | None) -> None:
        super().__init__(f"operation {operation_id!r} is already finished ({outcome})")
        self.operation_id = operation_id
        self.outcome = outcome


class DuplicateOperation(PermanentError):
    """An operation with this id exists already (ids must be unique)."""

    def __init__(self, operation_id: str) -> None:
        super().__init__(f"an operation {operation_id!r} is already in the journal")
        self.operation_id = operation_id


class SchemaMismatch(PermanentError):
    """The database's schema is not the one this version of nova-autopilot works with:
    newer than it knows (a newer release migrated it), or behind while migrating is off."""


class AmbiguousServer(PermanentError, ValueError):
    """A server reference (the start of an id) that fits several servers of the journal."""
