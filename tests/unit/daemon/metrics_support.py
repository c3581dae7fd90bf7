"""Fake parts of a daemon for its metrics, and reading what a scrape exposes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from nova_autopilot.bus import CounterSnapshot, IntakeHealth
from nova_autopilot.daemon.metrics import Metrics, Sources
from nova_autopilot.engine.tally import Tally


def intake(name: str, source: str, queue: str, *, alive: bool, reconnects: int) -> IntakeHealth:
    return IntakeHealth(
        name=name,
        source=source,
        queue=queue,
        broker="amqp://rabbit:5672//",
        alive=alive,
        attached=alive,
        connected_since=datetime(2026, 1, 1, tzinfo=timezone.utc),
        reconnects=reconnects,
        last_error=None,
        in_flight=0,
        oldest_in_flight_s=None,
    )


def counts(received: int, handled: int, dead: Mapping[tuple[str, str], int]) -> CounterSnapshot:
    """An intake's counters with ``dead``: dead-lettered by (reason, event type)."""
    by_reason: dict[str, int] = {}
    for (reason, _), n in dead.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    return CounterSnapshot(
        received=received,
        handled=handled,
        dead_lettered=by_reason,
        dead_lettered_types=dict(dead),
    )


class Parts:
    """What a daemon's parts would report, changeable between scrapes."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.dead: dict[tuple[str, str], int] = {
            ("not_json", "unknown"): 2,
            ("retries_exhausted", "instance.update"): 1,
        }
        self.calls: dict[tuple[str, int], int] = {
            ("POST /v2.1/servers/{id}/action", 202): 3,
            ("GET /v2.1/servers/{id}", 200): 7,
            ("GET /v2.1/servers/{id}", 404): 1,
        }
        self.in_flight = {"resize": 1, "rescue": 0}
        self.breakers: dict[str, str] = {}
        self.held = {"queued": 2, "awaiting_approval": 1}

    def intakes(self) -> list[tuple[IntakeHealth, CounterSnapshot]]:
        return [
            (
                intake(
                    "notifications",
                    "nova",
                    "notifications.nova-autopilot",
                    alive=True,
                    reconnects=2,
                ),
                counts(10, 7, self.dead),
            ),
            (
                intake("requests", "request", "nova-autopilot.requests", alive=False, reconnects=0),
                counts(4, 2, {("bad_signature", "unknown"): 1, ("unknown_request", "x.y"): 1}),
            ),
        ]

    def sources(self) -> Sources:
        return Sources(
            version="1.2.3",
            tally=self.tally.snapshot,
            intakes=self.intakes,
            nova_calls=lambda: dict(self.calls),
            in_flight=lambda: dict(self.in_flight),
            breakers=lambda: dict(self.breakers),
            held=lambda: dict(self.held),
        )


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[name, tuple(sorted(labels.items()))]
