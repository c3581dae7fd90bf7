"""The sandbox's database: flavors, images and servers, behind one lock.

Deleted servers are kept (Nova soft-deletes rows): ``changes-since`` lists
them with status DELETED, while a plain GET answers 404.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

from nova_autopilot.sandbox import errors
from nova_autopilot.sandbox.model import DEFAULT_IMAGE, Flavor, Image, Server


class Store:
    """Every record of the sandbox. Hold :attr:`lock` to read or change anything."""

    def __init__(self, images: Iterable[Image] = (DEFAULT_IMAGE,)) -> None:
        self.lock = threading.RLock()
        self._flavors: dict[str, Flavor] = {}
        self._images: dict[str, Image] = {image.id: image for image in images}
        self._servers: dict[str, Server] = {}
        self._server_ids = itertools.count(1)
        self._migration_ids = itertools.count(1)

    # -- flavors and images ----------------------------------------------------------

    def add_flavor(self, flavor: Flavor) -> Flavor:
        with self.lock:
            if flavor.id in self._flavors:
                raise errors.ApiError(409, f"Flavor with ID {flavor.id} already exists.")
            if any(f.name == flavor.name for f in self._flavors.values()):
                raise errors.ApiError(409, f"Flavor with name {flavor.name} already exists.")
            self._flavors[flavor.id] = flavor
            return flavor

    def flavor(self, flavor_id: str) -> Flavor:
        with self.lock:
            flavor = self._flavors.get(flavor_id)
            if flavor is None:
                raise errors.flavor_not_found(flavor_id)
            return flavor

    def flavor_named(self, name: str) -> Flavor | None:
        with self.lock:
            return next((f for f in self._flavors.values() if f.name == name), None)

    def flavors(self) -> list[Flavor]:
        """Every flavor, sorted by id (Nova's default order)."""
        with self.lock:
            return sorted(self._flavors.values(), key=lambda f: f.id)

    def delete_flavor(self, flavor_id: str) -> None:
        with self.lock:
            if self._flavors.pop(flavor_id, None) is None:
                raise errors.flavor_not_found(flavor_id)

    def add_image(self, image: Image) -> Image:
        with self.lock:
            self._images[image.id] = image
            return image

    def image(self, image_id: str) -> Image | None:
        with self.lock:
            return self._images.get(image_id)

    # -- servers ---------------------------------------------------------------------

    def next_server_id(self) -> int:
        return next(self._server_ids)

    def next_migration_id(self) -> int:
        return next(self._migration_ids)

    def add_server(self, server: Server) -> Server:
        with self.lock:
            self._servers[server.id] = server
            return server

    def server(self, server_id: str) -> Server:
        """A server that is not deleted, or Nova's 404."""
        with self.lock:
            server = self._servers.get(server_id)
            if server is None or server.deleted:
                raise errors.server_not_found(server_id)
            return server

    def find_server(self, server_id: str) -> Server | None:
        """Any server with this id, deleted or not."""
        with self.lock:
            return self._servers.get(server_id)

    def servers(self, *, deleted: bool = True) -> list[Server]:
        with self.lock:
            return [s for s in self._servers.values() if deleted or not s.deleted]
