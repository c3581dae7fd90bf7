"""Every failure an operator can cause is one line on stderr and a documented exit
code, never a traceback (README.md, "Exit codes"). The broker cases that need the
real RabbitMQ (a wrong password, a missing vhost) are in
tests/integration/test_cli_errors.py."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.cli import main

SEND = ["send", "--type", "quota.request.approved", "--server", "web-1", "--flavor", "m1.large"]
READERS = [["history"], ["pending"], ["refusals"], ["breaker", "list"]]
EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NO_ANSWER = 1, 2, 3, 4


@pytest.fixture(autouse=True)
def _no_handlers_of_earlier_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging as a fresh process has it: handlers an earlier test left on the root
    logger write to that test's closed streams."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def failed(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The exit code and the one line on stderr of a command that fails."""
    code = main(list(argv))
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("nova-autopilot: ")
    return code, err.strip()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text('keys:\n  ops-1: "0123456789abcdef0123456789"\n')
    path.chmod(0o600)
    return path


def conf_file(tmp_path: Path, text: str, keys: Path | None = None) -> str:
    path = tmp_path / "nova-autopilot.conf"
    signing = f"[requests]\nsigning_keys_file = {keys}\nsigning_key_id = ops-1\n" if keys else ""
    path.write_text(f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n{text}\n{signing}")
    return str(path)


# --- the broker ------------------------------------------------------------------------


def test_send_to_a_port_nobody_listens_on_is_unavailable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: Path
) -> None:
    url = f"rabbit://guest:guest@127.0.0.1:{unused_port()}/"
    conf = conf_file(tmp_path, f"transport_url = {url}", keys)
    for argv in ([*SEND, "--wait", "--timeout", "5"], ["approve", "a" * 32], ["reject", "b"]):
        code, err = failed(capsys, "--config-file", conf, *argv)
        assert code == EXIT_UNAVAILABLE
        assert "unreachable: connection refused" in err
        assert "guest:guest" not in err  # the URL is shown without its password


def test_send_to_an_unknown_host_is_unavailable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: Path
) -> None:
    conf = conf_file(tmp_path, "transport_url = rabbit://guest:guest@no-such-host.invalid/", keys)
    code, err = failed(capsys, "--config-file", conf, *SEND)
    assert code == EXIT_UNAVAILABLE
    assert "no-such-host.invalid" in err
    assert "unknown host" in err


# --- the configuration -----------------------------------------------------------------


def test_a_configuration_file_that_is_not_utf8_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "latin1.conf"
    conf.write_bytes(b"[DEFAULT]\n# caf\xe9\nstate_dir = /tmp\n")
    for argv in (SEND, ["history"], ["status"], ["run"]):
        code, err = failed(capsys, "--config-file", str(conf), *argv)
        assert code == EXIT_USAGE
        assert f"configuration file {conf} is not UTF-8" in err


def test_send_without_any_configuration_file_says_so_and_sends_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nova_autopilot.bus import RequestClient

    monkeypatch.setattr("oslo_config.cfg.find_config_files", lambda **_: [])
    monkeypatch.setattr("oslo_config.cfg.find_config_dirs", lambda **_: [])
    monkeypatch.setattr(RequestClient, "from_conf", _never)
    code, err = failed(capsys, *SEND)
    assert code == EXIT_USAGE
    assert "no configuration file" in err
    assert "nothing was sent" in err


