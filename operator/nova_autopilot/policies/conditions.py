"""Conditions on event fields: pure, frozen, and able to say why they failed.

``evaluate(event)`` returns ``None`` when the condition holds, or a
:class:`Miss` that names the condition and the value it saw. The same code
serves matching (only "did it hold?") and ``explain`` ("why not?").
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nova_autopilot.events import MISSING, Event


@dataclass(frozen=True, slots=True)
class Miss:
    """The first condition that did not hold, and what it saw. The text is
    only built when asked for: matching creates misses on its hot path."""

    condition: object
    actual: Any = MISSING
    shows_value: bool = True

    def __str__(self) -> str:
        if not self.shows_value:
            return str(self.condition)
        return f"{self.condition} (saw {_show(self.actual)})"


def _show(value: Any) -> str:
    text = "missing" if value is MISSING else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class Condition(Protocol):
    def evaluate(self, event: Event) -> Miss | None: ...


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Order comparisons only between numbers, or between strings."""

    def compare(actual: Any, operand: Any) -> bool:
        if _number(actual) and _number(operand):
            return op(actual, operand)
        if isinstance(actual, str) and isinstance(operand, str):
            return op(actual, operand)
        return False

    return compare


def _seconds(op: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    """Duration comparisons: the field holds seconds (a number), the operand too."""

    def compare(actual: Any, operand: Any) -> bool:
        return _number(actual) and op(actual, operand)

    return compare


def _equals(actual: Any, operand: Any) -> bool:
    if isinstance(actual, bool) or isinstance(operand, bool):
        return actual is operand
    return bool(actual == operand)


def _contains(actual: Any, operand: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(operand, str) and operand in actual
    if isinstance(actual, list):
        return any(_equals(item, operand) for item in actual)
    if isinstance(actual, dict):
        return isinstance(operand, str) and operand in actual
    return False


def _glob(actual: Any, operand: Any) -> bool:
    return isinstance(actual, str) and fnmatch.fnmatchcase(actual, operand)


def _regex(actual: Any, operand: re.Pattern[str]) -> bool:
    return isinstance(actual, str) and operand.search(actual) is not None


#: operator name -> (test, word used in explanations). ``exists`` is special.
OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "equals": (_equals, "equals"),
    "not_equals": (lambda a, b: not _equals(a, b), "does not equal"),
    "in": (lambda a, b: any(_equals(a, item) for item in b), "is in"),
    "not_in": (lambda a, b: not any(_equals(a, item) for item in b), "is not in"),
    "glob": (_glob, "matches glob"),
    "regex": (_regex, "matches regex"),
    "contains": (_contains, "contains"),
    "lt": (_ordered(lambda a, b: a < b), "<"),
    "le": (_ordered(lambda a, b: a <= b), "<="),
    "gt": (_ordered(lambda a, b: a > b), ">"),
    "ge": (_ordered(lambda a, b: a >= b), ">="),
    "longer_than": (_seconds(lambda a, b: a > b), "is longer than"),
    "shorter_than": (_seconds(lambda a, b: a < b), "is shorter than"),
}
#: Operators whose operand is a duration (``90s``, ``1h30m``), held as seconds.
DURATION_OPERATORS = ("longer_than", "shorter_than")
ALIASES = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "equals", "!=": "not_equals"}


@dataclass(frozen=True, slots=True)
class Compare:
    """``field <op> operand``. A missing field never satisfies a comparison,
    not even a negative one (use ``exists`` to ask about absence)."""

    field: str
    path: tuple[str, ...]
    op: str
    operand: Any

    def evaluate(self, event: Event) -> Miss | None:
        actual = event.get(self.path)
        if actual is not MISSING and OPERATORS[self.op][0](actual, self.operand):
            return None
        return Miss(self, actual)

    def __str__(self) -> str:
        if self.op in DURATION_OPERATORS:
            return f"{self.field} {OPERATORS[self.op][1]} {self.operand:g}s"
        operand = self.operand.pattern if isinstance(self.operand, re.Pattern) else self.operand
        return f"{self.field} {OPERATORS[self.op][1]} {operand!r}"


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists: true`` holds when the field is present and not null."""

    field: str
    path: tuple[str, ...]
    expected: bool

    def evaluate(self, event: Event) -> Miss | None:
        actual = event.get(self.path)
        present = actual is not MISSING and actual is not None
        return None if present is self.expected else Miss(self, actual)

    def __str__(self) -> str:
        return f"{self.field} {'exists' if self.expected else 'does not exist'}"


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def evaluate(self, event: Event) -> Miss | None:
        for item in self.items:
            miss = item.evaluate(event)
            if miss is not None:
                return miss
        return None

    def __str__(self) -> str:
        return "all of [" + "; ".join(str(i) for i in self.items) + "]"


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def evaluate(self, event: Event) -> Miss | None:
        misses = []
        for item in self.items:
            miss = item.evaluate(event)
            if miss is None:
                return None
            misses.append(str(miss))
        return Miss("none of: " + "; ".join(misses), shows_value=False)

    def __str__(self) -> str:
        return "any of [" + "; ".join(str(i) for i in self.items) + "]"


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def evaluate(self, event: Event) -> Miss | None:
        if self.item.evaluate(event) is None:
            return Miss(f"not ({self.item}): it held", shows_value=False)
        return None

    def __str__(self) -> str:
        return f"not ({self.item})"
