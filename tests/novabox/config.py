"""Configuration files of one run: nova.conf, nova-compute.conf, placement.conf, api-paste.ini.

Settings that matter, and why:

- versioned notifications with ``notify_on_state_change=vm_and_task_state``
  and the ``messagingv2`` driver: Nova sends nothing without the driver, and
  the tests check ``instance.update`` state transitions;
- ``[scheduler] max_attempts=1``: a failed spawn ends in ERROR at once
  instead of being rescheduled (there is only one host anyway);
- ``allow_resize_to_same_host``: resizes happen on the single host;
- ``sync_power_state_interval=-1``: Nova does not "correct" the state the
  fault driver put a guest in;
- ``[quota] driver=NoopQuotaDriver``: tests never hit a quota;
- one worker per service, a short graceful shutdown: it is a 2-core machine;
- nova-compute gets a copy without ``[database]`` and ``[api_database]``:
  it must not reach the databases (it goes through the conductor);
- nova-cell0.conf points ``[database]`` at cell0, so that cell0's schema can
  be synced at the same time as cell1's and the API database's.
"""

import configparser
from dataclasses import dataclass
from pathlib import Path

COMPUTE_HOST = "novabox"
FAULT_DRIVER = "novabox_fault.FaultInjectingDriver"
PLACEMENT_TOKEN = "admin"

Sections = dict[str, dict[str, str]]


@dataclass(frozen=True)
class RunConfig:
    """What one run's configuration depends on."""

    run_dir: Path
    compute_port: int
    placement_port: int
    transport_url: str
    database_urls: dict[str, str]
    """Role (nova_api, nova_cell0, nova_cell1, placement) -> SQLAlchemy URL."""
    debug: bool = False

    @property
    def nova_dir(self) -> Path:
        return self.run_dir / "etc" / "nova"

    @property
    def placement_dir(self) -> Path:
        return self.run_dir / "etc" / "placement"

    @property
    def nova_conf(self) -> Path:
        return self.nova_dir / "nova.conf"

    @property
    def compute_conf(self) -> Path:
        return self.nova_dir / "nova-compute.conf"

    @property
    def cell0_conf(self) -> Path:
        """nova.conf with cell0 as ``[database]``: to sync cell0 on its own."""
        return self.nova_dir / "nova-cell0.conf"

    @property
    def placement_conf(self) -> Path:
        return self.placement_dir / "placement.conf"

    @property
    def api_paste(self) -> Path:
        return self.nova_dir / "api-paste.ini"

    @property
    def compute_url(self) -> str:
        return f"http://127.0.0.1:{self.compute_port}/v2.1"

    @property
    def placement_url(self) -> str:
        return f"http://127.0.0.1:{self.placement_port}"


def write_all(config: RunConfig, shipped_api_paste: Path) -> None:
    """Write every configuration file of the run."""
    config.nova_dir.mkdir(parents=True, exist_ok=True)
    config.placement_dir.mkdir(parents=True, exist_ok=True)
    for name in ("state", "state/instances", "lock"):
        (config.run_dir / name).mkdir(parents=True, exist_ok=True)
    nova = nova_sections(config)
    _write_ini(config.nova_conf, nova)
    compute_only = {k: v for k, v in nova.items() if k not in ("database", "api_database")}
    _write_ini(config.compute_conf, compute_only)
    cell0 = {**nova, "database": {"connection": config.database_urls["nova_cell0"]}}
    _write_ini(config.cell0_conf, cell0)
    _write_ini(config.placement_conf, placement_sections(config))
    config.api_paste.write_text(api_paste(shipped_api_paste.read_text()))


def nova_sections(config: RunConfig) -> Sections:
    run = config.run_dir
    return {
        "DEFAULT": {
            "host": COMPUTE_HOST,
            "my_ip": "127.0.0.1",
            "debug": str(config.debug),
            "transport_url": config.transport_url,
            "state_path": str(run / "state"),
            "instances_path": str(run / "state" / "instances"),
            "compute_driver": FAULT_DRIVER,
            "allow_resize_to_same_host": "True",
            "vif_plugging_timeout": "0",
            "vif_plugging_is_fatal": "False",
            "sync_power_state_interval": "-1",
            "heal_instance_info_cache_interval": "-1",
            "graceful_shutdown_timeout": "5",
        },
        "api_database": {"connection": config.database_urls["nova_api"]},
        "database": {"connection": config.database_urls["nova_cell1"]},
        "wsgi": {"api_paste_config": str(config.api_paste)},
        "placement": {
            "auth_type": "admin_token",
            "token": PLACEMENT_TOKEN,
            "endpoint": config.placement_url,
        },
        "scheduler": {"max_attempts": "1", "workers": "1"},
        "conductor": {"workers": "1"},
        "notifications": {
            "notification_format": "versioned",
            "notify_on_state_change": "vm_and_task_state",
        },
        "oslo_messaging_notifications": {
            "driver": "messagingv2",
            "transport_url": config.transport_url,
        },
        "oslo_concurrency": {"lock_path": str(run / "lock")},
        "quota": {"driver": "nova.quota.NoopQuotaDriver"},
        "vnc": {"enabled": "False"},
    }


def placement_sections(config: RunConfig) -> Sections:
    return {
        "DEFAULT": {"debug": str(config.debug)},
        "api": {"auth_strategy": "noauth2"},
        "placement_database": {"connection": config.database_urls["placement"]},
    }


def api_paste(shipped: str) -> str:
    """Nova's shipped api-paste.ini with ``authtoken`` replaced by the box's middleware."""
    lines = []
    replaced = 0
    for line in shipped.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "keystone" and "authtoken" in value.split():
            parts = ["novabox_auth" if part == "authtoken" else part for part in value.split()]
            value = " ".join(parts)
            line = f"{key.rstrip()} = {value}"
            replaced += 1
        lines.append(line)
    if replaced == 0:
        raise ValueError("no 'authtoken' in the keystone pipelines of Nova's api-paste.ini")
    lines += [
        "",
        "[filter:novabox_auth]",
        "paste.filter_factory = tests.novabox.authmiddleware:filter_factory",
        "",
    ]
    return "\n".join(lines)


def _write_ini(path: Path, sections: Sections) -> None:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    for section, options in sections.items():
        if section != "DEFAULT":
            parser.add_section(section)
        for key, value in options.items():
            parser.set(section, key, value)
    with open(path, "w") as handle:
        parser.write(handle)
