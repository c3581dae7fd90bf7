"""The openstack CLI's conventions for where things are: ``--os-cloud`` (else
``$OS_CLOUD``) over ``[cloud] cloud`` on the commands that talk to Nova, and
``--transport-url`` (else ``$NOVA_AUTOPILOT_TRANSPORT_URL``) over every broker URL
on the commands that talk to the broker, set on the configuration itself so that
everything downstream reads one value."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.bus import notification_broker, request_broker
from nova_autopilot.cli import main
from nova_autopilot.cli.common import load_conf

SEED = str(Path(__file__).resolve().parents[3] / "config" / "policies.yaml")
SEND = ["send", "--type", "quota.request.approved", "--server", "web-1", "--unsigned"]
FLAG_URL = "rabbit://ops:pw@flag-host:5672/flag"
ENV_URL = "rabbit://ops:pw@env-host:5672/env"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OS_CLOUD", raising=False)
    monkeypatch.delenv("NOVA_AUTOPILOT_TRANSPORT_URL", raising=False)


@pytest.fixture
def conf(tmp_path: Path) -> str:
    """A configuration naming a cloud and three brokers, none of them the overrides'."""
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path}\n"
        "transport_url = rabbit://a:a@default-host:5672/\n"
        "[oslo_messaging_notifications]\ntransport_url = rabbit://a:a@notify-host:5672/\n"
        "[requests]\nbroker_url = amqp://a:a@requests-host:5672/\n"
        "[cloud]\ncloud = from-file\n"
    )
    return str(path)


