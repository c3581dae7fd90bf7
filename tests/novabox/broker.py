"""The run's own RabbitMQ vhost, managed with rabbitmqctl.

A vhost of its own keeps the box's queues (Nova's RPC and notification
queues, the tests' listeners) apart from anything else on the broker, and
deleting it at the end removes all of them at once.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import quote

from tests.novabox.errors import CommandFailed, HarnessUnavailable
from tests.novabox.runs import VHOST_PREFIX
from tests.novabox.settings import BoxSettings


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    user: str
    password: str
    rabbitmqctl: str = "rabbitmqctl"

    @classmethod
    def from_settings(cls, settings: BoxSettings) -> "Broker":
        return cls(
            settings.rabbit_host,
            settings.rabbit_port,
            settings.rabbit_user,
            settings.rabbit_password,
            settings.rabbitmqctl,
        )

    def transport_url(self, vhost: str) -> str:
        """oslo.messaging's form (``rabbit://``): for Nova and for the daemon's config."""
        return f"rabbit://{self._authority()}/{quote(vhost, safe='')}"

    def amqp_url(self, vhost: str) -> str:
        """kombu's form (``amqp://``) of the same vhost."""
        return f"amqp://{self._authority()}/{quote(vhost, safe='')}"

    def create_vhost(self, vhost: str) -> None:
        self._ctl("add_vhost", vhost)
        self._ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        """Delete ``vhost`` with its queues and exchanges; a missing vhost is fine."""
        if vhost in self.list_vhosts():
            self._ctl("delete_vhost", vhost)

    def list_vhosts(self) -> list[str]:
        rows = self._ctl_json("list_vhosts", "name")
        return [row["name"] for row in rows]

    def list_box_vhosts(self) -> list[str]:
        return [name for name in self.list_vhosts() if name.startswith(VHOST_PREFIX)]

    def list_queues(self, vhost: str) -> dict[str, int]:
        """Queue name -> ready messages, in ``vhost``."""
        rows = self._ctl_json("list_queues", "-p", vhost, "name", "messages")
        return {row["name"]: int(row.get("messages") or 0) for row in rows}

    def _authority(self) -> str:
        user = quote(self.user, safe="")
        password = quote(self.password, safe="")
        return f"{user}:{password}@{self.host}:{self.port}"

    def _ctl_json(self, *args: str) -> list[dict[str, object]]:
        output = self._ctl(*args, "--formatter", "json")
        rows = json.loads(output or "[]")
        return rows if isinstance(rows, list) else []

    def _ctl(self, *args: str) -> str:
        if shutil.which(self.rabbitmqctl) is None:
            raise HarnessUnavailable(f"no {self.rabbitmqctl!r} on PATH to manage RabbitMQ vhosts")
        argv = [self.rabbitmqctl, "-q", *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, result.stdout + result.stderr)
        return result.stdout
