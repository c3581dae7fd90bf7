"""The one renderer of the listings (``cli/output.py``): ``-f``, ``-c`` and ``--json``
parsed as the openstack CLI parses them, and every format drawn from the same
rows through cliff's formatters."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest
import yaml

from nova_autopilot.cli.common import UsageError
from nova_autopilot.cli.output import FORMATS, Columns, Listing, add_options, check, emit

COLUMNS = Columns(names=("id", "state", "params", "reason"), shown=("id", "state"))
ROWS = [
    {"id": "op-1", "state": "open", "params": {"flavor": "m1.large", "b": [1, 2]}, "reason": None},
    {"id": "op-2", "state": "closed", "params": {}, "reason": "ok, done"},
]
DOCUMENT = {"z": 1, "count": 2, "nested": {"b": 2, "a": [{"y": 1, "x": 2}]}}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nova-autopilot")
    commands = parser.add_subparsers(dest="command")
    add_options(commands.add_parser("things"), COLUMNS)
    args = parser.parse_args(["things", *argv])
    check(args)
    return args


def printed(*argv: str, document: dict[str, Any] | None = None) -> str:
    out = io.StringIO()
    emit(Listing(COLUMNS, ROWS, text="the human form", document=document), parse(*argv), out)
    return out.getvalue()


def test_without_f_the_command_prints_its_own_text() -> None:
    assert printed() == "the human form\n"
    assert printed("-f", "text") == "the human form\n"


def test_value_prints_the_chosen_columns_of_each_row_on_a_line() -> None:
    assert printed("-f", "value", "-c", "id") == "op-1\nop-2\n"
    assert printed("-f", "value", "-c", "state", "-c", "id") == "open op-1\nclosed op-2\n"
    assert printed("-f", "value") == "op-1 open\nop-2 closed\n"  # the columns shown by default


def test_csv_has_a_header_and_quotes_what_needs_it() -> None:
    assert printed("-f", "csv", "-c", "id", "-c", "reason").splitlines() == [
        '"id","reason"',
        '"op-1",""',
        '"op-2","ok, done"',
    ]


def test_objects_in_a_cell_are_compact_json_in_the_text_formats() -> None:
    line = printed("-f", "value", "-c", "params").splitlines()[0]
    assert json.loads(line) == {"flavor": "m1.large", "b": [1, 2]}
    assert line == '{"b": [1, 2], "flavor": "m1.large"}'


def test_table_is_the_openstack_clis_table() -> None:
    lines = printed("-f", "table", "-c", "id", "-c", "state").splitlines()
    assert lines[0] == "+------+--------+"
    assert lines[1].split() == ["|", "id", "|", "state", "|"]
    assert lines[3].split() == ["|", "op-1", "|", "open", "|"]
    assert len(lines) == 6


def test_c_alone_asks_for_a_table() -> None:
    assert printed("-c", "id") == printed("-f", "table", "-c", "id")
    assert "+" in printed("-c", "id")


def test_json_without_c_is_the_document_with_sorted_keys_at_every_depth() -> None:
    out = printed("-f", "json", document=DOCUMENT)
    assert out == json.dumps(DOCUMENT, indent=2, sort_keys=True) + "\n"
    assert printed("--json", document=DOCUMENT) == out


def test_json_without_a_document_is_every_row_with_every_column() -> None:
    rows = json.loads(printed("-f", "json"))
    assert rows == ROWS
    assert printed("--json") == json.dumps(ROWS, indent=2, sort_keys=True) + "\n"


def test_json_and_yaml_with_c_are_one_object_per_row_with_those_columns() -> None:
    wanted = [{"id": "op-1", "reason": None}, {"id": "op-2", "reason": "ok, done"}]
    assert json.loads(printed("-f", "json", "-c", "reason", "-c", "id", document=DOCUMENT)) == (
        wanted
    )
    assert yaml.safe_load(printed("-f", "yaml", "-c", "id", "-c", "reason")) == wanted


def test_yaml_without_c_is_the_document_too() -> None:
    assert yaml.safe_load(printed("-f", "yaml", document=DOCUMENT)) == DOCUMENT
    assert yaml.safe_load(printed("-f", "yaml")) == ROWS


def test_a_column_is_named_in_any_case_and_given_once() -> None:
    args = parse("-c", "ID", "-c", "id", "-c", "State")
    assert args.column == ["id", "state"]


def test_an_unknown_column_is_a_usage_error_naming_the_columns() -> None:
    with pytest.raises(UsageError) as caught:
        parse("-c", "nope")
    assert str(caught.value) == (
        "-c nope: things has no such column; its columns: id, state, params, reason"
    )


def test_columns_with_the_text_form_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="the text form has no columns"):
        parse("-f", "text", "-c", "id")


def test_an_unknown_format_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse("-f", "html")
    assert caught.value.code == 2
    assert "invalid choice: 'html'" in capsys.readouterr().err


def test_the_formatters_own_options_are_there_as_in_the_openstack_cli() -> None:
    args = parse("-f", "json", "--noindent")
    out = io.StringIO()
    emit(Listing(COLUMNS, ROWS, text=""), args, out)
    assert out.getvalue().count("\n") == 1
    args = parse("-f", "csv", "--quote", "all", "-c", "id")
    out = io.StringIO()
    emit(Listing(COLUMNS, ROWS[:1], text=""), args, out)
    assert out.getvalue().splitlines() == ['"id"', '"op-1"']


def test_every_format_is_one_the_parser_offers() -> None:
    assert FORMATS == ("text", "table", "json", "yaml", "value", "csv")
    for fmt in FORMATS[1:]:
        out = io.StringIO()
        emit(Listing(COLUMNS, ROWS, text=""), parse("-f", fmt, "-c", "id"), out)
        assert "op-2" in out.getvalue(), fmt


def test_shown_columns_must_be_columns() -> None:
    with pytest.raises(ValueError, match="shown columns that are not columns"):
        Columns(names=("id",), shown=("idd",))
