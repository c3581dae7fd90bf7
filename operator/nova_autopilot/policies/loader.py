"""Policy files to a validated :class:`PolicySet`, every mistake reported at once.

Each problem names its file, line, policy and field. Nothing is half-loaded:
either the whole set is valid, or :class:`~nova_autopilot.errors.PolicyError`
lists everything that is wrong with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nova_autopilot.errors import PolicyError, PolicyProblem
from nova_autopilot.policies import conditions as c
from nova_autopilot.policies.event_types import EventTypes, declared_types
from nova_autopilot.policies.matching import PolicySet
from nova_autopilot.policies.model import (
    ACTIONS,
    BUDGET_SCOPES,
    GATE_CHECKS,
    BreakerLimits,
    Budget,
    Confirm,
    Do,
    GateCheck,
    Limits,
    Policy,
    When,
)
from nova_autopilot.policies.source import Document, parse_yaml
from nova_autopilot.policies.source import Path as DocPath
from nova_autopilot.policies.templating import compile_value, field_path

SCHEMA_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_EVENT_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,255}$")
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)([smhd]))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COMBINATORS = ("all", "any", "not")
MODES = ("enforce", "dry-run", "approve")
SOURCES = ("nova", "request", "autopilot", "sweep", "any")
WHEN_BUSY = ("refuse", "wait")


class _Invalid(Exception):
    """Raised inside a section reader after its problem was recorded."""


class _Reader:
    """Reads one document, recording problems with their location."""

    def __init__(
        self, doc: Document, problems: list[PolicyProblem], *, strict: bool = False
    ) -> None:
        self.doc = doc
        self.problems = problems
        self.policy: str | None = None
        self.base: DocPath = ()
        #: The known event types, when ``when.event`` is checked against them.
        self.types = EventTypes() if strict else None
        #: Whether a file without policies is a problem (as ``check`` reads files).
        self.strict = strict
        #: Every policy's name as written, valid or not, with its line (duplicates).
        self.names: list[tuple[str, int | None]] = []

    def problem(self, rel: DocPath, message: str) -> _Invalid:
        path = (*self.base, *rel)
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in rel)
        field = field.replace(".[", "[")
        line = self.doc.line_of(path)
        self.problems.append(PolicyProblem(self.doc.file, line, self.policy, field, message))
        return _Invalid()

    def mapping(self, value: Any, rel: DocPath, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.problem(rel, f"must be a mapping, got {_kind(value)}")
        unknown = sorted(set(value) - set(allowed))
        for key in unknown:
            self.problem((*rel, key), f"unknown key; allowed: {', '.join(sorted(allowed))}")
        return value

    def duration(self, value: Any, rel: DocPath) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str) and _DURATION_RE.match(value.strip()):
            return float(
                sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value.strip()))
            )
        raise self.problem(
            rel, f"must be a duration such as 90s, 15m, 1h30m or seconds; got {value!r}"
        )

    def one_of(self, value: Any, rel: DocPath, choices: Iterable[str]) -> str:
        options = tuple(choices)
        if value not in options:
            raise self.problem(rel, f"must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    def section(self, fn: Any, *args: Any) -> Any:
        """Run a section reader; a broken section is recorded, not fatal."""
        try:
            return fn(*args)
        except _Invalid:
            return None


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _condition(r: _Reader, value: Any, rel: DocPath) -> c.Condition:
    if isinstance(value, list):
        if not value:
            raise r.problem(rel, "a list of conditions must not be empty")
        return c.AllOf(tuple(_condition(r, item, (*rel, i)) for i, item in enumerate(value)))
    if not isinstance(value, dict):
        raise r.problem(rel, f"a condition must be a mapping, got {_kind(value)}")
    combinators = [key for key in _COMBINATORS if key in value]
    if combinators:
        if len(value) != 1:
            raise r.problem(rel, f"{combinators[0]!r} must stand alone in its mapping")
        key = combinators[0]
        inner = value[key]
        if key == "not":
            return c.Not(_condition(r, inner, (*rel, "not")))
        if not isinstance(inner, list) or not inner:
            raise r.problem((*rel, key), "must be a non-empty list of conditions")
        items = tuple(_condition(r, item, (*rel, key, i)) for i, item in enumerate(inner))
        return c.AllOf(items) if key == "all" else c.AnyOf(items)
    if "field" not in value:
        raise r.problem(rel, "a condition needs 'field' and one operator, or all/any/not")
    try:
        path = field_path(value["field"]) if isinstance(value["field"], str) else None
    except ValueError as exc:
        raise r.problem((*rel, "field"), str(exc)) from None
    if path is None:
        raise r.problem((*rel, "field"), "must be a field path such as payload.state")
    ops = [key for key in value if key != "field"]
    names = [c.ALIASES.get(op, op) for op in ops]
    valid = [*c.OPERATORS, "exists"]
    if len(ops) != 1 or names[0] not in valid:
        raise r.problem(rel, f"needs exactly one operator of: {', '.join(valid)}; got {ops}")
    op, name = ops[0], names[0]
    return _comparison(r, value["field"], path, name, value[op], (*rel, op))


def _comparison(
    r: _Reader, field: str, path: tuple[str, ...], op: str, operand: Any, rel: DocPath
) -> c.Condition:
    scalar = (str, int, float, bool, type(None))
    if op == "exists":
        if not isinstance(operand, bool):
            raise r.problem(rel, "must be true or false")
        return c.Exists(field, path, operand)
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or not all(isinstance(i, scalar) for i in operand):
            raise r.problem(rel, "must be a list of plain values")
    elif op == "glob":
        if not isinstance(operand, str):
            raise r.problem(rel, "must be a glob string such as 'm1.*'")
    elif op == "regex":
        if not isinstance(operand, str):
            raise r.problem(rel, "must be a regular expression string")
        try:
            operand = re.compile(operand)
        except re.error as exc:
            raise r.problem(rel, f"is not a valid regular expression: {exc}") from None
    elif op in c.DURATION_OPERATORS:
        operand = r.duration(operand, rel)
    elif op in ("lt", "le", "gt", "ge"):
        if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
            raise r.problem(rel, "must be a number or a string")
    elif not isinstance(operand, scalar):
        raise r.problem(rel, "must be a plain value (string, number, boolean or null)")
    return c.Compare(field, path, op, operand)


def _when(r: _Reader, value: Any) -> When:
    """Every part is read even when another is wrong, so that all are reported."""
    when = r.mapping(value, ("when",), ("source", "event", "match"))
    source = r.section(r.one_of, when.get("source", "any"), ("when", "source"), SOURCES)
    events = r.section(_events, r, when.get("event"), source or "any")
    condition = (
        r.section(_condition, r, when["match"], ("when", "match")) if "match" in when else None
    )
    if source is None or events is None or ("match" in when and condition is None):
        raise _Invalid()
    return When(source, events, condition)


def _events(r: _Reader, value: Any, source: str) -> tuple[str, ...]:
    """``when.event``: types or globs that name events ``source`` can send."""
    events = [value] if isinstance(value, str) else value
    if not isinstance(events, list) or not events:
        raise r.problem(("when", "event"), "must name an event type (or a list; globs allowed)")
    valid = True
    for i, event in enumerate(events):
        rel = ("when", "event", i) if isinstance(value, list) else ("when", "event")
        if not isinstance(event, str) or not _EVENT_RE.match(event):
            r.problem(rel, f"{event!r} is not an event type or glob")
            valid = False
            continue
        unknown = None if r.types is None else r.types.problem(source, event)
        if unknown is not None:
            r.problem(rel, unknown)
            valid = False
    if not valid:
        raise _Invalid()
    return tuple(events)


def _do(r: _Reader, value: Any) -> Do:
    do = r.mapping(value, ("do",), ("action", "params"))
    action = r.one_of(do.get("action"), ("do", "action"), ACTIONS)
    spec = ACTIONS[action]
    params = r.mapping(do.get("params", {}), ("do", "params"), (*spec.required, *spec.optional))
    for name in spec.required:
        if name not in params:
            r.problem(("do", "params"), f"action {action!r} needs parameter {name!r}")
    compiled = {}
    for name, item in params.items():
        try:
            compiled[name] = compile_value(item)
        except ValueError as exc:
            r.problem(("do", "params", name), str(exc))
    return Do(action, compiled)


def _confirm(r: _Reader, value: Any, action: str | None) -> Confirm:
    conf = r.mapping(
        value, ("confirm",), ("timeout", "gate", "gate_timeout", "on_failure", "task_timeout")
    )
    spec = ACTIONS.get(action or "")
    on_failure = spec.default_on_failure if spec else "leave"
    if "on_failure" in conf and spec:
        on_failure = r.one_of(conf["on_failure"], ("confirm", "on_failure"), spec.on_failure)
    gate = []
    checks = conf.get("gate", [])
    if not isinstance(checks, list):
        raise r.problem(("confirm", "gate"), "must be a list of checks such as {tcp: {port: 22}}")
    for i, check in enumerate(checks):
        rel = ("confirm", "gate", i)
        if not isinstance(check, dict) or len(check) != 1 or next(iter(check)) not in GATE_CHECKS:
            raise r.problem(rel, f"each check is one of: {', '.join(GATE_CHECKS)}")
        kind, settings = next(iter(check.items()))
        allowed = GATE_CHECKS[kind]
        settings = r.mapping(settings, (*rel, kind), allowed)
        typed = {}
        for key, item in settings.items():
            if key in allowed and (isinstance(item, bool) or not isinstance(item, allowed[key])):
                r.problem((*rel, kind, key), f"has the wrong type ({_kind(item)})")
            elif key in allowed:
                typed[key] = item
        if kind == "tcp" and "port" not in settings:
            r.problem((*rel, kind), "needs a port")
        passable = _tcp_check if kind == "tcp" else _console_check
        gate.append(GateCheck(kind, {**settings, **passable(r, typed, (*rel, kind))}))
    return Confirm(
        timeout_s=r.duration(conf.get("timeout", 900), ("confirm", "timeout")),
        gate=tuple(gate),
        gate_timeout_s=r.duration(conf.get("gate_timeout", 300), ("confirm", "gate_timeout")),
        on_failure=on_failure,
        task_timeout_s=r.duration(conf.get("task_timeout", 120), ("confirm", "task_timeout")),
    )


def _tcp_check(r: _Reader, settings: dict[str, Any], rel: DocPath) -> dict[str, Any]:
    """A ``tcp`` check that can pass: a TCP port, a timeout above zero (kept in
    seconds, as the gate reads it)."""
    port = settings.get("port")
    if port is not None and not 0 < port <= 65535:
        r.problem((*rel, "port"), f"must be a TCP port, 1-65535; got {port!r}")
    if "timeout" not in settings:
        return {}
    seconds = r.section(r.duration, settings["timeout"], (*rel, "timeout"))
    if seconds is None:
        return {}
    if not 0 < seconds < math.inf:
        r.problem(
            (*rel, "timeout"),
            f"must be a duration longer than zero, such as 5s; got {settings['timeout']!r}",
        )
        return {}
    return {"timeout": seconds}


def _console_check(r: _Reader, settings: dict[str, Any], rel: DocPath) -> dict[str, Any]:
    """A ``console`` check that can pass: its unwanted marker is not part of its
    wanted one (the console could never show one without the other), and it reads
    some line when it looks for a marker."""
    wanted, unwanted = settings.get("contains"), settings.get("not_contains")
    if wanted and unwanted and unwanted in wanted:
        r.problem(
            (*rel, "not_contains"),
            f"{unwanted!r} is part of contains ({wanted!r}): the console can never show "
            "the one without the other, so the check can never pass",
        )
    if wanted and settings.get("lines") == 0:
        r.problem(
            (*rel, "lines"),
            f"0 reads no line of the console, so it can never show contains ({wanted!r})",
        )
    return {}


_LIMIT_KEYS = (
    "cooldown",
    "budget",
    *(f"budget_per_{scope}" for scope in BUDGET_SCOPES),
    "max_concurrent",
    "loop",
    "breaker",
    "when_busy",
    "max_wait",
)


def _count(r: _Reader, value: Any, rel: DocPath, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        word = "at least 1" if minimum == 1 else f"at least {minimum}"
        raise r.problem(rel, f"must be a whole number of {word}; got {value!r}")
    return value


def _window(r: _Reader, value: Any, rel: DocPath) -> Budget:
    """``{max: N, per: DURATION}``: at most N in any window of that length."""
    spec = r.mapping(value, rel, ("max", "per"))
    if "per" not in spec:
        raise r.problem(rel, "needs 'per', the length of the window (such as 1h)")
    count = _count(r, spec.get("max"), (*rel, "max"))
    per = r.duration(spec["per"], (*rel, "per"))
    if per <= 0:
        raise r.problem((*rel, "per"), "must be longer than zero")
    return Budget(count, per)


def _breaker(r: _Reader, value: Any) -> BreakerLimits:
    rel: DocPath = ("limits", "breaker")
    spec = r.mapping(value, rel, ("failures", "window", "half_open_after"))
    failures = (
        _count(r, spec["failures"], (*rel, "failures"), minimum=0) if "failures" in spec else None
    )
    durations = {}
    for key in ("window", "half_open_after"):
        if key in spec:
            durations[key] = r.duration(spec[key], (*rel, key))
            if durations[key] <= 0:
                r.problem((*rel, key), "must be longer than zero")
    return BreakerLimits(failures, durations.get("window"), durations.get("half_open_after"))


def _limits(r: _Reader, value: Any) -> Limits:
    lim = r.mapping(value, ("limits",), _LIMIT_KEYS)
    cooldown = r.duration(lim["cooldown"], ("limits", "cooldown")) if "cooldown" in lim else None
    windows: dict[str, Budget | None] = {}
    for key in ("budget", *(f"budget_per_{scope}" for scope in BUDGET_SCOPES), "loop"):
        windows[key] = r.section(_window, r, lim[key], ("limits", key)) if key in lim else None
    concurrent = None
    if "max_concurrent" in lim:
        concurrent = r.section(_count, r, lim["max_concurrent"], ("limits", "max_concurrent"))
    breaker = r.section(_breaker, r, lim["breaker"]) if "breaker" in lim else BreakerLimits()
    when_busy = r.one_of(lim.get("when_busy", "refuse"), ("limits", "when_busy"), WHEN_BUSY)
    max_wait = r.duration(lim.get("max_wait", 900), ("limits", "max_wait"))
    if "max_wait" in lim and when_busy != "wait":
        raise r.problem(("limits", "max_wait"), "applies only with when_busy: wait")
    broken = [key for key in windows if key in lim and windows[key] is None]
    if broken or breaker is None or ("max_concurrent" in lim and concurrent is None):
        raise _Invalid()
    return Limits(
        cooldown_s=cooldown,
        budget=windows["budget"],
        budget_per_project=windows["budget_per_project"],
        budget_per_host=windows["budget_per_host"],
        budget_per_zone=windows["budget_per_zone"],
        max_concurrent=concurrent,
        loop=windows["loop"],
        breaker=breaker,
        when_busy=when_busy,  # type: ignore[arg-type]
        max_wait_s=max_wait,
    )


_POLICY_KEYS = ("name", "description", "enabled", "mode", "when", "do", "confirm", "limits")


def _policy(r: _Reader, value: Any, order: int) -> Policy | None:
    if not isinstance(value, dict):
        r.problem((), f"a policy must be a mapping, got {_kind(value)}")
        return None
    name = value.get("name")
    r.policy = name if isinstance(name, str) else None
    if isinstance(name, str):
        r.names.append((name, r.doc.line_of(r.base)))
    r.mapping(value, (), _POLICY_KEYS)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        r.problem(("name",), "must be 1-64 lower-case letters, digits, '.', '_' or '-'")
    description = value.get("description", "")
    if not isinstance(description, str):
        r.problem(("description",), "must be text")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        r.problem(("enabled",), "must be true or false")
    mode = r.section(r.one_of, value.get("mode", "enforce"), ("mode",), MODES)
    for required in ("when", "do"):
        if required not in value:
            r.problem((), f"needs a {required!r} section")
    when = r.section(_when, r, value["when"]) if "when" in value else None
    do = r.section(_do, r, value["do"]) if "do" in value else None
    confirm = r.section(_confirm, r, value.get("confirm", {}), do.action if do else None)
    limits = r.section(_limits, r, value.get("limits", {}))
    if (
        not isinstance(when, When)
        or not isinstance(do, Do)
        or confirm is None
        or limits is None
        or mode is None
        or not isinstance(name, str)
    ):
        return None
    return Policy(
        name=name,
        description=description if isinstance(description, str) else "",
        enabled=enabled is not False,
        mode=mode,
        when=when,
        do=do,
        confirm=confirm,
        limits=limits,
        file=r.doc.file,
        line=r.doc.line_of(r.base),
        order=order,
    )


def read_document(doc: Document, problems: list[PolicyProblem], first: int = 0) -> list[Policy]:
    """Every valid policy of one document; problems go into ``problems``."""
    return _read(_Reader(doc, problems), first)


def _read(r: _Reader, first: int) -> list[Policy]:
    if r.doc.data is None:
        if r.strict:
            r.problem((), "the file is empty: it has no policies")
        return []
    try:
        top = r.mapping(r.doc.data, (), ("version", "event_types", "policies"))
    except _Invalid:
        return []
    if top.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
        r.problem(("version",), f"only version {SCHEMA_VERSION} is understood")
    if "event_types" in top:
        declared, wrong = declared_types(top["event_types"])
        for rel, message in wrong:
            r.problem(("event_types", *rel), message)
        if r.types is not None:
            r.types = EventTypes(declared)
    items = top.get("policies", [])
    if not isinstance(items, list):
        r.problem(("policies",), "must be a list of policies")
        return []
    if not items and r.strict:
        r.problem(("policies",) if "policies" in top else (), "the file has no policies")
    policies = []
    for i, item in enumerate(items):
        r.base, r.policy = ("policies", i), None
        policy = _policy(r, item, first + i)
        if policy is not None:
            policies.append(policy)
    r.base, r.policy = (), None
    return policies


def policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_texts(texts: Iterable[tuple[str, str]], *, strict: bool = False) -> PolicySet:
    """Validate policy documents given as ``(file name, text)`` pairs.

    ``strict``: read them as ``nova-autopilot check`` does: also refuse a
    ``when.event`` that names no type the daemon can receive (:mod:`.event_types`)
    and a file without policies (which the daemon runs, doing nothing)."""
    problems: list[PolicyProblem] = []
    policies: list[Policy] = []
    seen: dict[str, tuple[str, int | None]] = {}
    for file, text in texts:
        doc, found = parse_yaml(text, file=file)
        problems.extend(found)
        if doc is None:
            continue
        reader = _Reader(doc, problems, strict=strict)
        valid = {(p.name, p.line): p for p in _read(reader, len(policies))}
        for name, line in reader.names:
            if name in seen:
                first_file, first_line = seen[name]
                problems.append(
                    PolicyProblem(
                        file,
                        line,
                        name,
                        "name",
                        f"duplicate policy name (first defined at {first_file}:{first_line})",
                    )
                )
                continue
            seen[name] = (file, line)
            if (name, line) in valid:
                policies.append(valid[(name, line)])
    if problems:
        raise PolicyError(problems)
    return PolicySet(tuple(policies))


def load_policies(path: str | Path, *, strict: bool = False) -> PolicySet:
    """Load a policy file, or every ``*.yaml``/``*.yml`` file of a directory
    (``strict``: as :func:`load_texts`)."""
    root = Path(path)
    if not root.exists():
        raise PolicyError([PolicyProblem(str(root), None, None, "", "no such file or directory")])
    files = policy_files(root)
    if not files:
        raise PolicyError([PolicyProblem(str(root), None, None, "", "no *.yaml policy files")])
    texts = []
    for file in files:
        try:
            texts.append((str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(
                [PolicyProblem(str(file), None, None, "", f"cannot read: {exc}")]
            ) from None
    return load_texts(texts, strict=strict)
