"""The names of the metrics the daemon exports, for the tests of the pages, the
alerting rules and the dashboard that quote them."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from nova_autopilot.daemon.metrics import Metrics, Sources
from nova_autopilot.engine.sweeps import SweepCounts
from nova_autopilot.engine.tally import Tally

#: A metric name of the daemon's in a text (a page, a PromQL expression).
NAME = re.compile(r"\bnova_autopilot_[a-z_]+")


def exported_metrics() -> set[str]:
    """Every sample name the collector can produce (with the suffixes of
    counters and histograms), read from a scrape of an idle daemon that swept."""
    sources = Sources(
        version="0",
        tally=Tally().snapshot,
        intakes=list,
        nova_calls=dict,
        in_flight=dict,
        breakers=dict,
        sweeps=lambda: SweepCounts({}, 0, last_done_at=0.0),
    )
    text = Metrics(sources).exposition()[0].decode()
    found = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ())
        found.add(family.name)
        found.update(family.name + suffix for suffix in suffixes)
    return found
