"""Fault injection: what goes wrong in the sandbox, and when.

Two kinds of faults:

* **HTTP faults** answer the next N matching API requests with an error
  (500 or 503, say) before the request reaches the compute API. They match
  on method, route (``/servers/{id}/action``), action name and server id.
* **Server faults** change what happens *inside* Nova for a server: an
  operation that fails (``spawn``, ``no_valid_host``, ``reboot``,
  ``power_on``, ``resize``, ``rescue``, ``unrescue``), a resize refused for
  quota (403), what the console shows, and phases that take longer.

Server faults are set for one server, for every server, or for servers
whose name starts with a prefix. The built-in prefixes let a client ask for
a fault through the API alone: ``fail-spawn-`` (the boot fails, the server
never launched), ``fail-boot-`` (it boots, then every reboot and power-on
fails: the rescuable failed boot), ``no-valid-host-`` (no host fits) and
``slow-resize-`` (resizes move the disk for 5 seconds).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nova_autopilot.sandbox.durations import Durations

OPERATIONS = frozenset(
    {"spawn", "no_valid_host", "reboot", "power_on", "resize", "rescue", "unrescue"}
)
CONSOLES = ("ok", "panic", "emergency")
SLOW_RESIZE_SECONDS = 5.0


@dataclass(frozen=True)
class ServerFaults:
    """What goes wrong for a server."""

    fail: frozenset[str] = frozenset()
    console: str | None = None
    """``ok``, ``panic``, ``emergency``, or any other text to show as it is."""
    quota_exceeded: bool = False
    delays: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Phase (see :class:`~nova_autopilot.sandbox.durations.Durations`) -> seconds."""

    def __post_init__(self) -> None:
        unknown = set(self.fail) - OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")
        phases = set(Durations.phases())
        bad = [phase for phase in self.delays if phase not in phases]
        if bad:
            raise ValueError(f"unknown phases {sorted(bad)}; known: {sorted(phases)}")

    def fails(self, operation: str) -> bool:
        return operation in self.fail

    def over(self, base: ServerFaults) -> ServerFaults:
        """These faults on top of ``base`` (what is set here wins)."""
        return ServerFaults(
            fail=base.fail | self.fail,
            console=self.console if self.console is not None else base.console,
            quota_exceeded=base.quota_exceeded or self.quota_exceeded,
            delays={**base.delays, **self.delays},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fail": sorted(self.fail),
            "console": self.console,
            "quota_exceeded": self.quota_exceeded,
            "delays": dict(self.delays),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerFaults:
        """From the admin endpoint's JSON; raises ``ValueError`` on anything unknown."""
        known = {"fail", "console", "quota_exceeded", "delays"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown fault fields {sorted(extra)}; known: {sorted(known)}")
        fail = data.get("fail", [])
        if isinstance(fail, str):
            fail = [fail]
        console = data.get("console")
        delays = data.get("delays", {})
        if not isinstance(delays, Mapping):
            raise ValueError("delays must map phases to seconds")
        return cls(
            fail=frozenset(str(op) for op in fail),
            console=None if console is None else str(console),
            quota_exceeded=bool(data.get("quota_exceeded", False)),
            delays={str(k): float(v) for k, v in delays.items()},
        )


NO_FAULTS = ServerFaults()

BUILTIN_PREFIXES: dict[str, ServerFaults] = {
    "fail-spawn-": ServerFaults(fail=frozenset({"spawn"})),
    "fail-boot-": ServerFaults(fail=frozenset({"reboot", "power_on"})),
    "no-valid-host-": ServerFaults(fail=frozenset({"no_valid_host"})),
    "slow-resize-": ServerFaults(delays={"resize_migrate": SLOW_RESIZE_SECONDS}),
}


@dataclass
class HttpFault:
    """Answer the next ``times`` matching requests with ``status``."""

    status: int
    times: int = 1
    method: str | None = None
    route: str | None = None
    """A route pattern such as ``/servers/{id}/action`` (without the ``/v2.1`` prefix)."""
    action: str | None = None
    """For ``POST /servers/{id}/action``: the action name (``confirmResize``...)."""
    server_id: str | None = None

    def matches(self, method: str, route: str, action: str | None, server_id: str | None) -> bool:
        return (
            (self.method is None or self.method.upper() == method)
            and (self.route is None or self.route == route)
            and (self.action is None or self.action == action)
            and (self.server_id is None or self.server_id == server_id)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "times": self.times,
            "method": self.method,
            "route": self.route,
            "action": self.action,
            "server_id": self.server_id,
        }


class FaultBook:
    """Every fault currently asked for (thread-safe)."""

    def __init__(self, prefixes: Mapping[str, ServerFaults] | None = None) -> None:
        self._lock = threading.Lock()
        self._http: list[HttpFault] = []
        self._servers: dict[str, ServerFaults] = {}
        self._everyone = NO_FAULTS
        self._prefixes = dict(BUILTIN_PREFIXES if prefixes is None else prefixes)

    # -- HTTP ------------------------------------------------------------------------

    def add_http(self, fault: HttpFault) -> HttpFault:
        if fault.status < 400 or fault.status > 599:
            raise ValueError(
                f"an injected HTTP fault needs a 4xx or 5xx status, not {fault.status}"
            )
        if fault.times < 1:
            raise ValueError("an injected HTTP fault needs times >= 1")
        with self._lock:
            self._http.append(fault)
        return fault

    def take_http(
        self, method: str, route: str, action: str | None, server_id: str | None
    ) -> int | None:
        """The status to answer this request with, if a fault matches (it is used up by one)."""
        with self._lock:
            for fault in self._http:
                if fault.matches(method, route, action, server_id):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._http.remove(fault)
                    return fault.status
        return None

    # -- servers ---------------------------------------------------------------------

    def set_server(self, server_id: str, faults: ServerFaults) -> None:
        """Replace the faults of one server."""
        with self._lock:
            self._servers[server_id] = faults

    def add_server(self, server_id: str, faults: ServerFaults) -> None:
        """Add to the faults of one server."""
        with self._lock:
            self._servers[server_id] = faults.over(self._servers.get(server_id, NO_FAULTS))

    def set_everyone(self, faults: ServerFaults) -> None:
        with self._lock:
            self._everyone = faults

    def set_prefix(self, prefix: str, faults: ServerFaults) -> None:
        with self._lock:
            self._prefixes[prefix] = faults

    def plan(self, server_id: str, name: str) -> ServerFaults:
        """The faults in force for a server now: everyone's, its name's, then its own."""
        with self._lock:
            result = self._everyone
            for prefix, faults in self._prefixes.items():
                if name.startswith(prefix):
                    result = faults.over(result)
            own = self._servers.get(server_id)
            return own.over(result) if own is not None else result

    def delay(self, server_id: str, name: str, phase: str, durations: Durations) -> float:
        """How long ``phase`` takes for this server."""
        delays = self.plan(server_id, name).delays
        return float(delays[phase]) if phase in delays else durations.of(phase)

    def clear(self, server_id: str | None = None) -> None:
        """Forget the faults of one server, or every fault (the built-in prefixes stay)."""
        with self._lock:
            if server_id is not None:
                self._servers.pop(server_id, None)
                self._http = [f for f in self._http if f.server_id != server_id]
                return
            self._http.clear()
            self._servers.clear()
            self._everyone = NO_FAULTS
            self._prefixes = {
                prefix: faults
                for prefix, faults in self._prefixes.items()
                if prefix in BUILTIN_PREFIXES and faults == BUILTIN_PREFIXES[prefix]
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "http": [fault.to_dict() for fault in self._http],
                "servers": {sid: f.to_dict() for sid, f in self._servers.items()},
                "everyone": self._everyone.to_dict(),
                "prefixes": {p: f.to_dict() for p, f in self._prefixes.items()},
            }
