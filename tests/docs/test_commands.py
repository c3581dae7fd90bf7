"""Every command of the README and of docs/*.md is tried by a test.

The commands are read from the pages (tests/docs/commands.py). Each one is
claimed by the test that tries it (``tried_by``): docs/local.md is run as
written (test_local.py); the commands that need a daemon, RabbitMQ or the
sandbox run against them (test_live.py); the rest are tried here. What needs
no service runs for real: the policy author's tools on the shipped files,
the journal's migrations, the installation's key and authorisation files.
What acts on a host or a real cloud (systemctl, useradd, openstack, the demo
on a cloud) is checked: the options of every ``nova-autopilot`` command parse
with the real command line, the files it names exist in the checkout, the
make targets and scripts' commands exist, jq filters compile.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nova_autopilot import __version__
from nova_autopilot.cli import main
from nova_autopilot.cli import parser as cli_parser
from nova_autopilot.security import authorization, signing
from tests.docs import commands as c
from tests.docs.commands import OFFLINE, PARSED, ROOT, Command

BIN = Path(sys.executable).parent
ALL = c.all_commands()
MINE = [command for command in ALL if c.tried_by(command) in (OFFLINE, PARSED)]


def test_the_pages_have_commands_and_every_one_is_claimed_by_a_test() -> None:
    assert len(ALL) > 120
    by = {c.tried_by(command) for command in ALL}
    assert by == {c.OFFLINE, c.PARSED, c.LOCAL, c.LIVE, c.BROKER, c.SANDBOX, c.TAP}
    pages = {command.page for command in ALL}
    assert {"README.md", "local.md", "installation.md", "troubleshooting.md"} <= pages


def test_the_extraction_joins_continuations_synopses_and_here_documents() -> None:
    by_place = {str(command): command for command in ALL}
    history = by_place["history.md:10"]
    assert "[--outcome X]" in history.text  # an indented synopsis line goes on
    heredoc = by_place["installation.md:117"]
    assert heredoc.text.rstrip().endswith("EOF")
    assert "flavors:" in heredoc.text
    assert heredoc.words == ["cat", ">", "/etc/nova-autopilot/authorization.yaml", "<<", "EOF"]
    sandbox = by_place["sandbox.md:39"]  # a console block: the command, not its output
    assert "--transport-url" in sandbox.text
    assert "http://127.0.0.1:8774/v2.1\n" not in sandbox.text
    assert c.variants("breaker reset --policy NAME | --global | --all") == [
        ["breaker", "reset", "--policy", "x"],
        ["breaker", "reset", "--global"],
        ["breaker", "reset", "--all"],
    ]
    assert c.variants("history [--limit N] [--json]") == [
        ["history"],
        ["history", "--limit", "5", "--json"],
    ]


# -- nova-autopilot: every documented command line parses -------------------------------


def _nova_autopilot_lines(command: Command) -> list[list[str]]:
    words, _ = c.synopsis_and_pipe(command)
    if c._program(words) != "nova-autopilot":
        return []
    return c.variants(" ".join(map(_quoted, c.nova_autopilot_args(words))))


def _quoted(word: str) -> str:
    return word if re.fullmatch(r"[\w./:=@,+\[\]|-]+|\.\.\.", word) else repr(word)


NOVA_AUTOPILOT = [command for command in ALL if command.program == "nova-autopilot"]


@pytest.mark.parametrize("command", NOVA_AUTOPILOT, ids=str)
def test_every_nova_autopilot_command_of_the_pages_parses(
    command: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _nova_autopilot_lines(command)
    assert lines, f"{command}: no nova-autopilot command line in {command.text!r}"
    for args in lines:
        try:
            cli_parser.build().parse_args(args)
        except SystemExit as exit:
            refused = f"`nova-autopilot {' '.join(args)}` is refused by the command line"
            assert exit.code == 0, f"{command}: {refused}:\n{capsys.readouterr().err}"
            assert args == ["--version"], f"{command}: {args} printed its help and exited"


def test_a_wrong_option_in_a_page_would_be_caught(capsys: pytest.CaptureFixture[str]) -> None:
    wrong = Command("x.md", 1, "nova-autopilot history --server web-1 --olderthan 2h", "", 0)
    with pytest.raises(SystemExit):
        cli_parser.build().parse_args(_nova_autopilot_lines(wrong)[0])
    assert "unrecognized arguments: --olderthan" in capsys.readouterr().err


# -- run for real: no service needed -----------------------------------------------------


OFFLINE_NOVA_AUTOPILOT = [command for command in NOVA_AUTOPILOT if c.tried_by(command) == OFFLINE]


@pytest.mark.parametrize("command", OFFLINE_NOVA_AUTOPILOT, ids=str)
def test_the_policy_authors_tools_run_on_the_files_the_readme_names(
    command: Command, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the README's paths are the checkout's
    for args in _nova_autopilot_lines(command):
        for word in args:
            if re.search(r"\.(ya?ml|json|jsonl)$", word):
                assert (ROOT / word).is_file(), f"{command}: {word} is not in the checkout"
        if args == ["--version"]:
            with pytest.raises(SystemExit) as exit:
                main(args)
            assert exit.value.code == 0
            assert capsys.readouterr().out.strip() == f"nova-autopilot {__version__}"
            continue
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, f"{command}: `nova-autopilot {' '.join(args)}` exited {code}:\n{err}"
        if "--json" in args:
            json.loads(out)
        else:
            assert out.strip(), f"{command}: `nova-autopilot {' '.join(args)}` printed nothing"


def test_the_readmes_explain_shows_the_shipped_event_against_the_seed_policies(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    explained = "--policies config/policies.yaml --event docs/examples/event.json --json"
    assert main(["explain", *explained.split()]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["event"]["event_type"], result["event"]["source"]) == ("instance.update", "nova")
    assert result["event"]["instance_id"] == "178b0921-8f85-4257-88b6-2e743b5a975c"
    reasons = {policy["name"]: policy["reason"] for policy in result["policies"]}
    assert reasons["rescue-failed-boot"] == (
        "condition failed: payload.state_update.state equals 'error' (saw 'building')"
    )


def test_the_journals_migration_commands_run_against_a_journal_url(tmp_path: Path) -> None:
    migrations = [command for command in ALL if "journal.migrations" in command.text]
    assert [command.words[-1] for command in migrations] == ["current", "upgrade"]
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    env = {**os.environ, "NOVA_AUTOPILOT_JOURNAL_URL": url}
    seen = []
    for command in migrations:
        args = command.words[1:]  # python -m ...: with this interpreter
        done = subprocess.run(
            [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}: {done.stderr}"
        found = re.fullmatch(r"(\S+): at (\S+); this release: (\d{4})\n", done.stdout)
        assert found is not None, f"{command}: {done.stdout!r} is not the documented answer"
        assert found.group(1) == url
        seen.append((found.group(2), found.group(3)))
    (before, release), (after, _) = seen
    assert before == "none"  # current, on a new file
    assert after == release  # upgrade: at this release's schema


def test_the_installations_files_are_written_as_the_page_says_and_load(tmp_path: Path) -> None:
    steps = [
        command
        for command in ALL
        if command.page == "installation.md" and command.section == "The configuration files"
    ]
    assert [command.program for command in steps] == ["install"] * 6 + ["python3", "printf", "cat"]
    etc = tmp_path / "etc" / "nova-autopilot"
    script = ["set -euo pipefail"]
    for command in steps:
        text = command.text.replace("/etc/nova-autopilot", str(etc))
        # The owners need the service user of the page's previous step; the modes are kept.
        text = re.sub(r" -o \S+ -g \S+", "", text)
        script.append(text)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in etc.iterdir()}
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert modes == {
        "nova-autopilot.conf": 0o640,
        "policies.yaml": 0o640,
        "clouds.yaml": 0o640,
        "signing-keys.yaml": 0o600,
        "authorization.yaml": 0o600,
    }
    keys = signing.load_keys(etc / "signing-keys.yaml")  # refuses a file others may read
    assert list(keys) == ["ops-2026-11"]
    assert len(keys["ops-2026-11"]) >= 32
    grants = authorization.load_grants(etc / "authorization.yaml")
    assert list(grants) == ["ops-2026-11"]
    assert main(["check", "--policies", str(etc / "policies.yaml")]) == 0


# -- checked: what acts on a host or a real cloud -----------------------------------------

#: openstackclient commands the pages use, with the options they may take.
OPENSTACK = {
    ("user", "create"): {"--domain", "--password-prompt", "--password", "--project"},
    ("role", "add"): {"--user", "--project", "--domain"},
    ("role", "create"): set(),
    ("flavor", "set"): {"--project", "--property"},
    ("server", "list"): set(),
}
OPENSTACK_GLOBAL = {"--os-auth-type", "--os-endpoint", "--os-token", "--os-compute-api-version"}


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


def _checkout_paths(words: list[str]) -> list[str]:
    """The words that name a file of the checkout (a relative path with a known root)."""
    roots = ("config/", "systemd/", "requirements/", "tests/", "docs/", "scripts/")
    return [word for word in words if word.startswith(roots)]


def _jq_compiles(program: str) -> None:
    if shutil.which("jq") is None:
        pytest.skip("no jq on this machine")
    done = subprocess.run(
        ["jq", "-n", f"try ({program}) catch empty"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"jq refuses {program!r}: {done.stderr}"


def check_parsed(command: Command) -> None:
    """The checks of a command that is not run here."""
    for words in command.pipeline():
        program = c._program(words)
        rest = words[c.program_at(words) + 1 :]
        for path in _checkout_paths(rest):
            assert (ROOT / path).exists(), f"{command}: {path} is not in the checkout"
        if program == "nova-autopilot":
            continue  # parsed by test_every_nova_autopilot_command_of_the_pages_parses
        if program == "make":
            assert set(rest) <= _makefile_targets(), f"{command}: no such make target"
        elif program == "jq":
            _jq_compiles(next(word for word in rest if not word.startswith("-")))
        elif program in ("scripts/novabox", "novabox"):
            assert rest[0] in ("up", "down", "status", "env"), command
        elif program == "eval":
            assert "scripts/novabox env" in command.text
        elif program == "openstack":
            while rest and rest[0] in OPENSTACK_GLOBAL:  # each takes a value
                rest = rest[2:]
            options = [word for word in rest if word.startswith("--")]
            verbs = tuple(word for word in rest if not word.startswith("-"))
            known = next((key for key in OPENSTACK if verbs[: len(key)] == key), None)
            assert known is not None, f"{command}: openstack {verbs} is not a command we know"
            for option in options:
                assert option in OPENSTACK[known] | OPENSTACK_GLOBAL, f"{command}: {option}"
        elif program in ("systemctl", "journalctl"):
            units = [word for word in rest if word.startswith("nova-autopilot")]
            assert all(unit == "nova-autopilot" for unit in units), command
            assert (ROOT / "systemd" / "nova-autopilot.service").is_file()
        elif program == "rabbitmqadmin":
            declared = r"declare exchange name=\S+ type=(topic|direct|fanout) durable=(true|false)"
            assert re.search(declared, command.text), command
        elif program == "pip":
            wheel = next(word for word in rest if word.endswith("]"))
            found = re.fullmatch(r"dist/nova_autopilot-(.+)-py3-none-any\.whl\[(\w+)\]", wheel)
            assert found, wheel
            assert found.group(1) == __version__, f"{command}: the wheel is {__version__}"
            setup = (ROOT / "setup.py").read_text(encoding="utf-8")
            assert f'"{found.group(2)}":' in setup, f"{command}: no extra {found.group(2)}"
        elif program in ("python", "python3"):
            if rest[:2] == ["-m", "pytest"]:
                assert (ROOT / rest[2]).is_dir()
                marker = rest[rest.index("-m", 2) + 1]
                assert f'"{marker}:' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
            else:
                assert rest[:2] in (["-m", "pip"], ["-m", "venv"]), command
        elif program == "oslo-config-generator":
            assert (BIN / program).is_file()
        else:
            assert program in (
                "useradd",
                "install",
                "systemd-sysusers",
                "systemd-tmpfiles",
                "bench",
            ), f"{command}: nothing says how to try {program!r}"


@pytest.mark.parametrize("command", [m for m in MINE if c.tried_by(m) == PARSED], ids=str)
def test_every_command_that_acts_on_a_host_or_a_cloud_is_checked(command: Command) -> None:
    check_parsed(command)


def test_an_unknown_program_or_target_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="nothing says how"):
        check_parsed(Command("x.md", 1, "frobnicate --now", "", 0))
    with pytest.raises(AssertionError, match="no such make target"):
        check_parsed(Command("x.md", 1, "make deploy", "", 0))
    with pytest.raises(AssertionError, match="is not in the checkout"):
        check_parsed(Command("x.md", 1, "install -m 0644 systemd/nova.service /etc/", "", 0))


def test_the_benchmarks_command_takes_the_documented_options() -> None:
    (command,) = [m for m in ALL if m.page == "benchmarks.md"]
    assert command.words == ["make", "bench"]
    assert "python -m bench [NAME ...] [--quick]" in command.text
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout


def test_the_local_pages_configuration_is_the_shipped_example() -> None:
    page = (c.DOCS / "local.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"^```ini\n(.*?)^```", page, re.M | re.S)
    shown, shipped = configparser.ConfigParser(), configparser.ConfigParser()
    shown.read_string(block)
    shipped.read(c.DOCS / "examples" / "local" / "nova-autopilot.conf")
    assert {s: dict(shown[s]) for s in shown.sections()} == {
        s: dict(shipped[s]) for s in shipped.sections()
    }
