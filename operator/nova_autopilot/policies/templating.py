"""Action parameters templated from event fields, with no way to run code.

The language is deliberately tiny: ``{{ field.path }}`` optionally followed by
filters, ``{{ payload.flavor | default("m1.small") | lower }}``. A field path
only reaches the event's normalized fields (``instance_id``,
``payload.flavor.name`` ...): no attributes, no calls, no expressions. A
string that is exactly one placeholder keeps the value's type; anything else
renders to a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nova_autopilot.errors import TemplateError
from nova_autopilot.events import MISSING, TOP_LEVEL_FIELDS, Event

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
_FILTER = re.compile(r"^([a-z_]+)\s*(?:\((.*)\))?$", re.S)
_LITERAL = re.compile(r'^("([^"\\]|\\.)*"|\'[^\']*\'|-?\d+(\.\d+)?|true|false|null)$')


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is MISSING or value is None else value


def _as_int(value: Any, _: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"cannot turn {value!r} into an integer") from None


_FILTERS: dict[str, tuple[Callable[[Any, Any], Any], bool]] = {
    # name -> (function, takes an argument)
    "default": (_default, True),
    "lower": (lambda v, _: v.lower() if isinstance(v, str) else v, False),
    "upper": (lambda v, _: v.upper() if isinstance(v, str) else v, False),
    "string": (lambda v, _: "" if v is None else str(v), False),
    "int": (_as_int, False),
}


def field_path(text: str) -> tuple[str, ...]:
    """Parse and check a dotted field path (``payload.flavor.name``)."""
    text = text.strip()
    if not _PATH.match(text):
        raise ValueError(f"{text!r} is not a field path such as payload.flavor.name")
    parts = tuple(text.split("."))
    if any(part.startswith("__") for part in parts):
        raise ValueError(f"{text!r}: names starting with '__' are not fields")
    if parts[0] != "payload" and parts[0] not in TOP_LEVEL_FIELDS:
        known = ", ".join(("payload.*", *TOP_LEVEL_FIELDS))
        raise ValueError(f"unknown field {parts[0]!r}; fields are: {known}")
    return parts


def _literal(text: str) -> Any:
    text = text.strip()
    if not _LITERAL.match(text):
        raise ValueError(
            f"filter argument {text!r} must be a quoted string, number, true, false or null"
        )
    if text.startswith("'"):
        return text[1:-1]
    return json.loads(text)


@dataclass(frozen=True, slots=True)
class Placeholder:
    source: str
    path: tuple[str, ...]
    filters: tuple[tuple[str, Any], ...]

    def render(self, event: Event) -> Any:
        value = event.get(self.path)
        for name, argument in self.filters:
            value = _FILTERS[name][0](value, argument)
        if value is MISSING:
            raise TemplateError(f"{{{{{self.source}}}}}: {'.'.join(self.path)} is missing")
        return value


def _placeholder(inner: str) -> Placeholder:
    head, *rest = inner.split("|")
    filters = []
    for part in rest:
        found = _FILTER.match(part.strip())
        if not found or found.group(1) not in _FILTERS:
            raise ValueError(f"unknown filter {part.strip()!r}; filters are: {', '.join(_FILTERS)}")
        name, argument = found.group(1), found.group(2)
        takes = _FILTERS[name][1]
        if takes != (argument is not None):
            raise ValueError(f"filter {name!r} {'needs' if takes else 'takes no'} argument")
        filters.append((name, _literal(argument) if argument is not None else None))
    return Placeholder(inner.strip(), field_path(head), tuple(filters))


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled parameter value: literal parts and placeholders."""

    parts: tuple[str | Placeholder, ...]

    def render(self, event: Event) -> Any:
        if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder):
            return self.parts[0].render(event)
        out = []
        for part in self.parts:
            value = part.render(event) if isinstance(part, Placeholder) else part
            out.append(value if isinstance(value, str) else json.dumps(value))
        return "".join(out)


def compile_template(text: str) -> Template | str:
    """Compile a string; a string without placeholders stays a plain string."""
    if "{{" not in text and "}}" not in text:
        return text
    parts: list[str | Placeholder] = []
    position = 0
    for found in _PLACEHOLDER.finditer(text):
        if found.start() > position:
            parts.append(text[position : found.start()])
        parts.append(_placeholder(found.group(1)))
        position = found.end()
    if position < len(text):
        parts.append(text[position:])
    if any(isinstance(p, str) and ("{{" in p or "}}" in p) for p in parts):
        raise ValueError("unbalanced {{ }} in template")
    return Template(tuple(parts))


def compile_value(value: Any) -> Any:
    """Compile every string inside a parameter value (dicts and lists too)."""
    if isinstance(value, str):
        return compile_template(value)
    if isinstance(value, dict):
        return {key: compile_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_value(item) for item in value]
    return value


def render_value(value: Any, event: Event) -> Any:
    """Render a compiled parameter value for one event."""
    if isinstance(value, Template):
        return value.render(event)
    if isinstance(value, dict):
        return {key: render_value(item, event) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, event) for item in value]
    return value
