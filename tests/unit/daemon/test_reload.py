"""SIGHUP's reload: the policies, the signing keys and the log level are put in
force together, or, when any file is broken, none of them is and every problem
is logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from nova_autopilot import logs, settings
from nova_autopilot.daemon.reload import Reloader
from nova_autopilot.daemon.wiring import PolicyHolder
from nova_autopilot.security.signing import Verifier

POLICY = """
policies:
  - name: {name}
    when: {{source: request, event: quota.request.approved}}
    do: {{action: resize, params: {{server: "{{{{ payload.server }}}}", flavor: m1.large}}}}
"""


class Files:
    def __init__(self, root: Path) -> None:
        self.policies = root / "policies.yaml"
        self.keys = root / "signing-keys.yaml"
        self.conf = root / "nova-autopilot.conf"
        self.write_policies("first")
        self.write_keys({"ops-1": "a" * 32})
        self.write_conf(level="INFO")

    def write_policies(self, name: str) -> None:
        self.policies.write_text(POLICY.format(name=name))

    def write_keys(self, keys: dict[str, str]) -> None:
        self.keys.write_text("keys:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items()))
        self.keys.chmod(0o600)

    def write_conf(self, *, level: str, extra: str = "") -> None:
        self.conf.write_text(
            f"[DEFAULT]\nstate_dir = /tmp/nowhere\n{extra}"
            f"[policies]\npath = {self.policies}\n"
            f"[requests]\nsigning_keys_file = {self.keys}\n"
            f"[logging]\nlevel = {level}\n"
        )


class Setup:
    def __init__(self, files: Files) -> None:
        self.files = files
        self.conf = settings.load(config_files=[str(files.conf)])
        self.policies = PolicyHolder(str(files.policies))
        self.verifier = Verifier({"ops-1": "a" * 32}, max_age_s=300)
        self.levels: list[str] = []
        self.reloader = Reloader(
            conf=self.conf, policies=self.policies, verifier=self.verifier,
            apply_level=self.levels.append,
        )  # fmt: skip

    def names(self) -> list[str]:
        return [p.name for p in self.policies().policies]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(Files(tmp_path))


@pytest.fixture
def logged() -> Iterator[list[dict[str, object]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def test_a_good_reload_puts_all_three_in_force_together(
    setup: Setup, logged: list[dict[str, object]]
) -> None:
    setup.files.write_policies("second")
    setup.files.write_keys({"ops-1": "a" * 32, "ops-2": "b" * 32})
    setup.files.write_conf(level="debug")
    assert setup.reloader.reload()
    assert setup.names() == ["second"]
    assert setup.verifier.key_ids == ["ops-1", "ops-2"]
    assert setup.levels == ["DEBUG"]
    done = [line for line in logged if line["event"] == "daemon.reloaded"]
    assert done == [{"event": "daemon.reloaded", "log_level": "info", "policies": 1,
                     "key_ids": ["ops-1", "ops-2"], "level": "DEBUG"}]  # fmt: skip
    assert setup.reloader.reload()
    assert setup.levels == ["DEBUG"]  # an unchanged level is not set again


@pytest.mark.parametrize(
    ("breakage", "what"),
    [
        ("policies", "policies.reload_refused"),
        ("keys", "signing_keys.reload_refused"),
        ("keys_mode", "signing_keys.reload_refused"),
        ("conf", "settings.reload_refused"),
        ("conf_encoding", "settings.reload_refused"),
    ],
)
def test_one_broken_file_keeps_the_running_set_of_all_three(
    setup: Setup, logged: list[dict[str, object]], breakage: str, what: str
) -> None:
    setup.files.write_policies("second")
    setup.files.write_keys({"ops-2": "b" * 32})
    setup.files.write_conf(level="WARNING")
    if breakage == "policies":
        setup.files.policies.write_text("policies:\n  - name: broken\n    when: {}\n")
    elif breakage == "keys":
        setup.files.keys.write_text("keys: [not, a, mapping]\n")
    elif breakage == "keys_mode":
        setup.files.keys.chmod(0o644)
    elif breakage == "conf_encoding":
        setup.files.conf.write_bytes(setup.files.conf.read_bytes() + b"# caf\xe9\n")
    else:
        setup.files.write_conf(level="LOUD")
    assert not setup.reloader.reload()
    assert setup.names() == ["first"]
    assert setup.verifier.key_ids == ["ops-1"]
    assert setup.levels == []
    events = [line["event"] for line in logged]
    assert what in events
    assert events[-1] == "daemon.reload_refused"


def test_every_problem_of_every_file_is_logged(
    setup: Setup, logged: list[dict[str, object]]
) -> None:
    setup.files.policies.write_text("policies:\n  - name: a\n  - name: b\n")
    setup.files.keys.unlink()
    setup.files.write_conf(level="INFO", extra="[journal]\nno_such_option = 1\n")
    assert not setup.reloader.reload()
    refused = [line for line in logged if str(line["event"]).endswith(".reload_refused")]
    kinds = {str(line["event"]) for line in refused}
    assert kinds == {"policies.reload_refused", "signing_keys.reload_refused",
                     "settings.reload_refused", "daemon.reload_refused"}  # fmt: skip
    assert sum(1 for line in refused if line["event"] == "policies.reload_refused") >= 2
    summary = refused[-1]
    assert summary["problems"] == len(refused) - 1


def test_an_option_only_a_restart_applies_is_named(
    setup: Setup, logged: list[dict[str, object]]
) -> None:
    setup.files.write_conf(level="INFO", extra="stop_timeout = 50\n")
    assert setup.reloader.reload()
    warned = [line for line in logged if line["event"] == "settings.restart_needed"]
    assert warned[0]["options"] == ["[DEFAULT] stop_timeout"]


def test_without_signatures_there_are_no_keys_to_reload(tmp_path: Path) -> None:
    files = Files(tmp_path)
    files.keys.unlink()
    conf = settings.load(config_files=[str(files.conf)])
    levels: list[str] = []
    holder = PolicyHolder(str(files.policies))
    reloader = Reloader(conf=conf, policies=holder, verifier=None, apply_level=levels.append)
    files.write_policies("second")
    assert reloader.reload()
    assert [p.name for p in holder().policies] == ["second"]


def test_set_level_changes_the_level_but_keeps_the_output() -> None:
    root = logging.getLogger()
    before = root.level, list(root.handlers), logging.getLogger("kombu").level
    try:
        logs.set_level("warning")
        assert root.level == logging.WARNING
        assert root.handlers == before[1]
        logs.set_level("DEBUG")
        assert logging.getLogger("kombu").level == logging.NOTSET
        with pytest.raises(ValueError, match="unknown log level"):
            logs.set_level("LOUD")
    finally:
        root.setLevel(before[0])
        logging.getLogger("kombu").setLevel(before[2])


# --- the command line's values over the files -------------------------------------------

FLAG_URL = "rabbit://ops:pw@flag-host:5672/flag"


def started_with(files: Files, *argv: str, cloud: str = "from-file", url: str = "a") -> Reloader:
    """The reloader of a daemon started as ``nova-autopilot run ARGV`` starts it: the
    configuration ``run`` reads (the command line's values over the files)."""
    from nova_autopilot.cli import parser
    from nova_autopilot.cli.common import load_conf

    write_brokers_and_cloud(files, cloud=cloud, url=url)
    args = parser.build().parse_args(["--config-file", str(files.conf), "run", *argv])
    conf = load_conf(args)
    return Reloader(
        conf=conf, policies=PolicyHolder(str(files.policies)), verifier=None,
        apply_level=lambda level: None,
    )  # fmt: skip


def write_brokers_and_cloud(files: Files, *, cloud: str, url: str, stop_timeout: int = 30) -> None:
    """The configuration with a cloud and every broker URL of its own (user ``url``)."""
    files.write_conf(
        level="INFO",
        extra=f"stop_timeout = {stop_timeout}\n"
        f"transport_url = rabbit://{url}:{url}@file-host:5672/\n"
        f"[oslo_messaging_notifications]\ntransport_url = rabbit://{url}:{url}@notify-host/\n"
        f"[cloud]\ncloud = {cloud}\n",
    )
    text = files.conf.read_text()
    files.conf.write_text(
        text.replace("[requests]\n", f"[requests]\nbroker_url = amqp://{url}:{url}@req-host/\n")
    )


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.delenv("NOVA_AUTOPILOT_TRANSPORT_URL", raising=False)
    return monkeypatch


@pytest.mark.parametrize("given", ["options", "environment"])
def test_the_command_lines_values_hold_over_the_files_read_again(
    setup: Setup, logged: list[dict[str, object]], environment: pytest.MonkeyPatch, given: str
) -> None:
    if given == "options":
        argv: tuple[str, ...] = ("--os-cloud", "flag-cloud", "--transport-url", FLAG_URL)
    else:
        environment.setenv("OS_CLOUD", "flag-cloud")
        environment.setenv("NOVA_AUTOPILOT_TRANSPORT_URL", FLAG_URL)
        argv = ()
    reloader = started_with(setup.files, *argv)
    fresh, problems = reloader.load()
    assert problems == []
    assert fresh is not None
    assert fresh.conf.cloud.cloud == "flag-cloud"
    assert fresh.conf.requests.broker_url == FLAG_URL
    assert fresh.conf.transport_url == FLAG_URL
    assert fresh.conf.oslo_messaging_notifications.transport_url == FLAG_URL
    assert reloader.reload()
    events = [line["event"] for line in logged]
    assert "settings.restart_needed" not in events
    assert "settings.overridden" not in events
    assert events[-1] == "daemon.reloaded"


def test_an_overridden_option_changed_in_the_files_is_named_as_overridden(
    setup: Setup, logged: list[dict[str, object]], environment: pytest.MonkeyPatch
) -> None:
    reloader = started_with(setup.files, "--os-cloud", "flag-cloud", "--transport-url", FLAG_URL)
    write_brokers_and_cloud(setup.files, cloud="other-file-cloud", url="b", stop_timeout=50)
    assert reloader.reload()
    warned = {str(line["event"]): line for line in logged if line["log_level"] == "warning"}
    assert warned["settings.restart_needed"]["options"] == ["[DEFAULT] stop_timeout"]
    assert sorted(warned["settings.overridden"]["options"]) == [  # type: ignore[call-overload]
        "[DEFAULT] transport_url",
        "[cloud] cloud",
        "[oslo_messaging_notifications] transport_url",
        "[requests] broker_url",
    ]
    assert "b:b" not in str(logged)  # values, and their passwords, are never logged
    logged.clear()
    assert reloader.reload()  # the files as they were at the last reload: nothing to say
    assert [line["event"] for line in logged] == ["settings.restart_needed", "daemon.reloaded"]


def test_without_the_command_lines_values_a_changed_cloud_needs_a_restart(
    setup: Setup, logged: list[dict[str, object]], environment: pytest.MonkeyPatch
) -> None:
    reloader = started_with(setup.files)
    write_brokers_and_cloud(setup.files, cloud="other-file-cloud", url="a")
    assert reloader.reload()
    warned = [line for line in logged if line["event"] == "settings.restart_needed"]
    assert warned[0]["options"] == ["[cloud] cloud"]
    assert not [line for line in logged if line["event"] == "settings.overridden"]
