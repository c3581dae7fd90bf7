"""Behaviour of nova_autopilot.settings: building, loading and documenting the options."""

from __future__ import annotations

import difflib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.guards import BreakerLimits, GuardSettings
from nova_autopilot.policies.model import Budget
from nova_autopilot.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "nova-autopilot.conf.sample"
GENERATOR_CONF = REPO / "config" / "oslo-config-generator.conf"


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def empty_file(tmp_path: Path) -> str:
    return write(tmp_path, "empty.conf", "")


def test_given_an_empty_file_when_loaded_then_every_option_has_its_documented_default(
    empty_file: str,
) -> None:
    conf = settings.load(config_files=[empty_file])

    assert conf.state_dir == "/var/lib/nova-autopilot"
    assert conf.notifications.exchange == "nova"
    assert conf.notifications.topics == ["versioned_notifications"]
    assert conf.notifications.legacy_topics == []
    assert conf.notifications.pool == "nova-autopilot"
    assert conf.notifications.executor_threads == 8
    assert conf.notifications.retry_delays == [5, 30, 120]
    assert conf.notifications.dead_letter_queue == "nova-autopilot.notifications.dead"
    assert conf.requests.broker_url == ""
    assert conf.requests.exchange == "nova-autopilot.requests"
    assert conf.requests.queue == "nova-autopilot.requests"
    assert conf.requests.prefetch == 16
    assert conf.requests.max_message_bytes == 65536
    assert conf.requests.results_exchange == "nova-autopilot.results"
    assert conf.requests.dead_letter_exchange == "nova-autopilot.dead"
    assert conf.requests.signing_keys_file == "/etc/nova-autopilot/signing-keys.yaml"
    assert conf.requests.max_age == 300
    assert conf.cloud.cloud == "nova-autopilot"
    assert conf.cloud.rescue_image == ""
    assert conf.policies.path == "/etc/nova-autopilot/policies.yaml"
    assert conf.journal.connection == ""
    assert conf.guards.dry_run is False
    assert conf.guards.max_concurrent_operations == 10
    assert conf.guards.nova_write_rate == 2.0
    assert conf.guards.default_cooldown == 1800
    assert conf.guards.breaker_failures == 5
    assert conf.guards.breaker_window == 600
    assert conf.guards.breaker_half_open_after == 1800
    assert conf.intake.max_message_bytes == 1024 * 1024
    assert conf.intake.max_json_depth == 32
    assert conf.logging.level == "INFO"
    assert conf.logging.format == "auto"
    assert conf.metrics.enabled is True
    assert conf.metrics.bind_host == "127.0.0.1"
    assert conf.metrics.port == 9464
    assert conf.metrics.cloud_check_interval == 30


def test_given_a_file_when_loaded_then_its_values_replace_the_defaults_with_their_types(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "autopilot.conf",
        "[DEFAULT]\nstate_dir = /srv/autopilot\n"
        "[notifications]\ntopics = versioned_notifications,extra\nretry_delays = 1, 2\n"
        "[guards]\ndry_run = true\nnova_write_rate = 0.5\n"
        "[logging]\nlevel = debug\n",
    )

    conf = settings.load(config_files=[path])

    assert conf.state_dir == "/srv/autopilot"
    assert conf.notifications.topics == ["versioned_notifications", "extra"]
    assert conf.notifications.retry_delays == [1, 2]
    assert conf.guards.dry_run is True
    assert conf.guards.nova_write_rate == 0.5
    assert conf.logging.level.upper() == "DEBUG"
    assert conf.guards.max_concurrent_operations == 10


def test_given_two_files_when_loaded_then_the_later_file_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.conf", "[guards]\nbreaker_failures = 3\ndefault_cooldown = 60\n")
    second = write(tmp_path, "b.conf", "[guards]\nbreaker_failures = 7\n")

    conf = settings.load(config_files=[first, second])

    assert conf.guards.breaker_failures == 7
    assert conf.guards.default_cooldown == 60


def test_given_a_config_dir_when_loaded_then_its_conf_files_are_read_in_name_order_after_files(
    tmp_path: Path,
) -> None:
    main = write(tmp_path, "main.conf", "[guards]\nbreaker_window = 100\nbreaker_failures = 2\n")
    conf_d = tmp_path / "conf.d"
    write(conf_d, "20-late.conf", "[guards]\nbreaker_window = 300\n")
    write(
        conf_d, "10-early.conf", "[guards]\nbreaker_window = 200\nmax_concurrent_operations = 4\n"
    )
    write(conf_d, "99-ignored.conf.disabled", "[guards]\nbreaker_window = 999\n")

    conf = settings.load(config_files=[main], config_dirs=[str(conf_d)])

    assert conf.guards.breaker_window == 300
    assert conf.guards.max_concurrent_operations == 4
    assert conf.guards.breaker_failures == 2