def test_send_without_a_signing_key_refuses_unless_unsigned(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = conf_file(tmp_path, "transport_url = kombu+memory:////")
    sent = record_publishes(monkeypatch)
    code, err = failed(capsys, "--config-file", conf, *SEND)
    assert code == EXIT_USAGE
    assert "no signing key" in err
    assert "--unsigned" in err
    assert sent == []
    assert main(["--config-file", conf, *SEND, "--unsigned"]) == 0
    assert [body["type"] for body, _ in sent] == ["quota.request.approved"]
    assert sent[0][1] == {}  # no signature headers


# --- send --wait -----------------------------------------------------------------------


def test_no_answer_within_the_timeout_says_why_and_where_to_look(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: Path
) -> None:
    conf = conf_file(tmp_path, "transport_url = kombu+memory:////", keys)
    code, err = failed(
        capsys, "--config-file", conf, *SEND, "--id", "q-1", "--wait", "--timeout", "0.3"
    )
    assert code == EXIT_NO_ANSWER
    assert "no answer to quota.request.approved q-1 within 0.3 s" in err
    assert "dead-lettered without an answer, by design" in err
    assert "nova-autopilot refusals --request q-1" in err


def test_send_help_shows_the_timeout_default_and_what_a_resend_gets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["send", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 900)" in text
    assert "refused as replayed" in text
    assert "first answer" not in text
    assert "4 no answer within --timeout" in text


# --- approve and reject: the start of an operation id ----------------------------------


def test_approve_takes_a_unique_prefix_and_refuses_an_ambiguous_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nova_autopilot.journal import Journal, NewOperation

    journal_url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    conf = conf_file(
        tmp_path,
        f"transport_url = kombu+memory:////\n[journal]\nconnection = {journal_url}",
        keys,
    )
    ids = ["5b0f1c2e9d8a4b7c8e6f5a4b3c2d1e0f", "5b0f9999888877776666555544443333"]
    with Journal.open(journal_url) as journal:
        news = [NewOperation(policy="grow", action="resize", server_id=f"s-{i}", id=i) for i in ids]
        journal.accept(message_key="request:r-1", operations=news)
    sent = record_publishes(monkeypatch)
    assert main(["--config-file", conf, "approve", "5b0f1"]) == 0
    assert sent[-1][0]["operation_id"] == ids[0]
    assert main(["--config-file", conf, "approve", ids[1]]) == 0  # a whole id, as it is
    assert sent[-1][0]["operation_id"] == ids[1]

    code, err = failed(capsys, "--config-file", conf, "reject", "5b0f")
    assert code == EXIT_USAGE
    assert "ambiguous" in err
    assert ids[0] in err
    assert ids[1] in err
    code, err = failed(capsys, "--config-file", conf, "approve", "zz")
    assert (code, "no operation 'zz' in the journal" in err) == (EXIT_USAGE, True)
    assert len(sent) == 2


# --- the journal -----------------------------------------------------------------------


def test_a_journal_file_that_is_not_a_database_is_said_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    garbage = tmp_path / "journal.sqlite"
    garbage.write_bytes(b"this is no database" * 300)
    conf = conf_file(tmp_path, f"[journal]\nconnection = sqlite:///{garbage}")
    for argv in READERS:
        code, err = failed(capsys, "--config-file", conf, *argv)
        assert code == EXIT_INVALID
        assert f"{garbage} cannot be used: file is not a database" in err


def test_a_journal_driver_that_is_not_installed_names_the_extra(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")  # the extra's driver is here, psycopg2 is not
    try:
        import psycopg2  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover
        pytest.skip("psycopg2 is installed here")
    conf = conf_file(tmp_path, "[journal]\nconnection = postgresql+psycopg2://u:secret@db/j")
    for argv in READERS:
        code, err = failed(capsys, "--config-file", conf, *argv)
        assert code == EXIT_INVALID
        assert "driver 'psycopg2' is not installed" in err
        assert "nova-autopilot[postgresql]" in err
        assert "secret" not in err


def test_a_missing_journal_is_named_and_read_as_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "journal.sqlite"
    conf = conf_file(tmp_path, f"[journal]\nconnection = sqlite:///{missing}")
    for argv in READERS:
        assert main(["--config-file", conf, *argv]) == 0
        err = capsys.readouterr().err
        assert err.strip() == (
            f"nova-autopilot: no journal at {missing} (no daemon has written one there; "
            "[journal] connection, else [DEFAULT] state_dir, names it): nothing to show"
        )
    assert not missing.parent.exists()


# --- helpers ---------------------------------------------------------------------------


def _never(*_: Any, **__: Any) -> Any:
    raise AssertionError("nothing may be declared or published")


def record_publishes(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every request the commands publish (body, headers), published as usual."""
    from nova_autopilot.bus import RequestClient

    sent: list[tuple[dict[str, Any], dict[str, Any]]] = []
    publish: Callable[..., str] = RequestClient.publish_request

    def recording(self: RequestClient, body: dict[str, Any], **kwargs: Any) -> str:
        sent.append((dict(body), dict(kwargs.get("headers") or {})))
        return publish(self, body, **kwargs)

    monkeypatch.setattr(RequestClient, "publish_request", recording)
    return sent
