"""The journal: a durable record of every operation, its steps with timestamps, the event
that caused it and its outcome, plus the keys of processed messages for de-duplication.

SQLite by default (:func:`default_url`, a file in the state directory, WAL mode); any
SQLAlchemy URL (PostgreSQL, MariaDB) for daemons that share one. ``docs/journal.md``
describes what is recorded, the schema, de-duplication, migrations and retention.

=========================  ===================================================
``records``                the values: NewOperation, Operation, Step, Accepted, Duplicate
``errors``                 JournalError (temporary) and the permanent conflicts
``schema``                 the tables, as SQLAlchemy Core metadata
``database``               engines per backend, transactions, retries
``migrate``                alembic, run from inside the package (``migrations/``)
``rows``                   records to rows and back, through the redaction hook
``changes``                the writing transactions
``queries``                the reading statements
``store``                  :class:`Journal`, the API the rest of the daemon uses
=========================  ===================================================
"""

from nova_autopilot.journal.database import default_url, missing_sqlite_file
from nova_autopilot.journal.errors import (
    AmbiguousServer,
    DuplicateOperation,
    JournalError,
    OperationFinished,
    SchemaMismatch,
    StaleOperation,
    UnknownOperation,
)
from nova_autopilot.journal.records import (
    AWAITING_APPROVAL,
    BREAKER_STATES,
    FAILURES,
    HELD_PHASES,
    INITIAL_PHASE,
    MODES,
    OUTCOMES,
    QUEUED,
    Accepted,
    Activity,
    Breaker,
    BreakerState,
    Duplicate,
    Mode,
    NewMessage,
    NewOperation,
    NewRefusal,
    Operation,
    Outcome,
    Refusal,
    StateKey,
    Status,
    Step,
)
from nova_autopilot.journal.store import Journal

__all__ = [
    "AWAITING_APPROVAL",
    "BREAKER_STATES",
    "FAILURES",
    "HELD_PHASES",
    "INITIAL_PHASE",
    "MODES",
    "OUTCOMES",
    "QUEUED",
    "Accepted",
    "Activity",
    "AmbiguousServer",
    "Breaker",
    "BreakerState",
    "Duplicate",
    "DuplicateOperation",
    "Journal",
    "JournalError",
    "Mode",
    "NewMessage",
    "NewOperation",
    "NewRefusal",
    "Operation",
    "OperationFinished",
    "Outcome",
    "Refusal",
    "SchemaMismatch",
    "StaleOperation",
    "StateKey",
    "Status",
    "Step",
    "UnknownOperation",
    "default_url",
    "missing_sqlite_file",
]