def test_given_no_files_when_loaded_then_the_default_locations_of_the_project_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / ".nova-autopilot", "nova-autopilot.conf", "[guards]\nbreaker_failures = 9\n")
    write(
        tmp_path / ".nova-autopilot" / "nova-autopilot.conf.d",
        "local.conf",
        "[guards]\nbreaker_window = 42\n",
    )

    conf = settings.load()

    assert conf.guards.breaker_failures == 9
    assert conf.guards.breaker_window == 42


def test_given_explicit_files_when_loaded_then_the_default_locations_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_file: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / ".nova-autopilot", "nova-autopilot.conf", "[guards]\nbreaker_failures = 9\n")

    conf = settings.load(config_files=[empty_file])

    assert conf.guards.breaker_failures == 5


def test_given_a_command_line_when_loaded_then_it_is_not_parsed(
    monkeypatch: pytest.MonkeyPatch, empty_file: str
) -> None:
    monkeypatch.setattr(sys, "argv", ["nova-autopilot", "--no-such-flag", "--guards-dry_run"])

    conf = settings.load(config_files=[empty_file])

    assert conf.guards.dry_run is False


def test_given_an_environment_variable_when_loaded_then_it_overrides_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "a.conf", "[guards]\nbreaker_failures = 3\n")
    monkeypatch.setenv("OS_GUARDS__BREAKER_FAILURES", "8")

    assert settings.load(config_files=[path]).guards.breaker_failures == 8


def test_given_overrides_when_loaded_then_they_win_over_files_and_are_converted(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, "a.conf", "[DEFAULT]\nstate_dir = /from/file\n[guards]\ndry_run = false\n"
    )

    conf = settings.load(
        config_files=[path],
        overrides={"DEFAULT": {"state_dir": "/from/override"}, "guards": {"dry_run": "true"}},
    )

    assert conf.state_dir == "/from/override"
    assert conf.guards.dry_run is True


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("[guards]\nmax_concurrent_operations = 0\n", "[guards] max_concurrent_operations"),
        ("[guards]\ndry_run = perhaps\n", "[guards] dry_run"),
        ("[requests]\nprefetch = many\n", "[requests] prefetch"),
        ("[notifications]\nretry_delays = 5,soon\n", "[notifications] retry_delays"),
        ("[notifications]\npool =\n", "[notifications] pool"),
        ("[logging]\nformat = xml\n", "[logging] format"),
    ],
)
def test_given_a_bad_value_when_loaded_then_a_settings_error_names_the_option_and_the_file(
    tmp_path: Path, text: str, option: str
) -> None:
    path = write(tmp_path, "bad.conf", text)

    with pytest.raises(SettingsError) as caught:
        settings.load(config_files=[path])

    assert option in str(caught.value)
    assert path in str(caught.value)
    assert caught.value.option == option
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)


def test_given_a_bad_value_in_an_earlier_file_overridden_later_then_the_later_file_is_named(
    tmp_path: Path,
) -> None:
    first = write(tmp_path, "a.conf", "[guards]\nbreaker_window = 10\n")
    second = write(tmp_path, "b.conf", "[guards]\nbreaker_window = -1\n")

    with pytest.raises(SettingsError, match="breaker_window") as caught:
        settings.load(config_files=[first, second])

    assert caught.value.path == second


def test_given_a_bad_environment_variable_when_loaded_then_the_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, empty_file: str
) -> None:
    monkeypatch.setenv("OS_GUARDS__BREAKER_WINDOW", "soon")

    with pytest.raises(SettingsError, match="OS_GUARDS__BREAKER_WINDOW"):
        settings.load(config_files=[empty_file])


def test_given_a_missing_file_when_loaded_then_a_settings_error_names_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")

    with pytest.raises(SettingsError, match="not found") as caught:
        settings.load(config_files=[missing])

    assert missing in str(caught.value)


def test_given_a_missing_directory_when_loaded_then_a_settings_error_names_it(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "conf.d")

    with pytest.raises(SettingsError, match="directory not found") as caught:
        settings.load(config_dirs=[missing])

    assert missing in str(caught.value)


def test_given_a_file_that_is_not_ini_when_loaded_then_a_settings_error_names_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "broken.conf", "state_dir = /before/any/section\n")

    with pytest.raises(SettingsError, match="cannot parse") as caught:
        settings.load(config_files=[path])

    assert path in str(caught.value)


def test_given_a_misspelt_option_in_an_autopilot_group_then_loading_refuses_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "typo.conf", "[guards]\ndry-run = true\n")

    with pytest.raises(SettingsError, match=r"unknown option \[guards\] dry-run") as caught:
        settings.load(config_files=[path])

    assert caught.value.path == path


def test_given_options_of_other_libraries_when_loaded_then_they_are_left_to_them(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "shared.conf",
        "[DEFAULT]\ntransport_url = rabbit://nova:pw@rabbit:5672/\ndebug = true\n"
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n",
    )

    conf = settings.load(config_files=[path])

    assert conf.state_dir == "/var/lib/nova-autopilot"


