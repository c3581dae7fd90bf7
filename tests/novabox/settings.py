"""Where the box keeps its things and which of the machine's services it uses.

Every setting has a default that fits a developer machine or CI of this
project; each can be changed with an environment variable (see
docs/novabox.md).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path.home() / ".cache" / "nova-autopilot"

DATABASE_KINDS = ("auto", "mysql", "postgresql", "sqlite")


@dataclass(frozen=True)
class BoxSettings:
    """Settings for one box; build them with :meth:`from_env`."""

    venv_dir: Path
    """Nova's own virtual environment (NOVABOX_VENV)."""
    runs_dir: Path
    """Parent of the run directories: config, logs, state (NOVABOX_RUNS_DIR)."""
    python: str
    """Interpreter that creates Nova's venv (NOVABOX_PYTHON)."""
    database: str
    """auto, mysql, postgresql or sqlite (NOVABOX_DB)."""
    mysql_url: str
    """Server URL, without a database name (NOVABOX_MYSQL_URL)."""
    postgresql_url: str
    """Server URL, without a database name (NOVABOX_POSTGRESQL_URL)."""
    rabbit_host: str
    rabbit_port: int
    rabbit_user: str
    rabbit_password: str
    rabbitmqctl: str
    """The rabbitmqctl command (NOVABOX_RABBITMQCTL)."""
    debug: bool
    """Nova and Placement log at debug level (NOVABOX_DEBUG=1)."""
    keep_run_dir: bool
    """Keep the run directory after a clean stop (NOVABOX_KEEP=1)."""
    start_timeout: float
    """Seconds the box may take to become ready (NOVABOX_START_TIMEOUT)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "BoxSettings":
        env = os.environ if environ is None else environ
        database = env.get("NOVABOX_DB", "auto").strip().lower()
        if database not in DATABASE_KINDS:
            raise ValueError(f"NOVABOX_DB={database!r}: expected one of {DATABASE_KINDS}")
        return cls(
            venv_dir=Path(env.get("NOVABOX_VENV") or CACHE_DIR / "novabox-venv"),
            runs_dir=Path(env.get("NOVABOX_RUNS_DIR") or CACHE_DIR / "novabox-runs"),
            python=env.get("NOVABOX_PYTHON", "python3"),
            database=database,
            mysql_url=env.get("NOVABOX_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
            postgresql_url=env.get(
                "NOVABOX_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432"
            ),
            rabbit_host=env.get("NOVABOX_RABBIT_HOST", "127.0.0.1"),
            rabbit_port=int(env.get("NOVABOX_RABBIT_PORT", "5672")),
            rabbit_user=env.get("NOVABOX_RABBIT_USER", "guest"),
            rabbit_password=env.get("NOVABOX_RABBIT_PASSWORD", "guest"),
            rabbitmqctl=env.get("NOVABOX_RABBITMQCTL", "rabbitmqctl"),
            debug=_flag(env.get("NOVABOX_DEBUG")),
            keep_run_dir=_flag(env.get("NOVABOX_KEEP")),
            start_timeout=float(env.get("NOVABOX_START_TIMEOUT", "180")),
        )


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
