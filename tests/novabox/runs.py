"""Run identity, run directories and the state file that describes a run.

A run id is ``<owner pid>-<random hex>``. It names everything the run creates
on shared services: the RabbitMQ vhost ``novabox-<run id>`` and the databases
``novabox_<pid>_<hex>_<role>``, so that a later run can tell whose they are
and clean up after an owner that died. The run directory
``<runs dir>/<run id>/`` holds the configuration, the service logs and
``state.json``: everything needed to stop the run from another process.
"""

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

VHOST_PREFIX = "novabox-"
DATABASE_PREFIX = "novabox_"
STATE_FILE = "state.json"
MANUAL_FILE = "manual.json"

_RUN_ID = re.compile(r"^(?P<pid>\d+)-(?P<token>[0-9a-f]{6})$")


@dataclass(frozen=True)
class RunId:
    owner_pid: int
    token: str

    @classmethod
    def new(cls) -> "RunId":
        return cls(os.getpid(), secrets.token_hex(3))

    @classmethod
    def parse(cls, text: str) -> "RunId | None":
        match = _RUN_ID.match(text)
        if match is None:
            return None
        return cls(int(match["pid"]), match["token"])

    @classmethod
    def from_vhost(cls, vhost: str) -> "RunId | None":
        if not vhost.startswith(VHOST_PREFIX):
            return None
        return cls.parse(vhost.removeprefix(VHOST_PREFIX))

    @classmethod
    def from_database(cls, name: str) -> "RunId | None":
        parts = name.split("_")
        if len(parts) < 4 or f"{parts[0]}_" != DATABASE_PREFIX:
            return None
        return cls.parse(f"{parts[1]}-{parts[2]}")

    def __str__(self) -> str:
        return f"{self.owner_pid}-{self.token}"

    @property
    def vhost(self) -> str:
        return f"{VHOST_PREFIX}{self}"

    @property
    def database_prefix(self) -> str:
        return f"{DATABASE_PREFIX}{self.owner_pid}_{self.token}"


@dataclass
class RunState:
    """What a run created and started; written to ``state.json`` as it goes."""

    run_id: str
    run_dir: str
    manual: bool = False
    vhost: str | None = None
    database_kind: str | None = None
    databases: list[str] = field(default_factory=list)
    services: dict[str, int] = field(default_factory=dict)
    """Service name -> pid of its process group leader."""
    compute_url: str | None = None
    placement_url: str | None = None
    transport_url: str | None = None
    amqp_url: str | None = None
    ready: bool = False

    @property
    def id(self) -> RunId:
        run_id = RunId.parse(self.run_id)
        if run_id is None:
            raise ValueError(f"bad run id in state: {self.run_id!r}")
        return run_id

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / STATE_FILE

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, run_dir: Path) -> "RunState":
        data = json.loads((run_dir / STATE_FILE).read_text())
        return cls(**data)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def owner_alive(state: RunState) -> bool:
    """True while the run still has an owner: its creator, or a live service.

    A box started by ``scripts/novabox up`` outlives the command that
    created it, so its services count as owners too.
    """
    if pid_alive(state.id.owner_pid):
        return True
    return any(pid_alive(pid) for pid in state.services.values())
