"""Entry points of the box's Nova and Placement processes.

Services::

    python -m tests.novabox.bootstrap conductor|scheduler|compute --config-file ...

WSGI apps (gunicorn)::

    gunicorn 'tests.novabox.bootstrap:compute_api()'
    gunicorn 'tests.novabox.bootstrap:placement_api()'

Each one prepares the process the way the box needs, then hands over to
Nova's own entry point: Nova's concurrency backend is chosen first (native
threads; the environment sets ``OS_NOVA_DISABLE_EVENTLET_PATCHING=1`` so that
importing Nova's test fixtures later does not switch to eventlet), the SQLite
work-around goes in when asked for, nova-compute gets the fault-injecting
driver as ``nova.virt.novabox_fault``, and the Glance and Neutron stand-ins
are installed right after Nova parses its configuration.
"""

import importlib
import os
import sys
from typing import Any

SERVICES = ("conductor", "scheduler", "compute")
FAULT_DRIVER_MODULE = "nova.virt.novabox_fault"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SERVICES:
        raise SystemExit(f"usage: python -m tests.novabox.bootstrap {'|'.join(SERVICES)} ARGS")
    service = sys.argv[1]
    _choose_concurrency()
    _maybe_sqlite()
    if service == "compute":
        _register_fault_driver()
    _install_standins_after_config_is_parsed()
    entry = importlib.import_module(f"nova.cmd.{service}")
    sys.argv = [f"nova-{service}", *sys.argv[2:]]
    entry.main()


def compute_api() -> Any:
    """The compute API app (``nova.wsgi.osapi_compute``), for gunicorn."""
    # Nova parses sys.argv as its own command line: hide gunicorn's.
    sys.argv = ["nova-api"]
    _choose_concurrency()
    _maybe_sqlite()
    _install_standins_after_config_is_parsed()
    from nova.wsgi import osapi_compute

    return osapi_compute.application


def placement_api() -> Any:
    """The placement API app (``placement.wsgi.api``), for gunicorn."""
    sys.argv = ["placement-api"]
    _maybe_sqlite()
    from placement.wsgi import api

    return api.application


def _choose_concurrency() -> None:
    from nova import monkey_patch

    monkey_patch.patch(backend="threading")


def _maybe_sqlite() -> None:
    if os.environ.get("NOVABOX_SQLITE") == "1":
        from tests.novabox import sqlite

        sqlite.install()


def _register_fault_driver() -> None:
    import nova.virt

    from tests.novabox import faultdriver

    sys.modules[FAULT_DRIVER_MODULE] = faultdriver
    nova.virt.novabox_fault = faultdriver  # type: ignore[attr-defined]


def _install_standins_after_config_is_parsed() -> None:
    from nova import config

    from tests.novabox import standins

    parse_args = config.parse_args

    def parse_args_then_install_standins(*args: Any, **kwargs: Any) -> None:
        parse_args(*args, **kwargs)
        standins.install()

    config.parse_args = parse_args_then_install_standins


if __name__ == "__main__":
    main()
