"""The journal's alembic environment: ``env.py``, ``versions/`` (one module per revision,
``r<number>_<slug>.py``) and ``script.py.mako``, the template of new revisions.

Run through :mod:`nova_autopilot.journal.migrate`, never with an ``alembic.ini``:
``python -m nova_autopilot.journal.migrations --help``.
"""
