"""The compute API's routes: servers, server actions, instance actions, flavors, versions.

Status codes and bodies are Nova's: ``resize`` 202, ``confirmResize`` 204,
``rescue`` 200 with ``adminPass``, ``POST /servers`` 202 with a
``Location``, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from nova_autopilot.sandbox import errors, listing, views
from nova_autopilot.sandbox.cell import Cell
from nova_autopilot.sandbox.compute import ComputeAPI
from nova_autopilot.sandbox.model import Flavor, InstanceAction, Server, new_uuid
from nova_autopilot.sandbox.provision import BootRequest, boot
from nova_autopilot.sandbox.web import Request, Response, Route, json_body

Params = Mapping[str, str]

SERVER_ACTIONS = (
    "resize",
    "confirmResize",
    "revertResize",
    "rescue",
    "unrescue",
    "os-getConsoleOutput",
    "lock",
    "unlock",
    "reboot",
    "os-start",
    "os-stop",
)


def action_name(body: Any) -> str | None:
    """The action a ``POST /servers/{id}/action`` body asks for."""
    if isinstance(body, dict) and len(body) == 1:
        return str(next(iter(body)))
    return None


def _newest(item: tuple[int, InstanceAction]) -> tuple[datetime, int]:
    index, action = item
    return action.start_time, index


class ComputeRoutes:
    """Handlers of the compute API, on top of :class:`~.compute.ComputeAPI`."""

    def __init__(self, *, cell: Cell, compute: ComputeAPI) -> None:
        self.cell = cell
        self.compute = compute

    def routes(self) -> list[Route]:
        r = Route.of
        return [
            r("GET", "/", self.versions),
            r("GET", "/v2.1", self.version),
            r("GET", "/v2.1/servers", self.list_servers),
            r("POST", "/v2.1/servers", self.create_server),
            r("GET", "/v2.1/servers/detail", self.list_servers_detail),
            r("GET", "/v2.1/servers/{server_id}", self.show_server),
            r("DELETE", "/v2.1/servers/{server_id}", self.delete_server),
            r("POST", "/v2.1/servers/{server_id}/action", self.server_action),
            r("GET", "/v2.1/servers/{server_id}/os-instance-actions", self.list_actions),
            r(
                "GET",
                "/v2.1/servers/{server_id}/os-instance-actions/{request_id}",
                self.show_action,
            ),
            r("GET", "/v2.1/flavors", self.list_flavors),
            r("POST", "/v2.1/flavors", self.create_flavor),
            r("GET", "/v2.1/flavors/detail", self.list_flavors_detail),
            r("GET", "/v2.1/flavors/{flavor_id}", self.show_flavor),
            r("DELETE", "/v2.1/flavors/{flavor_id}", self.delete_flavor),
            r("GET", "/v2.1/flavors/{flavor_id}/os-extra_specs", self.flavor_extra_specs),
        ]

    # -- versions ----------------------------------------------------------------------

    def versions(self, req: Request, params: Params) -> Response:
        return Response(200, views.versions(req.base_url))

    def version(self, req: Request, params: Params) -> Response:
        return Response(200, views.version_v21(req.base_url))

    # -- servers -----------------------------------------------------------------------

    def _page(self, req: Request) -> listing.Page:
        with self.cell.store.lock:
            return listing.list_servers(
                self.cell.store.servers(),
                req.query,
                ctx=req.ctx,
                version=req.version,
                max_limit=self.cell.settings.max_limit,
            )

    def _listed(self, req: Request, page: listing.Page, items: list[Any]) -> Response:
        body: dict[str, Any] = {"servers": items}
        if page.next_marker is not None:
            query = {k: v[-1] for k, v in req.query.items() if k != "marker"}
            query["marker"] = page.next_marker
            href = f"{req.base_url}{req.path.rstrip('/')}?{urlencode(query)}"
            body["servers_links"] = [{"rel": "next", "href": href}]
        return Response(200, body)

    def list_servers(self, req: Request, params: Params) -> Response:
        page = self._page(req)
        return self._listed(req, page, [views.server_ref(s, req.base_url) for s in page.servers])

    def list_servers_detail(self, req: Request, params: Params) -> Response:
        with self.cell.store.lock:
            page = self._page(req)
            items = [
                views.server(s, req.base_url, req.version, req.ctx, detail_list=True)
                for s in page.servers
            ]
        return self._listed(req, page, items)

    def show_server(self, req: Request, params: Params) -> Response:
        with self.cell.store.lock:
            server = self.compute.server(req.ctx, params["server_id"])
            return Response(
                200, {"server": views.server(server, req.base_url, req.version, req.ctx)}
            )

    def create_server(self, req: Request, params: Params) -> Response:
        body = json_body(req, "server")
        if not isinstance(body, dict):
            raise errors.bad_request("Invalid input for field/attribute server.")
        for key in ("name", "flavorRef"):
            if key not in body:
                raise errors.bad_request(
                    f"Invalid input for field/attribute server. '{key}' is a required property"
                )
        if req.version.at_least("2.37") and "networks" not in body:
            raise errors.bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property"
            )
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise errors.bad_request("Invalid input for field/attribute metadata.")
        request = BootRequest(
            name=str(body["name"]),
            flavor_ref=str(body["flavorRef"]),
            image_ref=str(body.get("imageRef") or ""),
            metadata={str(k): str(v) for k, v in metadata.items()},
            admin_pass=body.get("adminPass"),
            description=body.get("description"),
            key_name=body.get("key_name"),
        )
        server, password = boot(self.cell, req.ctx, request)
        created: dict[str, Any] = {
            "id": server.id,
            "links": views.server_ref(server, req.base_url)["links"],
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
        }
        if self.cell.settings.enable_instance_password:
            created["adminPass"] = password
        location = f"{req.base_url}/v2.1/servers/{server.id}"
        return Response(202, {"server": created}, [("Location", location)])

    def delete_server(self, req: Request, params: Params) -> Response:
        self.compute.delete(req.ctx, params["server_id"])
        return Response(204)

    # -- server actions ----------------------------------------------------------------

    def server_action(self, req: Request, params: Params) -> Response:
        server_id = params["server_id"]
        name = action_name(req.body)
        if name is None:
            raise errors.bad_request("Malformed request body")
        if name not in SERVER_ACTIONS:
            raise errors.bad_request(f"There is no such action: {name}")
        args = req.body[name]
        ctx = req.ctx
        if name == "resize":
            if not isinstance(args, dict) or "flavorRef" not in args:
                raise errors.bad_request(
                    "Invalid input for field/attribute resize. 'flavorRef' is a required property"
                )
            self.compute.resize(ctx, server_id, str(args["flavorRef"]))
        elif name == "confirmResize":
            self.compute.confirm_resize(ctx, server_id)
            return Response(204)
        elif name == "revertResize":
            self.compute.revert_resize(ctx, server_id)
        elif name == "rescue":
            args = args if isinstance(args, dict) else {}
            password = self.compute.rescue(
                ctx,
                server_id,
                admin_pass=args.get("adminPass"),
                rescue_image_ref=args.get("rescue_image_ref"),
            )
            enabled = self.cell.settings.enable_instance_password
            return Response(200, {"adminPass": password} if enabled else {})
        elif name == "unrescue":
            self.compute.unrescue(ctx, server_id)
        elif name == "os-getConsoleOutput":
            return Response(200, {"output": self._console(ctx, server_id, args)})
        elif name == "lock":
            reason = args.get("locked_reason") if isinstance(args, dict) else None
            self.compute.lock(ctx, server_id, reason if req.version.at_least("2.73") else None)
        elif name == "unlock":
            self.compute.unlock(ctx, server_id)
        elif name == "reboot":
            kind = args.get("type") if isinstance(args, dict) else None
            if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
                raise errors.bad_request(
                    "Invalid input for field/attribute reboot. 'type' is a required property"
                )
            self.compute.reboot(ctx, server_id, kind.upper())
        elif name == "os-start":
            self.compute.start(ctx, server_id)
        elif name == "os-stop":
            self.compute.stop(ctx, server_id)
        return Response(202)

    def _console(self, ctx: Any, server_id: str, args: Any) -> str:
        length = args.get("length") if isinstance(args, dict) else None
        if length is not None:
            try:
                length = int(length)
            except (TypeError, ValueError):
                raise errors.bad_request(
                    "Invalid input for field/attribute length. Value: "
                    f"{length}. '{length}' is not of type 'integer'"
                ) from None
        return self.compute.console_output(ctx, server_id, length)

    # -- instance actions --------------------------------------------------------------

    def _acted_on(self, req: Request, server_id: str) -> Server:
        """The server whose actions are asked for: from 2.21 on, Nova reads a deleted one too."""
        if req.version.at_least("2.21"):
            server = self.cell.store.find_server(server_id)
            if server is not None and req.ctx.may_see(server.project_id):
                return server
        return self.compute.server(req.ctx, server_id)

    def list_actions(self, req: Request, params: Params) -> Response:
        with self.cell.store.lock:
            server = self._acted_on(req, params["server_id"])
            actions = [a for _, a in sorted(enumerate(server.actions), reverse=True, key=_newest)]
            items = [
                views.instance_action(a, server, req.version, req.ctx, events=False)
                for a in actions
            ]
        return Response(200, {"instanceActions": items})

    def show_action(self, req: Request, params: Params) -> Response:
        with self.cell.store.lock:
            server = self._acted_on(req, params["server_id"])
            action = server.action(params["request_id"])
            if action is None:
                raise errors.ApiError(
                    404, f"Action {params['request_id']} on instance {server.id} not found"
                )
            doc = views.instance_action(action, server, req.version, req.ctx, events=True)
        return Response(200, {"instanceAction": doc})

    # -- flavors -----------------------------------------------------------------------

    def list_flavors(self, req: Request, params: Params) -> Response:
        flavors = self.cell.store.flavors()
        items = [views.flavor(f, req.base_url, req.version, detail=False) for f in flavors]
        return Response(200, {"flavors": items})

    def list_flavors_detail(self, req: Request, params: Params) -> Response:
        flavors = self.cell.store.flavors()
        return Response(
            200, {"flavors": [views.flavor(f, req.base_url, req.version) for f in flavors]}
        )

    def show_flavor(self, req: Request, params: Params) -> Response:
        flavor = self.cell.store.flavor(params["flavor_id"])
        return Response(200, {"flavor": views.flavor(flavor, req.base_url, req.version)})

    def flavor_extra_specs(self, req: Request, params: Params) -> Response:
        flavor = self.cell.store.flavor(params["flavor_id"])
        return Response(200, {"extra_specs": dict(flavor.extra_specs)})

    def create_flavor(self, req: Request, params: Params) -> Response:
        if not req.ctx.is_admin:
            raise errors.ApiError(
                403, "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed."
            )
        body = json_body(req, "flavor")
        if not isinstance(body, dict):
            raise errors.bad_request("Invalid input for field/attribute flavor.")
        try:
            flavor = Flavor(
                id=str(body.get("id") or new_uuid()),
                name=str(body["name"]),
                vcpus=int(body["vcpus"]),
                ram=int(body["ram"]),
                disk=int(body["disk"]),
                ephemeral=int(body.get("OS-FLV-EXT-DATA:ephemeral", 0)),
                swap=int(body.get("swap") or 0),
                rxtx_factor=float(body.get("rxtx_factor", 1.0)),
                is_public=bool(body.get("os-flavor-access:is_public", True)),
                description=body.get("description"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.bad_request(f"Invalid input for field/attribute flavor: {exc}") from None
        self.cell.store.add_flavor(flavor)
        return Response(200, {"flavor": views.flavor(flavor, req.base_url, req.version)})

    def delete_flavor(self, req: Request, params: Params) -> Response:
        if not req.ctx.is_admin:
            raise errors.ApiError(
                403, "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed."
            )
        self.cell.store.delete_flavor(params["flavor_id"])
        return Response(202)
