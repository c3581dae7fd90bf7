"""The alembic environment of the journal.

Run by :mod:`nova_autopilot.journal.migrate` only, which passes an open connection
(already in a transaction, holding the schema lock) in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from nova_autopilot.journal.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the journal's migrations run through nova_autopilot.journal.migrate "
        "(python -m nova_autopilot.journal.migrations), with a live connection"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: let op.batch_alter_table copy tables instead.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
