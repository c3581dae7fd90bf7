"""The event types a policy can name, by source, and the check of ``when.event``.

The catalogue ships as ``event_types.yaml`` next to this module: Nova's
versioned and legacy notification types, the daemon's sweep and verdict events
and its own request types. A policy file adds its own with a top-level
``event_types:`` mapping (``nova:`` types of a newer or patched Nova,
``request:`` the operator request types it handles); ``docs/policies.md``.

Request types are the policy author's: with none declared in the file, a
``source: request`` event is checked only for its syntax. A type is refused
with the nearest known names (difflib) as a did-you-mean.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

#: The sources whose types a policy file may declare.
DECLARABLE = ("nova", "request")
#: The syntax of an operator request type (events/request.py).
REQUEST_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
#: The syntax of a notification's event type (as Nova names them).
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+$")
#: How close a name must be to a known one to be taken for its misspelling
#: where unknown names are otherwise accepted (``source: any``, undeclared requests).
_TYPO_CUTOFF = 0.85
_GLOB = re.compile(r"[*?\[]")


@cache
def catalogue() -> dict[str, frozenset[str]]:
    """The shipped types by source: nova (versioned and legacy), sweep, autopilot, request."""
    text = resources.files(__package__).joinpath("event_types.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    nova = data["nova"]
    return {
        "nova": frozenset([*nova["versioned"], *nova["legacy"]]),
        "sweep": frozenset(data["sweep"]),
        "autopilot": frozenset(data["autopilot"]),
        "request": frozenset(data["request"]),
    }


def is_glob(name: str) -> bool:
    return bool(_GLOB.search(name))


def syntax_problem(source: str, name: str) -> str | None:
    """Why ``name`` cannot be declared as a type of ``source`` (None: it can)."""
    if is_glob(name):
        return f"{name!r}: a declared type is a name, not a glob"
    pattern = REQUEST_TYPE if source == "request" else EVENT_TYPE
    if not pattern.match(name):
        shape = "a dotted lower-case name" if source == "request" else "a dotted name"
        return f"{name!r} is not {shape} such as " + (
            "quota.request.approved" if source == "request" else "instance.update"
        )
    return None


@dataclass(frozen=True)
class EventTypes:
    """The types known to one policy file: the catalogue plus its declarations."""

    declared: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def known(self, source: str) -> frozenset[str]:
        """The types of ``source`` (``any``: of every source)."""
        shipped = catalogue()
        sources = list(shipped) if source == "any" else [source]
        names: set[str] = set()
        for name in sources:
            names |= shipped.get(name, frozenset()) | self.declared.get(name, frozenset())
        return frozenset(names)

    def problem(self, source: str, event: str) -> str | None:
        """Why ``event`` (a type or a glob) of a ``when`` of ``source`` names no
        event the daemon can receive (None: it is fine)."""
        known = self.known(source)
        requests_free = not self.declared.get("request")
        if is_glob(event):
            if any(fnmatch.fnmatchcase(name, event) for name in known):
                return None
            if source == "request" and requests_free:
                return None
            return (
                f"{event!r} matches no known {_of(source)}event type; "
                "declare the types it is meant to match under event_types"
            )
        if event in known:
            return None
        close = difflib.get_close_matches(event, sorted(known), n=3)
        free = source == "request" or (source == "any" and REQUEST_TYPE.match(event))
        if free and requests_free:
            # a request type of the author's own: only its syntax and obvious typos
            if source == "request" and not REQUEST_TYPE.match(event):
                return f"{event!r} is not a request type (a dotted lower-case name)"
            close = difflib.get_close_matches(event, sorted(known), n=3, cutoff=_TYPO_CUTOFF)
            if not close:
                return None
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        declare = "request" if source in ("request", "any") else source
        if declare not in DECLARABLE:
            return f"unknown {_of(source)}event type {event!r}{hint}"
        declaration = f"(or declare it: event_types.{declare})"
        return f"unknown {_of(source)}event type {event!r}{hint} {declaration}"


def _of(source: str) -> str:
    return "" if source == "any" else f"{source} "


def declared_types(
    value: Any,
) -> tuple[dict[str, frozenset[str]], list[tuple[tuple[Any, ...], str]]]:
    """A file's ``event_types:`` mapping: ``(declared, [(path, problem)...])``."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    declared: dict[str, frozenset[str]] = {}
    if not isinstance(value, dict):
        return {}, [((), f"must map a source ({', '.join(DECLARABLE)}) to a list of event types")]
    for source, names in value.items():
        if source not in DECLARABLE:
            problems.append(((source,), f"only {', '.join(DECLARABLE)} types can be declared"))
            continue
        if not isinstance(names, list) or not names:
            problems.append(((source,), "must be a non-empty list of event types"))
            continue
        good = []
        for i, name in enumerate(names):
            problem = (
                syntax_problem(source, name) if isinstance(name, str) else f"{name!r} is not text"
            )
            if problem is not None:
                problems.append(((source, i), problem))
            else:
                good.append(name)
        declared[source] = frozenset(good)
    return declared, problems
