"""Whether the daemon is really working: what the systemd watchdog is fed on.

The daemon is alive when every consumer is attached to its queue and its
thread turns, no message has been in a handler (or waiting for one) longer
than ``wedged_after`` seconds, and the operation runner can still run a task
within that time. A handler stuck on a journal write behind a database lock,
or a worker pool whose every thread hangs, is *wedged*: the process still
runs but does no work, and only a restart helps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nova_autopilot.bus import BusHealth

__all__ = ["Liveness", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``alive``, or the reasons it is not (one short phrase each)."""

    alive: bool
    problems: tuple[str, ...] = ()


class Liveness:
    """Judges the bus's health and the runner's responsiveness.

    ::

        liveness = Liveness(bus_health=bus.health, runner_responsive=runner.responsive,
                            wedged_after=20.0)
        verdict = liveness.check()      # Verdict(alive=False, problems=("requests: ...",))
    """

    def __init__(
        self,
        *,
        bus_health: Callable[[], BusHealth],
        runner_responsive: Callable[[float], bool],
        wedged_after: float,
    ) -> None:
        self._bus_health = bus_health
        self._runner_responsive = runner_responsive
        self.wedged_after = wedged_after

    def check(self) -> Verdict:
        problems = [*self._bus_problems(), *self._runner_problems()]
        return Verdict(alive=not problems, problems=tuple(problems))

    def _bus_problems(self) -> list[str]:
        problems = []
        for intake in self._bus_health().intakes:
            if not intake.attached:
                reason = f" ({intake.last_error})" if intake.last_error else ""
                problems.append(f"{intake.name} consumer not attached{reason}")
            elif not intake.alive:
                problems.append(f"{intake.name} consumer not turning")
            oldest = intake.oldest_in_flight_s
            if oldest is not None and oldest >= self.wedged_after:
                problems.append(f"{intake.name} handler wedged for {oldest:.0f} s")
        return problems

    def _runner_problems(self) -> list[str]:
        if self._runner_responsive(self.wedged_after):
            return []
        return [f"operation workers wedged (no free worker within {self.wedged_after:g} s)"]
