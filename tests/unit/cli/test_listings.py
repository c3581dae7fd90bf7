"""The listings in the process: what a closed output does, and an id's start in
``history --operation`` and ``refusals --request`` (the installed command runs
every format in tests/integration/cli/test_listings.py)."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nova_autopilot.cli import main
from nova_autopilot.journal import Breaker, Journal, NewOperation, NewRefusal


class ClosedPipe(io.StringIO):
    """stdout after ``| head`` has stopped reading."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture
def conf(tmp_path: Path) -> str:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    now = datetime.now(timezone.utc)
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as journal:
        for op_id in ("ab" + "1" * 30, "ab" + "2" * 30):
            new = NewOperation(id=op_id, policy="grow", action="resize", server_id="srv-1")
            journal.accept(message_key=f"request:{op_id}", operations=[new], now=now)
        for request_id in ("req-aa1", "req-aa2", "req-b"):
            journal.record_refusal(
                NewRefusal(
                    at=now, source="request", queue="q", reason="expired", detail="old",
                    body={}, request_id=request_id,
                )
            )  # fmt: skip
        journal.save_breaker(Breaker(scope="global", state="open"), expect_version=None)
    return str(path)


@pytest.mark.parametrize(
    "listing",
    [["history"], ["history", "-f", "json"], ["pending", "-f", "csv"], ["breaker", "list"]],
)
def test_a_closed_output_stops_the_listing_quietly_with_the_code_of_sigpipe(
    conf: str,
    listing: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["--config-file", conf, *listing]) == 141
    assert capsys.readouterr().err == ""


def test_history_takes_the_start_of_an_operation_id_and_refuses_one_of_several(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--config-file", conf, "history", "--operation", "ab2", "-f", "value", "-c", "id"])
        == 0
    )
    assert capsys.readouterr().out == "ab" + "2" * 30 + "\n"
    assert main(["--config-file", conf, "history", "--operation", "ab"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("nova-autopilot: operation id 'ab' is ambiguous: it starts ")
    assert err.count("\n") == 1


def test_refusals_take_the_start_of_a_request_id_and_refuse_one_of_several(
    conf: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def request_ids(*argv: str) -> list[str]:
        assert (
            main(["--config-file", conf, "refusals", *argv, "-f", "value", "-c", "request_id"]) == 0
        )
        return capsys.readouterr().out.split()

    assert request_ids("--request", "req-aa2") == ["req-aa2"]
    assert request_ids("--request", "req-b") == ["req-b"]
    assert request_ids("--request", "req-c") == []  # none: nothing matches, as before
    assert main(["--config-file", conf, "refusals", "--request", "req-aa"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "nova-autopilot: request id 'req-aa' is ambiguous: it starts req-aa1, req-aa2; "
        "give more of it\n"
    )
