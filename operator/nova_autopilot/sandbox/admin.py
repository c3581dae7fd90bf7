"""The sandbox's own endpoint, ``/_sandbox/...``: faults, request counts, state, notifications.

Not part of Nova's API (no token needed, not counted)::

    GET    /_sandbox/state                  servers, faults, request counts
    POST   /_sandbox/faults                 ask for a fault (see below)
    DELETE /_sandbox/faults                 forget every fault
    DELETE /_sandbox/faults/{server_id}     forget one server's faults
    GET    /_sandbox/requests               request counts
    DELETE /_sandbox/requests               reset them
    GET    /_sandbox/notifications          notifications sent (?server=<id>)
    POST   /_sandbox/servers                place a server in a state (no flow)

A fault is one of::

    {"http": {"status": 503, "times": 2, "method": "POST",
              "route": "/v2.1/servers/{server_id}/action", "action": "confirmResize",
              "server_id": "..."}}
    {"server_id": "...", "fail": ["reboot", "power_on"], "console": "panic",
     "quota_exceeded": false, "delays": {"resize_migrate": 5}}
    {"everyone": {...server fault fields...}}
    {"prefix": "broken-", "faults": {...server fault fields...}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nova_autopilot.sandbox import errors
from nova_autopilot.sandbox.faults import FaultBook, HttpFault, ServerFaults
from nova_autopilot.sandbox.model import Server
from nova_autopilot.sandbox.outbox import Outbox
from nova_autopilot.sandbox.request_counts import RequestCounts
from nova_autopilot.sandbox.store import Store
from nova_autopilot.sandbox.web import Request, Response, Route

Params = Mapping[str, str]
PlaceServer = Callable[..., Server]


def _object(req: Request) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise errors.bad_request("expected a JSON object")
    return req.body


class AdminRoutes:
    def __init__(
        self,
        *,
        store: Store,
        faults: FaultBook,
        counts: RequestCounts,
        outbox: Outbox,
        place: PlaceServer,
    ) -> None:
        self.store = store
        self.faults = faults
        self.counts = counts
        self.outbox = outbox
        self.place = place

    def routes(self) -> list[Route]:
        r = Route.of
        return [
            r("GET", "/_sandbox/state", self.state),
            r("POST", "/_sandbox/faults", self.add_fault),
            r("DELETE", "/_sandbox/faults", self.clear_faults),
            r("DELETE", "/_sandbox/faults/{server_id}", self.clear_server_faults),
            r("GET", "/_sandbox/requests", self.requests),
            r("DELETE", "/_sandbox/requests", self.reset_requests),
            r("GET", "/_sandbox/notifications", self.notifications),
            r("POST", "/_sandbox/servers", self.place_server),
        ]

    def state(self, req: Request, params: Params) -> Response:
        with self.store.lock:
            servers = [s.summary() for s in self.store.servers(deleted=False)]
        return Response(
            200,
            {
                "servers": servers,
                "faults": self.faults.snapshot(),
                "requests": self.counts.snapshot(),
                "notifications": len(self.outbox.all()),
            },
        )

    def add_fault(self, req: Request, params: Params) -> Response:
        body = _object(req)
        try:
            if "http" in body:
                spec = dict(body["http"])
                fault = self.faults.add_http(
                    HttpFault(
                        status=int(spec.pop("status", 503)),
                        times=int(spec.pop("times", 1)),
                        **{k: (None if v is None else str(v)) for k, v in spec.items()},
                    )
                )
                return Response(201, {"http": fault.to_dict()})
            if "everyone" in body:
                self.faults.set_everyone(ServerFaults.from_dict(body["everyone"]))
            elif "prefix" in body:
                self.faults.set_prefix(
                    str(body["prefix"]), ServerFaults.from_dict(body.get("faults", {}))
                )
            elif "server_id" in body:
                server_id = str(body.pop("server_id"))
                self.faults.add_server(server_id, ServerFaults.from_dict(body))
            else:
                raise ValueError("say 'http', 'server_id', 'everyone' or 'prefix'")
        except (TypeError, ValueError) as exc:
            raise errors.bad_request(str(exc)) from None
        return Response(201, self.faults.snapshot())

    def clear_faults(self, req: Request, params: Params) -> Response:
        self.faults.clear()
        return Response(204)

    def clear_server_faults(self, req: Request, params: Params) -> Response:
        self.faults.clear(params["server_id"])
        return Response(204)

    def requests(self, req: Request, params: Params) -> Response:
        return Response(200, {"requests": self.counts.snapshot(), "total": self.counts.total()})

    def reset_requests(self, req: Request, params: Params) -> Response:
        self.counts.reset()
        return Response(204)

    def notifications(self, req: Request, params: Params) -> Response:
        server = req.query.get("server", [None])[-1]
        found = self.outbox.for_server(server) if server else self.outbox.all()
        return Response(200, {"notifications": [n.as_message() for n in found]})

    def place_server(self, req: Request, params: Params) -> Response:
        body = _object(req)
        try:
            flavor = self._flavor(str(body["flavor"]))
            old = self._flavor(str(body["old_flavor"])) if body.get("old_flavor") else None
            server = self.place(
                name=str(body["name"]),
                flavor=flavor,
                state=str(body.get("state", "ACTIVE")),
                launched=bool(body.get("launched", True)),
                old_flavor=old,
                project_id=str(body.get("project_id", "admin")),
            )
        except KeyError as exc:
            raise errors.bad_request(f"missing {exc}") from None
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from None
        return Response(201, {"server": server.summary()})

    def _flavor(self, ref: str) -> Any:
        named = self.store.flavor_named(ref)
        return named if named is not None else self.store.flavor(ref)
