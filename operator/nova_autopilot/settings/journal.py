"""[journal]: the database recording every operation, and how long finished
operations stay in it."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group


def journal() -> Group:
    """The journal's database URL and retention."""
    return cfg.OptGroup("journal", title="Journal of operations"), [
        cfg.StrOpt(
            "connection",
            default="",
            secret=True,
            help="SQLAlchemy URL of the journal database. Empty: the SQLite file "
            "journal.sqlite in [DEFAULT] state_dir.",
        ),
        cfg.IntOpt(
            "retention_days",
            default=90,
            min=1,
            help="Days after which finished journal entries are deleted.",
        ),
    ]
