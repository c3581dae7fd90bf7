"""``nova-autopilot check``: every mistake of the configuration, of what ``run``
reads at start (``--start``) and of the policies, one line each, exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_autopilot.cli import main

ROOT = Path(__file__).resolve().parents[3]
SEED = str(ROOT / "config" / "policies.yaml")
RESCUE = "do: {action: rescue, params: {server: '{{ instance_id }}'}}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def policy(tmp_path: Path, *events: str, source: str = "nova", head: str = "") -> str:
    body = "".join(
        f"  - name: p{i}\n    when: {{source: {source}, event: {event}}}\n    {RESCUE}\n"
        for i, event in enumerate(events)
    )
    return write(tmp_path / "policies.yaml", f"{head}policies:\n{body}")


def test_a_misspelt_section_fails_check_with_its_line_and_a_did_you_mean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = write(tmp_path / "a.conf", "[DEFAULT]\nstate_dirr = /tmp\n\n[guard]\ndry_run = true\n")

    code, _, err = run(capsys, "--config-file", conf, "check", "--policies", SEED)

    assert code == 1
    assert f"{conf}:2: unknown option [DEFAULT] state_dirr; did you mean state_dir" in err
    assert f"{conf}:4: unknown section [guard]; did you mean [guards]?" in err


def test_oslo_messaging_options_are_known_and_their_misspellings_are_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = write(
        tmp_path / "a.conf",
        "[DEFAULT]\ntransport_url = rabbit://a\n[oslo_messaging_notifications]\n"
        "driver = messaging\n[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n"
        "rabbit_quorum_queu = true\n",
    )

    code, _, err = run(capsys, "--config-file", conf, "check", "--policies", SEED)

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(
        f"{conf}:7: unknown option [oslo_messaging_rabbit] rabbit_quorum_queu; "
        "did you mean rabbit_quorum_queue"
    )


def test_a_valid_configuration_and_policies_pass(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = write(tmp_path / "a.conf", "[guards]\ndry_run = true\n")

    code, out, err = run(capsys, "--config-file", conf, "check", "--policies", SEED)

    assert (code, err) == (0, "")
    assert "3 policies valid" in out


def test_start_checks_the_keys_file_mode_the_authorisation_table_and_the_cloud(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    write(tmp_path / "clouds.yaml", "clouds: {}\n")
    keys = write(tmp_path / "keys.yaml", "keys: {ops: 0123456789abcdef0123}\n", mode=0o644)
    conf = write(
        tmp_path / "a.conf",
        f"[requests]\nsigning_keys_file = {keys}\n"
        f"authorization_file = {tmp_path / 'missing.yaml'}\n[cloud]\ncloud = prod\n",
    )

    code, _, err = run(capsys, "--config-file", conf, "check", "--start", "--policies", SEED)

    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[requests] signing_keys_file: signing keys file")
    assert "is open to group or others (mode 644)" in lines[0]
    assert lines[1].startswith("[requests] authorization_file: authorisation file")
    assert "missing.yaml" in lines[1]
    assert lines[2].startswith("[cloud] cloud: cannot configure cloud 'prod'")


def test_start_passes_when_what_run_reads_is_there(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = "clouds: {prod: {auth: {auth_url: 'http://k:5000/v3', token: t}, auth_type: token}}"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", write(tmp_path / "clouds.yaml", clouds + "\n"))
    keys = write(tmp_path / "keys.yaml", "keys: {ops: 0123456789abcdef0123}\n")
    conf = write(
        tmp_path / "a.conf", f"[requests]\nsigning_keys_file = {keys}\n[cloud]\ncloud = prod\n"
    )

    code, _, err = run(capsys, "--config-file", conf, "check", "--start", "--policies", SEED)

    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("event", "source", "hint"),
    [
        ("instance.updte", "nova", "did you mean instance.update"),
        ("compute.instance.udpate.end", "nova", "did you mean"),
        ("instance.updte", "any", "did you mean instance.update"),
        ("'instance.resze.*'", "nova", "matches no known nova event type"),
        ("sweep.server.eror", "sweep", "did you mean sweep.server.error"),
    ],
)
def test_a_misspelt_event_type_fails_check_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, event: str, source: str, hint: str
) -> None:
    path = policy(tmp_path, event, source=source)

    code, _, err = run(capsys, "check", "--policies", path)

    assert code == 1
    assert "1 problem in policies" in err
    assert f"{path}:3: policy 'p0': when.event: " in err
    assert hint in err


def test_request_types_are_free_unless_the_file_declares_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    free = policy(tmp_path, "quota.request.approved", "'quota.*'", source="request")
    assert run(capsys, "check", "--policies", free)[0] == 0

    declared = policy(
        tmp_path,
        "quota.request.approved",
        "quota.requets.approved",
        source="request",
        head="event_types:\n  request: [quota.request.approved]\n",
    )
    code, _, err = run(capsys, "check", "--policies", declared)

    assert code == 1
    assert (
        f"{declared}:8: policy 'p1': when.event: unknown request event type "
        "'quota.requets.approved'; did you mean quota.request.approved?" in err
    )


def test_declared_nova_types_and_globs_over_them_pass(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = policy(
        tmp_path,
        "instance.custom_thing",
        "'instance.custom_*'",
        head="event_types:\n  nova: [instance.custom_thing]\n",
    )

    assert run(capsys, "check", "--policies", path)[0] == 0


def test_a_bad_declaration_is_reported_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = policy(
        tmp_path, "instance.update", head="event_types:\n  sweep: [a.b]\n  request: ['q.*']\n"
    )

    code, _, err = run(capsys, "check", "--policies", path)

    assert code == 1
    assert f"{path}:2: event_types.sweep: only nova, request types can be declared" in err
    assert f"{path}:3: event_types.request[0]: 'q.*': a declared type is a name" in err


@pytest.mark.parametrize("text", ["", "# nothing\n", "policies: []\n", "version: 1\n"])
def test_a_file_without_policies_fails_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = write(tmp_path / "policies.yaml", text)

    code, _, err = run(capsys, "check", "--policies", path)

    assert code == 1
    assert "has no policies" in err


def test_an_invalid_source_does_not_hide_the_other_errors_of_its_when(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "policies.yaml",
        "policies:\n  - name: a\n    when:\n      source: moon\n      event: [1]\n"
        "      match: {field: payload.state}\n    " + RESCUE + "\n",
    )

    code, _, err = run(capsys, "check", "--policies", path)

    assert code == 1
    assert "3 problems in policies" in err
    assert f"{path}:4: policy 'a': when.source: must be one of" in err
    assert f"{path}:5: policy 'a': when.event[0]: 1 is not an event type or glob" in err
    assert f"{path}:6: policy 'a': when.match: a condition needs 'field'" not in err
    assert f"{path}:6: policy 'a': when.match: needs exactly one operator" in err


def test_a_duplicate_name_is_reported_even_when_the_duplicate_is_broken(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path / "policies.yaml",
        "policies:\n  - name: a\n    when: {event: instance.update}\n    " + RESCUE + "\n"
        "  - name: a\n    when: {event: instance.update}\n    do: {action: fly}\n",
    )

    code, _, err = run(capsys, "check", "--policies", path)

    assert code == 1
    assert f"{path}:7: policy 'a': do.action: must be one of" in err
    assert f"{path}:5: policy 'a': name: duplicate policy name (first defined at {path}:2)" in err


def test_an_unreadable_configuration_is_wrong_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "--config-file", str(tmp_path / "none.conf"), "check", "--policies", SEED
    )

    assert code == 2
    assert "configuration file not found" in err
