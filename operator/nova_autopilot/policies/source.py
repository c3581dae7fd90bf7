"""YAML text to plain values, remembering the line of every key and item.

Only YAML's safe core is accepted (no Python tags). Anchors and aliases are
allowed for reuse, but the expanded document is bounded in size and depth so
that an alias bomb is a clear error, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from nova_autopilot.errors import PolicyProblem

Path = tuple[str | int, ...]

MAX_NODES = 200_000
MAX_DEPTH = 32
MAX_BYTES = 4 * 1024 * 1024
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class Document:
    """One parsed YAML file: its data and the line of each path in it."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.nodes = 0
        self._loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(node, f"the document expands to more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise _Refused(node, f"the document is nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            raise _Refused(node, f"the tag {node.tag} is not allowed")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path, depth + 1)
                if not isinstance(key, str):
                    raise _Refused(key_node, f"keys must be strings, got {key!r}")
                if key in out:
                    raise _Refused(key_node, f"duplicate key {key!r}")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._loader.construct_object(node)


class _Refused(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1


def parse_yaml(text: str, *, file: str) -> tuple[Document | None, list[PolicyProblem]]:
    """Parse one YAML document; return it, or the problem that stops it."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return None, [PolicyProblem(file, None, None, "", f"file is larger than {MAX_BYTES} bytes")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
        return None, [PolicyProblem(file, line, None, "", f"not valid YAML: {problem}")]
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        return None, [PolicyProblem(file, None, None, "", f"not valid YAML: {exc}")]
    if node is None:
        return Document(file, None), []
    builder = _Builder(file)
    try:
        data = builder.build(node, (), 0)
    except _Refused as exc:
        return None, [PolicyProblem(file, exc.line, None, "", str(exc))]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        return None, [PolicyProblem(file, None, None, "", f"not valid YAML: {exc}")]
    return Document(file, data, builder.lines), []