@pytest.mark.parametrize(
    "overrides",
    [
        {"guards": {"max_concurrent_operations": "several"}},
        {"guards": {"no_such_option": 1}},
        {"no_such_group": {"anything": 1}},
    ],
)
def test_given_an_unusable_override_when_loaded_then_a_settings_error_names_the_option(
    empty_file: str, overrides: dict[str, dict[str, object]]
) -> None:
    group, values = next(iter(overrides.items()))
    name = next(iter(values))

    with pytest.raises(SettingsError) as caught:
        settings.load(config_files=[empty_file], overrides=overrides)

    assert caught.value.option == f"[{group}] {name}"


def test_secrets_are_marked_secret_and_masked_when_the_configuration_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "secret.conf",
        "[requests]\nbroker_url = amqp://autopilot:Br0kerPw@rabbit//\n"
        "[journal]\nconnection = mysql+pymysql://autopilot:DbPw1@db/autopilot\n",
    )
    conf = settings.load(config_files=[path])

    secret = {
        (group, opt.dest) for group, opts in settings.list_opts() for opt in opts if opt.secret
    }
    with caplog.at_level(logging.DEBUG, logger="test.settings"):
        conf.log_opt_values(logging.getLogger("test.settings"), logging.DEBUG)

    assert secret == {("requests", "broker_url"), ("journal", "connection")}
    assert conf.requests.broker_url == "amqp://autopilot:Br0kerPw@rabbit//"
    assert "requests.broker_url" in caplog.text
    assert "Br0kerPw" not in caplog.text
    assert "DbPw1" not in caplog.text


def test_list_opts_covers_every_registered_group_and_option_with_help() -> None:
    conf = settings.build_conf()
    builtin = set(cfg.ConfigOpts())  # oslo.config's own, such as config_source
    registered_groups = {name for name in conf if isinstance(conf[name], cfg.ConfigOpts.GroupAttr)}
    registered = {("DEFAULT", name) for name in set(conf) - builtin - registered_groups}
    for group in registered_groups:
        registered |= {(group, name) for name in conf[group]}

    listed = {(group, opt.dest) for group, opts in settings.list_opts() for opt in opts}

    assert {group for group, _ in settings.list_opts()} == registered_groups | {"DEFAULT"}
    assert listed == registered
    assert all(opt.help for _, opts in settings.list_opts() for opt in opts)


def test_build_conf_returns_independent_objects() -> None:
    first, second = settings.build_conf(), settings.build_conf()
    first([], default_config_files=[], default_config_dirs=[])
    second([], default_config_files=[], default_config_dirs=[])

    first.set_override("dry_run", True, group="guards")

    assert first.guards.dry_run is True
    assert second.guards.dry_run is False


def test_the_committed_sample_matches_the_options(tmp_path: Path) -> None:
    """The sample is regenerated exactly as `oslo-config-generator` would, through the
    `oslo.config.opts` entry point, whether or not the project is installed: a
    distribution record declaring the entry point is put first on the path."""
    record = tmp_path / "path" / "nova_autopilot-0.0.0.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text("Metadata-Version: 2.1\nName: nova-autopilot\nVersion: 0\n")
    (record / "entry_points.txt").write_text(
        "[oslo.config.opts]\nnova-autopilot = nova_autopilot.settings:list_opts\n"
    )
    output = tmp_path / "nova-autopilot.conf.sample"
    python_path = [str(record.parent), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in python_path if p),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "ignore",
    }

    subprocess.run(
        [
            sys.executable,
            "-c",
            "from oslo_config.generator import main; main()",
            "--config-file",
            str(GENERATOR_CONF),
            "--output-file",
            str(output),
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )

    expected = output.read_text(encoding="utf-8")
    committed = SAMPLE.read_text(encoding="utf-8") if SAMPLE.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "config/nova-autopilot.conf.sample (committed)",
            "regenerated",
        )
    )
    assert committed == expected, (
        "config/nova-autopilot.conf.sample is out of date; regenerate it with\n"
        "    oslo-config-generator --config-file config/oslo-config-generator.conf\n"
        f"(or `make sample`).\n{diff}"
    )


def test_the_guards_settings_are_read_from_the_guards_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "g.conf",
        "[guards]\nbudget_per_host = 3\nbudget_per_host_window = 600\nloop_max_per_server = 0\n"
        "policy_breaker_failures = 2\nbreaker_failures = 0\n[cloud]\nworkers = 4\n",
    )
    conf = settings.load(config_files=[path])
    guard = GuardSettings.from_conf(conf)
    assert guard.budgets == {"host": Budget(3, 600.0)}
    assert guard.loop is None
    assert (guard.max_concurrent, guard.default_cooldown_s) == (10, 1800.0)
    assert guard.breaker == BreakerLimits(0, 600.0, 1800.0)
    assert guard.policy_breaker == BreakerLimits(2, 600.0, 1800.0)
    assert conf.cloud.workers == 4
    defaults = GuardSettings.from_conf(settings.load(config_files=[write(tmp_path, "e.conf", "")]))
    assert defaults.budgets == {}
    assert defaults.loop == Budget(5, 3600.0)
