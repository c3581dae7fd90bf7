"""Behaviour of nova_autopilot.settings.loading: which files are read, in which
order, what overrides them, and every problem raised as a SettingsError."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.settings import SettingsError
from tests.unit.settings.support import write


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


def test_given_a_misspelt_section_then_loading_refuses_it_with_its_line_and_a_guess(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "typo.conf", "[DEFAULT]\n\n[guard]\ndry_run = true\n")

    with pytest.raises(SettingsError, match=r"unknown section \[guard\]") as caught:
        settings.load(config_files=[path])

    assert str(caught.value) == f"{path}:3: unknown section [guard]; did you mean [guards]?"
    assert caught.value.line == 3


def test_given_several_mistakes_when_checked_then_every_one_is_returned_in_order(
    tmp_path: Path,
) -> None:
    from nova_autopilot.settings.loading import check

    path = write(
        tmp_path,
        "typos.conf",
        "[DEFAULT]\nstate_dirr = /tmp\ntransport_url = rabbit://x\ndebug = true\n"
        "[guards]\nmax_concurrent_operations = several\n"
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n",
    )

    _, problems = check(config_files=[path])

    assert [str(p).split(";")[0] for p in problems] == [
        f"{path}:2: unknown option [DEFAULT] state_dirr",
        f"invalid value for option [guards] max_concurrent_operations in {path}:6: "
        "invalid literal for int() with base 10: 'several'",
    ]
