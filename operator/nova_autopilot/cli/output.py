"""The one renderer of the listings (``history``, ``pending``, ``refusals``,
``breaker list``, ``status``), in the openstack CLI's conventions and through its
formatters, cliff's: ``-f table|json|yaml|value|csv`` and ``-c COLUMN``.

Each listing command declares its :class:`Columns` to the parser
(:func:`add_options`), builds a :class:`Listing` (its rows, its own text, its
document) and hands it to :func:`emit`:

* no ``-f`` (or ``-f text``): the command's own text, the human form (``history``'s
  table and chains, ``status``'s sections); with ``-c`` and no ``-f``: a table;
* ``table``: cliff's table, as the openstack CLI draws it; ``value``: the values of
  each row on one line, separated by spaces (``-f value -c id``: an id a line);
  ``csv``: a line of column names, then a line per row. Without ``-c`` these show
  the listing's usual columns (:attr:`Columns.shown`); a value that is an object or
  a list is written as compact JSON;
* ``json`` and ``yaml``: without ``-c``, the command's whole document (``--json``,
  an alias of ``-f json``, prints the same bytes); with ``-c``, a list of one object
  per row with those columns. Keys are sorted, at every depth.

Only this module imports cliff (``.importlinter``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from cliff.formatters.base import ListFormatter, SingleFormatter
from cliff.formatters.commaseparated import CSVLister
from cliff.formatters.json_format import JSONFormatter
from cliff.formatters.table import TableFormatter
from cliff.formatters.value import ValueFormatter
from cliff.formatters.yaml_format import YAMLFormatter

from nova_autopilot.cli.common import UsageError

__all__ = ["FORMATS", "Columns", "Listing", "add_options", "check", "chosen_format", "emit"]

#: The output formats, the default first.
FORMATS = ("text", "table", "json", "yaml", "value", "csv")
_FORMATTERS: dict[str, type[ListFormatter]] = {
    "table": TableFormatter,
    "json": JSONFormatter,
    "yaml": YAMLFormatter,
    "value": ValueFormatter,
    "csv": CSVLister,
}
#: The formats that print a whole document too.
_DOCUMENTS: dict[str, type[SingleFormatter]] = {"json": JSONFormatter, "yaml": YAMLFormatter}


@dataclass(frozen=True, slots=True)
class Columns:
    """A listing's columns: every one ``-c`` may name, and those shown without ``-c``."""

    names: tuple[str, ...]
    shown: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.shown) - set(self.names)
        if unknown:
            raise ValueError(f"shown columns that are not columns: {sorted(unknown)}")

    @property
    def default(self) -> tuple[str, ...]:
        return self.shown or self.names


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing command found, ready for every format."""

    columns: Columns
    #: One mapping per row, with a value for each of ``columns.names`` (a missing
    #: one is None).
    rows: Sequence[Mapping[str, Any]]
    #: The human form: what the command prints without ``-f``.
    text: str
    #: What ``json`` and ``yaml`` print without ``-c``, one object; None: the rows,
    #: every column.
    document: Mapping[str, Any] | None = None


def add_options(parser: argparse.ArgumentParser, columns: Columns) -> None:
    """``-f``, ``-c``, ``--json`` and the options of cliff's formatters, on a
    listing command; :func:`check` validates them."""
    group = parser.add_argument_group(
        "output",
        "the openstack CLI's formats (docs/operations.md#output-formats); without -f, "
        "the command's own text, or a table when -c is given",
    )
    group.add_argument(
        "-f",
        "--format",
        dest="format",
        choices=FORMATS,
        default=None,
        help="text (the default), table, json, yaml, value (values only, for scripts) or csv",
    )
    group.add_argument(
        "-c",
        "--column",
        dest="column",
        action="append",
        default=[],
        metavar="COLUMN",
        help=f"show this column (repeatable): {', '.join(columns.names)}; without -c: "
        f"{', '.join(columns.default)}",
    )
    group.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const="json",
        help="the same as -f json",
    )
    for formatter in _FORMATTERS.values():
        formatter().add_argument_group(parser)
    parser.set_defaults(listing_columns=columns)


def check(args: argparse.Namespace) -> None:
    """Refuse a ``-c`` the listing does not have, before anything is read: one line,
    exit status 2. The names are matched without regard to case and replaced by the
    listing's own spelling."""
    columns: Columns | None = getattr(args, "listing_columns", None)
    if columns is None:
        return
    if args.column and args.format == "text":
        raise UsageError(
            "-c: the text form has no columns; give -f table, json, yaml, value or csv"
        )
    known = {name.lower(): name for name in columns.names}
    chosen: list[str] = []
    for given in args.column:
        name = known.get(given.lower())
        if name is None:
            raise UsageError(
                f"-c {given}: {_command(args)} has no such column; its columns: "
                f"{', '.join(columns.names)}"
            )
        if name not in chosen:
            chosen.append(name)
    args.column = chosen


def chosen_format(args: argparse.Namespace) -> str:
    """The format ``args`` asks for: ``-f``, else a table with ``-c``, else text."""
    fmt = getattr(args, "format", None)
    return str(fmt) if fmt else ("table" if getattr(args, "column", None) else "text")


def emit(listing: Listing, args: argparse.Namespace, out: TextIO | None = None) -> None:
    """Print ``listing`` as ``args`` asks (validated by :func:`check`)."""
    stream = sys.stdout if out is None else out
    chosen: list[str] = list(getattr(args, "column", None) or [])
    fmt = chosen_format(args)
    if fmt == "text":
        stream.write(listing.text + "\n")
        return
    formatter = _FORMATTERS[fmt]()
    if fmt in _DOCUMENTS:
        if not chosen and listing.document is not None:
            document = _sorted(listing.document)
            names = list(document)
            _DOCUMENTS[fmt]().emit_one(names, [document[n] for n in names], stream, args)
            return
        names = sorted(chosen or listing.columns.names)
        rows = [[_sorted(row.get(name)) for name in names] for row in listing.rows]
        formatter.emit_list(names, rows, stream, args)
        return
    names = chosen or list(listing.columns.default)
    formatter.emit_list(
        names, [[_flat(row.get(name)) for name in names] for row in listing.rows], stream, args
    )


def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "breaker_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def _sorted(value: Any) -> Any:
    """``value`` with the keys of every mapping in it sorted (JSON and YAML output)."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted(item) for item in value]
    return value


def _flat(value: Any) -> Any:
    """A cell of a table, a value line or a CSV row: objects and lists as compact JSON."""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(_sorted(value), default=str)
    return value
