"""Health-gate checks that can never pass are refused when the policies are loaded,
each with its file, line, policy and field, as ``check`` prints them: a ``tcp`` port
outside 1-65535, a ``tcp`` timeout that is not a duration above zero, a ``console``
check whose ``not_contains`` is part of its ``contains``, ``lines: 0`` with
``contains``. The gate copes with them at run time too (tests/unit/actions/test_gate.py);
refused here, no operation ever meets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_autopilot.cli import main
from nova_autopilot.errors import PolicyError
from nova_autopilot.policies import load_policies

POLICY = """\
policies:
  - name: resize-approved
    when: {{source: request, event: quota.request.approved}}
    do: {{action: resize, params: {{server: "{{{{ payload.server }}}}", flavor: m1.large}}}}
    confirm:
      gate:
        - {check}
"""
GATE_LINE = 7


def written(tmp_path: Path, check: str) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICY.format(check=check))
    return path


@pytest.mark.parametrize(
    ("check", "field", "message"),
    [
        ("tcp: {port: 70000}", "tcp.port", "must be a TCP port, 1-65535; got 70000"),
        ("tcp: {port: 0}", "tcp.port", "must be a TCP port, 1-65535; got 0"),
        ("tcp: {port: -22}", "tcp.port", "must be a TCP port, 1-65535; got -22"),
        ("tcp: {port: true}", "tcp.port", "has the wrong type (bool)"),
        ("tcp: {port: 22, timeout: 0}", "tcp.timeout",
         "must be a duration longer than zero, such as 5s; got 0"),
        ("tcp: {port: 22, timeout: 0s}", "tcp.timeout",
         "must be a duration longer than zero, such as 5s; got '0s'"),
        ("tcp: {port: 22, timeout: .inf}", "tcp.timeout",
         "must be a duration longer than zero, such as 5s; got inf"),
        ("tcp: {port: 22, timeout: -5}", "tcp.timeout",
         "must be a duration such as 90s, 15m, 1h30m or seconds; got -5"),
        ("tcp: {port: 22, timeout: soon}", "tcp.timeout",
         "must be a duration such as 90s, 15m, 1h30m or seconds; got 'soon'"),
        ("console: {contains: 'login:', not_contains: 'login'}", "console.not_contains",
         "'login' is part of contains ('login:'): the console can never show the one "
         "without the other, so the check can never pass"),
        ("console: {contains: 'Kernel panic', not_contains: 'Kernel panic'}",
         "console.not_contains", "'Kernel panic' is part of contains ('Kernel panic'): the "
         "console can never show the one without the other, so the check can never pass"),
        ("console: {contains: 'login:', lines: 0}", "console.lines",
         "0 reads no line of the console, so it can never show contains ('login:')"),
        ("console: {contains: 'login:', lines: false}", "console.lines",
         "has the wrong type (bool)"),
    ],
)  # fmt: skip
def test_a_gate_check_that_can_never_pass_is_refused_with_its_place(
    tmp_path: Path, check: str, field: str, message: str
) -> None:
    path = written(tmp_path, check)
    with pytest.raises(PolicyError) as raised:
        load_policies(path, strict=True)
    assert [str(problem) for problem in raised.value.problems] == [
        f"{path}:{GATE_LINE}: policy 'resize-approved': confirm.gate[0].{field}: {message}"
    ]


@pytest.mark.parametrize(
    "check",
    [
        "tcp: {port: 22}",
        "tcp: {port: 65535, timeout: 2}",
        "tcp: {port: 1, timeout: 0.5}",
        "console: {contains: 'login:', not_contains: 'Kernel panic', lines: 50}",
        "console: {not_contains: 'Kernel panic', lines: 0}",  # reads nothing: passes
        "console: {contains: 'login', not_contains: 'login: failed'}",  # may show one alone
    ],
)
def test_gate_checks_that_can_pass_are_accepted(tmp_path: Path, check: str) -> None:
    assert len(load_policies(written(tmp_path, check), strict=True)) == 1


@pytest.mark.parametrize(("timeout", "seconds"), [("5s", 5.0), ("1m30s", 90.0), (3, 3.0)])
def test_a_tcp_timeout_is_kept_in_seconds_as_the_gate_reads_it(
    tmp_path: Path, timeout: object, seconds: float
) -> None:
    policies = load_policies(written(tmp_path, f"tcp: {{port: 22, timeout: {timeout}}}"))
    (check,) = policies.policies[0].confirm.gate
    assert check.settings == {"port": 22, "timeout": seconds}


def test_check_prints_every_impossible_check_with_its_place_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(
        POLICY.format(check="tcp: {port: 99999, timeout: 0}")
        + "        - console: {contains: 'login:', not_contains: 'login', lines: 0}\n"
    )
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    code = main(["--config-file", str(conf), "check", "--policies", str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    where = f"{path}:{GATE_LINE}: policy 'resize-approved': confirm.gate[0].tcp"
    console = f"{path}:{GATE_LINE + 1}: policy 'resize-approved': confirm.gate[1].console"
    assert err == [
        "4 problems in policies:",
        f"{where}.port: must be a TCP port, 1-65535; got 99999",
        f"{where}.timeout: must be a duration longer than zero, such as 5s; got 0",
        f"{console}.not_contains: 'login' is part of contains ('login:'): the console can "
        "never show the one without the other, so the check can never pass",
        f"{console}.lines: 0 reads no line of the console, so it can never show contains "
        "('login:')",
    ]