@pytest.fixture
def daemon_conf(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The configuration ``run`` hands to the daemon (which is not started)."""
    seen: list[Any] = []

    class Started:
        def run(self) -> int:
            return 0

    def from_conf(conf: Any) -> Started:
        seen.append(conf)
        return Started()

    monkeypatch.setattr("nova_autopilot.logs.configure", lambda **_: None)
    monkeypatch.setattr("nova_autopilot.daemon.wiring.Daemon.from_conf", from_conf)
    return seen


def daemon_cloud(daemon_conf: list[Any], *argv: str) -> str:
    assert main(list(argv)) == 0
    return str(daemon_conf.pop().cloud.cloud)


def test_the_cloud_is_the_flag_else_os_cloud_else_the_configuration(
    conf: str, daemon_conf: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert daemon_cloud(daemon_conf, "--config-file", conf, "run") == "from-file"
    monkeypatch.setenv("OS_CLOUD", "from-env")
    assert daemon_cloud(daemon_conf, "--config-file", conf, "run") == "from-env"
    flag = daemon_cloud(daemon_conf, "--config-file", conf, "run", "--os-cloud", "from-flag")
    assert flag == "from-flag"
    monkeypatch.setenv("OS_CLOUD", "")  # set but empty: not given
    assert daemon_cloud(daemon_conf, "--config-file", conf, "run") == "from-file"


def test_sweep_connects_to_the_cloud_the_flag_names(
    conf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nova_autopilot.cloud import Cloud

    asked: list[Any] = []

    class Unreachable(Exception):
        pass

    def connect(**kwargs: Any) -> Any:
        asked.append(kwargs["cloud"])
        raise Unreachable

    monkeypatch.setattr(Cloud, "connect", connect)
    monkeypatch.setenv("OS_CLOUD", "from-env")
    for flag, expected in (([], "from-env"), (["--os-cloud", "from-flag"], "from-flag")):
        with pytest.raises(Unreachable):
            main(["--config-file", conf, "sweep", "--dry-run", "--policies", SEED, *flag])
        assert asked.pop() == expected


def test_the_broker_url_replaces_every_broker_of_the_configuration(
    conf: str, daemon_conf: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--config-file", conf, "run"]) == 0
    before = daemon_conf.pop()
    assert notification_broker(before).display.startswith("amqp://a@notify-host:5672")
    assert request_broker(before).display.startswith("amqp://a@requests-host:5672")

    monkeypatch.setenv("NOVA_AUTOPILOT_TRANSPORT_URL", ENV_URL)
    assert main(["--config-file", conf, "run"]) == 0
    from_env = daemon_conf.pop()
    assert notification_broker(from_env).display == "amqp://ops@env-host:5672/env"
    assert request_broker(from_env).display == "amqp://ops@env-host:5672/env"

    assert main(["--config-file", conf, "run", "--transport-url", FLAG_URL]) == 0
    from_flag = daemon_conf.pop()
    assert from_flag.transport_url == FLAG_URL
    assert from_flag.oslo_messaging_notifications.transport_url == FLAG_URL
    assert from_flag.requests.broker_url == FLAG_URL
    assert notification_broker(from_flag).display == "amqp://ops@flag-host:5672/flag"
    assert request_broker(from_flag).display == "amqp://ops@flag-host:5672/flag"


def test_send_approve_and_reject_publish_to_the_broker_the_flag_names(
    conf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nova_autopilot.bus import RequestClient

    seen: list[str] = []

    class Stop(Exception):
        pass

    def from_conf(conf: Any) -> Any:
        seen.append(request_broker(conf).display)
        raise Stop

    monkeypatch.setattr(RequestClient, "from_conf", from_conf)
    for argv in (SEND, ["approve", "a" * 32, "--unsigned"], ["reject", "b" * 32, "--unsigned"]):
        with pytest.raises(Stop):
            main(["--config-file", conf, *argv, "--transport-url", FLAG_URL])
        assert seen.pop() == "amqp://ops@flag-host:5672/flag"
        monkeypatch.setenv("NOVA_AUTOPILOT_TRANSPORT_URL", ENV_URL)
        with pytest.raises(Stop):
            main(["--config-file", conf, *argv])
        assert seen.pop() == "amqp://ops@env-host:5672/env"
        monkeypatch.delenv("NOVA_AUTOPILOT_TRANSPORT_URL")


def test_a_broker_url_given_is_enough_without_a_configuration_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nova_autopilot.bus import RequestClient

    monkeypatch.setattr("oslo_config.cfg.find_config_files", lambda **_: [])
    monkeypatch.setattr("oslo_config.cfg.find_config_dirs", lambda **_: [])
    seen: list[str] = []

    class Stop(Exception):
        pass

    def from_conf(conf: Any) -> Any:
        seen.append(request_broker(conf).display)
        raise Stop

    monkeypatch.setattr(RequestClient, "from_conf", from_conf)
    assert main(SEND) == 2  # no file, no broker named: nothing is sent
    assert "no configuration file" in capsys.readouterr().err
    with pytest.raises(Stop):
        main([*SEND, "--transport-url", FLAG_URL])
    assert seen == ["amqp://ops@flag-host:5672/flag"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("garbage://host/", "unknown scheme 'garbage'"),
        ("flag-host:5672", "it does not start with a scheme and ://"),
        ("rabbit://ops:secret@flag-host:99999/", "port 99999 is not in 1-65535"),
    ],
)
def test_a_broker_url_that_is_not_one_is_a_usage_error(
    conf: str, url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config-file", conf, *SEND, "--transport-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nova-autopilot: --transport-url: ")
    assert says in err
    assert "secret" not in err
    assert err.count("\n") == 1


def test_the_variables_only_reach_the_commands_that_take_the_options(
    conf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLOUD", "from-env")
    monkeypatch.setenv("NOVA_AUTOPILOT_TRANSPORT_URL", ENV_URL)
    reader = argparse.Namespace(config_file=[conf], config_dir=[])  # history, status...
    loaded = load_conf(reader)
    assert loaded.cloud.cloud == "from-file"
    assert request_broker(loaded).display.startswith("amqp://a@requests-host")


def test_the_options_are_on_the_commands_that_talk_to_nova_or_the_broker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def options(*command: str) -> str:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        return capsys.readouterr().out

    for command in (["run"], ["sweep"], ["check"]):
        assert "--os-cloud NAME" in options(*command), command
    for command in (["run"], ["send"], ["approve"], ["reject"]):
        assert "--transport-url URL" in options(*command), command
    for command in (["history"], ["pending"], ["status"], ["breaker", "list"], ["refusals"]):
        help_text = options(*command)
        assert "--os-cloud" not in help_text
        assert "--transport-url" not in help_text
        assert "-f {text,table,json,yaml,value,csv}" in help_text


def test_check_start_names_the_option_or_variable_that_named_a_missing_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  good:\n    auth:\n      auth_url: http://192.0.2.1:5000/v3\n"
        "      username: u\n      password: p\n      project_name: p\n"
        "      user_domain_name: Default\n      project_domain_name: Default\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(
        f"[policies]\npath = {SEED}\n[requests]\nrequire_signatures = false\n"
        "[cloud]\ncloud = missing-in-file\n"
    )

    def check(*argv: str) -> tuple[int, str]:
        code = main(["--config-file", str(path), "check", "--start", *argv])
        return code, capsys.readouterr().err

    code, err = check()
    assert code == 1
    assert "[cloud] cloud: cannot configure cloud 'missing-in-file'" in err
    assert check("--os-cloud", "good") == (0, "")
    code, err = check("--os-cloud", "nope")
    assert (code, err.count("\n")) == (1, 1)
    assert err.startswith("--os-cloud: cannot configure cloud 'nope'")
    monkeypatch.setenv("OS_CLOUD", "from-env")
    code, err = check()
    assert err.startswith("OS_CLOUD: cannot configure cloud 'from-env'")
    assert check("--os-cloud", "good") == (0, "")  # the flag before the variable


def test_a_configured_broker_url_that_is_not_one_is_a_usage_error_naming_its_option(
    tmp_path: Path, daemon_conf: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path}\ntransport_url = garbage://ops:secret@host/\n"
        f"[policies]\npath = {SEED}\n[requests]\nrequire_signatures = false\n"
    )
    for argv in (SEND, ["run"], ["approve", "a" * 32, "--unsigned"]):
        assert main(["--config-file", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nova-autopilot: [DEFAULT] transport_url: not a broker URL"), err
        assert "unknown scheme 'garbage'" in err
        assert "secret" not in err
    assert main(["--config-file", str(path), "check"]) == 1  # listed with the other mistakes
    err = capsys.readouterr().err
    assert "[DEFAULT] transport_url: not a broker URL" in err
    assert "secret" not in err
    assert daemon_conf == []  # the daemon was not started
    # The command line's broker replaces it; the commands that do not talk to the
    # broker do not read it.
    assert main(["--config-file", str(path), "run", "--transport-url", FLAG_URL]) == 0
    assert main(["--config-file", str(path), "history", "-f", "json"]) == 0
