"""Which policies an event triggers: pure, and indexed by event type.

Policies are indexed by ``(source, event_type)``: exact event types go in a
dict, glob patterns are resolved once per distinct event type and the result
is cached. The cost of matching an event therefore depends on the policies
that *can* match it, not on how many policies exist.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from nova_autopilot.errors import TemplateError
from nova_autopilot.events import Event
from nova_autopilot.policies.model import Policy
from nova_autopilot.policies.templating import render_value

_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Match:
    """A policy that fired for an event, with its rendered parameters.

    ``error`` is set (and ``params`` empty) when the policy matched but a
    parameter could not be rendered: that is a permanent failure of this
    decision, to be recorded and reported.
    """

    policy: Policy
    action: str
    params: dict[str, Any]
    error: str | None = None

    @property
    def dry_run(self) -> bool:
        return self.policy.mode == "dry-run"


@dataclass(frozen=True, slots=True)
class Explanation:
    """``explain``'s answer for one policy: matched, or the first reason why not."""

    policy: str
    matched: bool
    reason: str
    match: Match | None = None


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _source_ok(policy: Policy, event: Event) -> bool:
    return policy.when.source == "any" or policy.when.source == event.source


def render(policy: Policy, event: Event) -> Match:
    try:
        params = render_value(policy.do.params, event)
    except TemplateError as exc:
        return Match(policy, policy.do.action, {}, error=str(exc))
    return Match(policy, policy.do.action, params)


@dataclass(frozen=True)
class PolicySet:
    """An immutable, validated set of policies with its match index."""

    policies: tuple[Policy, ...]
    _exact: dict[str, tuple[Policy, ...]] = field(init=False, repr=False, compare=False)
    _globs: tuple[tuple[str, Policy], ...] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, str], tuple[Policy, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, list[Policy]] = {}
        globs: list[tuple[str, Policy]] = []
        for policy in self.policies:
            if not policy.enabled:
                continue
            for pattern in dict.fromkeys(policy.when.events):
                if _is_glob(pattern):
                    globs.append((pattern, policy))
                else:
                    exact.setdefault(pattern, []).append(policy)
        object.__setattr__(self, "_exact", {k: tuple(v) for k, v in exact.items()})
        object.__setattr__(self, "_globs", tuple(globs))
        object.__setattr__(self, "_cache", {})

    def __len__(self) -> int:
        return len(self.policies)

    def by_name(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def candidates(self, event: Event) -> tuple[Policy, ...]:
        """Enabled policies whose source and event types admit this event, in
        declaration order."""
        return self._candidates(event.source, event.event_type)

    def _candidates(self, source: str, event_type: str) -> tuple[Policy, ...]:
        key = (source, event_type)
        found = self._cache.get(key)
        if found is None:
            chosen = {p.order: p for p in self._exact.get(event_type, ())}
            for pattern, policy in self._globs:
                if fnmatch.fnmatchcase(event_type, pattern):
                    chosen[policy.order] = policy
            found = tuple(p for _, p in sorted(chosen.items()) if p.when.source in ("any", source))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def listening(self, source: str, event_types: tuple[str, ...]) -> tuple[str, ...]:
        """Which of ``event_types`` of ``source`` some enabled policy listens to
        (whatever its condition), from the same index as matching."""
        return tuple(t for t in event_types if self._candidates(source, t))

    def match(self, event: Event) -> list[Match]:
        """Every policy that fires for ``event``, in declaration order."""
        matches = []
        for policy in self.candidates(event):
            condition = policy.when.condition
            if condition is None or condition.evaluate(event) is None:
                matches.append(render(policy, event))
        return matches

    def explain(self, event: Event) -> list[Explanation]:
        """For every policy, matched or not, and the first reason why not."""
        found = []
        for policy in self.policies:
            found.append(self._explain(policy, event))
        return found

    def _explain(self, policy: Policy, event: Event) -> Explanation:
        if not policy.enabled:
            return Explanation(policy.name, False, "policy is disabled")
        if not _source_ok(policy, event):
            return Explanation(
                policy.name,
                False,
                f"source is {event.source!r}, the policy listens to {policy.when.source!r}",
            )
        if not any(fnmatch.fnmatchcase(event.event_type, p) for p in policy.when.events):
            wanted = ", ".join(policy.when.events)
            return Explanation(
                policy.name, False, f"event type {event.event_type!r} is not one of: {wanted}"
            )
        condition = policy.when.condition
        miss = condition.evaluate(event) if condition is not None else None
        if miss is not None:
            return Explanation(policy.name, False, f"condition failed: {miss}")
        match = render(policy, event)
        if match.error:
            return Explanation(
                policy.name, True, f"matched, but parameters failed: {match.error}", match
            )
        return Explanation(policy.name, True, "all conditions held", match)
