"""The sandbox's entry of a ``clouds.yaml``: how openstacksdk (the daemon, the
``openstack`` command) reaches a sandbox Nova.

There is no Keystone: the static token names the caller (``admin:admin``, an
administrator, see ``context``), and the compute endpoint is given instead of
found in a service catalog. ``python -m nova_autopilot.sandbox --port 8774
--print-clouds-yaml`` prints the whole file.
"""

from __future__ import annotations

from typing import Any

import yaml

#: The cloud's name in the file, unless told otherwise.
DEFAULT_CLOUD = "sandbox"
#: The token of an administrator of the project ``admin``.
ADMIN_TOKEN = "admin:admin"


def endpoint(host: str, port: int) -> str:
    """The compute endpoint of a sandbox listening on ``host``:``port``, as a client
    on this machine reaches it (an any-address listener is reached on the loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v2.1"


def entry(url: str, *, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    """One cloud of ``clouds.yaml`` for the compute endpoint ``url``."""
    return {
        "auth_type": "admin_token",
        "auth": {"endpoint": url, "token": token},
        "compute_endpoint_override": url,
    }


def clouds_yaml(url: str, *, name: str = DEFAULT_CLOUD, token: str = ADMIN_TOKEN) -> str:
    """A whole ``clouds.yaml`` with the one cloud ``name``: the sandbox at ``url``."""
    body = yaml.safe_dump({"clouds": {name: entry(url, token=token)}}, sort_keys=False)
    return (
        f"# clouds.yaml of the sandbox Nova at {url}\n"
        "# (python -m nova_autopilot.sandbox). No Keystone: the token names the caller,\n"
        "# user:project. openstacksdk reads this file from OS_CLIENT_CONFIG_FILE,\n"
        "# ./clouds.yaml or ~/.config/openstack/clouds.yaml.\n" + body
    )
