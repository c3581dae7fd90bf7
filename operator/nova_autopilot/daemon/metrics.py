"""Prometheus metrics: the only module that imports prometheus_client.

The parts keep their own plain counters (the engine's :class:`~nova_autopilot.engine.tally.Tally`,
each intake's counters and health, the cloud's request counter, the runner's
table of operations); :class:`AutopilotCollector` reads them at scrape time and
turns them into metric families. Each daemon has a registry of its own, so
several daemons in one process never mix their figures. ``docs/metrics.md``
describes every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nova_autopilot.actions.registry import MACHINES
from nova_autopilot.bus import CounterSnapshot, IntakeHealth
from nova_autopilot.engine.sweeps import SweepCounts
from nova_autopilot.engine.tally import TallySnapshot
from nova_autopilot.journal import OUTCOMES

__all__ = ["BREAKER_STATES", "AutopilotCollector", "Metrics", "Sources"]

PREFIX: Final = "nova_autopilot"
#: The value of ``nova_autopilot_breaker_state`` for each state a breaker reports.
BREAKER_STATES: Final = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}


def _no_breakers() -> Mapping[str, str]:
    return {}


def _none_held() -> Mapping[str, int]:
    return {}


def _no_sweeps() -> SweepCounts | None:
    return None


def _alone() -> bool:
    return True


@dataclass(frozen=True)
class Sources:
    """Where the figures come from, each read when Prometheus scrapes."""

    version: str
    tally: Callable[[], TallySnapshot]
    #: Every intake's health and counters.
    intakes: Callable[[], Sequence[tuple[IntakeHealth, CounterSnapshot]]]
    #: HTTP requests made to Nova, by (call, status).
    nova_calls: Callable[[], Mapping[tuple[str, int], int]]
    #: Operations in flight by action (every known action, zeros included).
    in_flight: Callable[[], Mapping[str, int]]
    #: Circuit breakers: scope -> closed, half-open or open.
    breakers: Callable[[], Mapping[str, str]] = field(default=_no_breakers)
    #: Operations decided and held before they run, by phase (queued, awaiting_approval).
    held: Callable[[], Mapping[str, int]] = field(default=_none_held)
    #: The sweeps so far (None: this process does not sweep).
    sweeps: Callable[[], SweepCounts | None] = field(default=_no_sweeps)
    #: Whether this daemon leads its group (always, alone).
    leader: Callable[[], bool] = field(default=_alone)
    #: Whether it is ready (``/readyz``: consumers attached, journal writable, Nova
    #: reachable lately) and alive (what the watchdog hears: its loops turn).
    ready: Callable[[], bool] = field(default=_alone)
    alive: Callable[[], bool] = field(default=_alone)


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


class AutopilotCollector(Collector):
    """Reads the parts' counters at scrape time."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        tally = self._sources.tally()
        yield from self._engine(tally)
        yield from self._bus(self._sources.intakes(), tally.duplicate_types)
        yield from self._runner(self._sources.in_flight(), self._sources.held())
        yield from self._cloud(self._sources.nova_calls())
        yield from self._breakers(self._sources.breakers())
        sweeps = self._sources.sweeps()
        if sweeps is not None:
            yield from self._sweeps(sweeps)
        leader = _gauge(
            "leader",
            "1 while this daemon leads its group and runs the group's periodic jobs "
            "(always, alone); 0 otherwise.",
            [],
        )
        leader.add_metric([], 1 if self._sources.leader() else 0)
        yield leader
        ready = _gauge(
            "ready",
            "1 while the daemon is ready (/readyz: every consumer attached, the journal "
            "takes a write, Nova answered lately); 0 otherwise.",
            [],
        )
        ready.add_metric([], 1 if self._sources.ready() else 0)
        yield ready
        alive = _gauge(
            "alive",
            "1 while the daemon really works (what its watchdog hears: consumers "
            "turning, no handler stuck past wedged_after, a free operation worker); "
            "0 while it is wedged.",
            [],
        )
        alive.add_metric([], 1 if self._sources.alive() else 0)
        yield alive
        info = _gauge("build_info", "The running version; always 1.", ["version"])
        info.add_metric([self._sources.version], 1)
        yield info

    def _engine(self, tally: TallySnapshot) -> Iterator[Metric]:
        received = _counter(
            "events_received_total",
            "Events given to the engine (after parsing and verification).",
            ["source", "event_type"],
        )
        for (source, event_type), n in sorted(tally.received.items()):
            received.add_metric([source, event_type], n)
        yield received
        matched = _counter(
            "events_matched_total",
            "Events that at least one policy matched.",
            ["source", "event_type"],
        )
        for (source, event_type), n in sorted(tally.matched.items()):
            matched.add_metric([source, event_type], n)
        yield matched
        decisions = _counter(
            "decisions_total", "Decisions of the policies, by outcome.", ["policy", "outcome"]
        )
        for (policy, outcome), n in sorted(tally.decisions.items()):
            decisions.add_metric([policy, outcome], n)
        yield decisions
        refusals = _counter(
            "guard_refusals_total", "Decisions refused, by the guard that refused.", ["guard"]
        )
        for guard, n in sorted(tally.refusals.items()):
            refusals.add_metric([guard], n)
        yield refusals
        finished = _counter(
            "operations_finished_total",
            "Operations finished, by action and outcome (refused and dry-run ones included).",
            ["action", "outcome"],
        )
        # Every action's every outcome from the start, at 0: an alert on the increase
        # of a series sees its first operation too (a series born at 1 shows none).
        every = dict.fromkeys(((a, o) for a in MACHINES for o in OUTCOMES), 0)
        for (action, outcome), n in sorted((every | dict(tally.finished)).items()):
            finished.add_metric([action, outcome], n)
        yield finished
        durations = HistogramMetricFamily(
            f"{PREFIX}_operation_duration_seconds",
            "Time from decision to outcome of the operations that ran.",
            labels=["action", "outcome"],
        )
        for (action, outcome), dist in sorted(tally.durations.items()):
            buckets = [
                (_bound(b), float(c)) for b, c in zip(dist.bounds, dist.cumulative, strict=True)
            ]
            buckets.append(("+Inf", float(dist.count)))
            durations.add_metric([action, outcome], buckets, sum_value=dist.total)
        yield durations

    def _bus(
        self,
        intakes: Sequence[tuple[IntakeHealth, CounterSnapshot]],
        duplicates: Mapping[tuple[str, str], int],
    ) -> Iterator[Metric]:
        dropped = _counter(
            "events_dropped_total",
            "Incoming messages not acted upon: dead-lettered (by their reason) or "
            "duplicates of a message already processed; event_type is unknown for a "
            "message that did not become an event.",
            ["source", "event_type", "reason"],
        )
        by_source: dict[tuple[str, str, str], int] = {}
        for health, counts in intakes:
            for (reason, event_type), n in counts.dead_lettered_types.items():
                key = (health.source, event_type, reason)
                by_source[key] = by_source.get(key, 0) + n
        for (source, event_type), n in duplicates.items():
            key = (source, event_type, "duplicate")
            by_source[key] = by_source.get(key, 0) + n
        for labels, n in sorted(by_source.items()):
            dropped.add_metric(list(labels), n)
        yield dropped
        dead = _counter(
            "dead_lettered_total",
            "Messages dead-lettered, by queue and reason.",
            ["queue", "reason"],
        )
        reconnects = _counter(
            "broker_reconnects_total",
            "Times a consumer lost its broker connection and connected again.",
            ["consumer"],
        )
        up = _gauge(
            "consumer_up",
            "1 while the consumer is attached to its queue and turning.",
            ["consumer"],
        )
        for health, counts in sorted(intakes, key=lambda pair: pair[0].name):
            for reason, n in sorted(counts.dead_lettered.items()):
                dead.add_metric([health.queue, reason], n)
            reconnects.add_metric([health.name], health.reconnects)
            up.add_metric([health.name], 1 if health.alive else 0)
        yield dead
        yield reconnects
        yield up

    def _runner(self, in_flight: Mapping[str, int], held: Mapping[str, int]) -> Iterator[Metric]:
        gauge = _gauge("operations_in_flight", "Operations started and not finished.", ["action"])
        for action, n in sorted(in_flight.items()):
            gauge.add_metric([action], n)
        yield gauge
        waiting = _gauge(
            "operations_held",
            "Operations decided and held before they run: queued behind their server's "
            "operation, or awaiting an operator's approval.",
            ["phase"],
        )
        for phase, n in sorted(held.items()):
            waiting.add_metric([phase], n)
        yield waiting

    def _cloud(self, calls: Mapping[tuple[str, int], int]) -> Iterator[Metric]:
        requests = _counter(
            "nova_requests_total",
            "HTTP requests made to Nova, by call (method and path, ids as {id}) and status.",
            ["call", "status"],
        )
        for (call, status), n in sorted(calls.items()):
            requests.add_metric([call, str(status)], n)
        yield requests

    def _breakers(self, breakers: Mapping[str, str]) -> Iterator[Metric]:
        gauge = _gauge(
            "breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", ["scope"]
        )
        for scope, state in sorted(breakers.items()):
            value = BREAKER_STATES.get(state)
            if value is not None:
                gauge.add_metric([scope], value)
        yield gauge

    def _sweeps(self, sweeps: SweepCounts) -> Iterator[Metric]:
        results = _counter("sweeps_total", "Sweeps of Nova's server states, by result.", ["result"])
        for result in ("done", "failed", "not_leader", "no_policy"):
            results.add_metric([result], sweeps.by_result.get(result, 0))
        yield results
        events = _counter("sweep_events_total", "Events the sweeps handed to the engine.", [])
        events.add_metric([], sweeps.events)
        yield events
        if sweeps.last_done_at is not None:
            last = _gauge(
                "sweep_last_done_timestamp_seconds", "When the last done sweep looked.", []
            )
            last.add_metric([], sweeps.last_done_at)
            yield last


class Metrics:
    """A daemon's registry (never the process-wide default) and its exposition."""

    def __init__(self, sources: Sources) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AutopilotCollector(sources))

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
