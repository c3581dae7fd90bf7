"""``scripts/novabox``: bring a box up by hand, look at it, take it down.

    scripts/novabox up       start a box that stays up; print how to reach it
    scripts/novabox status   is it up? its services, URLs and logs
    scripts/novabox env      shell exports for it (eval "$(scripts/novabox env)")
    scripts/novabox down     stop it and delete what it created

One manual box at a time: ``<runs dir>/manual.json`` names its run
directory. Runs with the standard library only (no venv needed besides the
one the box builds for Nova).
"""

import argparse
import json
import sys
from pathlib import Path

from tests.novabox import probes, stale
from tests.novabox.box import Box
from tests.novabox.errors import NovaBoxError
from tests.novabox.runs import MANUAL_FILE, RunState, pid_alive
from tests.novabox.settings import BoxSettings
from tests.novabox.venv import ensure_venv

EXIT_NOT_UP = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/novabox", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    args = parser.parse_args(argv)
    settings = BoxSettings.from_env()
    try:
        return {"up": up, "down": down, "status": status, "env": env}[args.command](settings)
    except NovaBoxError as exc:
        print(f"novabox: {exc}", file=sys.stderr)
        return 1


def up(settings: BoxSettings) -> int:
    state = _manual_state(settings)
    if state is not None and _services_alive(state):
        print(f"novabox: already up (run {state.run_id})")
        _print_access(state)
        return 0
    venv = ensure_venv(settings.venv_dir, python=settings.python, log=_err)
    stale.clean_stale_runs(settings, venv, log=_err)
    box = Box.start(settings, venv, manual=True, log=_err)
    _manual_file(settings).write_text(json.dumps({"run_dir": str(box.run_dir)}) + "\n")
    _print_access(box.state)
    return 0


def down(settings: BoxSettings) -> int:
    manual = _manual_file(settings)
    state = _manual_state(settings)
    if state is None:
        print("novabox: no manual box")
        manual.unlink(missing_ok=True)
        return 0
    box = Box.attach(settings, Path(state.run_dir), log=_err)
    leftovers = box.stop()
    manual.unlink(missing_ok=True)
    print(f"novabox: run {state.run_id} is down, {leftovers}")
    return 0 if leftovers.clean else 1


def status(settings: BoxSettings) -> int:
    state = _manual_state(settings)
    if state is None:
        print("novabox: no manual box")
        return EXIT_NOT_UP
    print(f"run       {state.run_id}  ({state.run_dir})")
    for name, pid in state.services.items():
        print(f"  {name:15} pid {pid:<8} {'running' if pid_alive(pid) else 'NOT RUNNING'}")
    answering = bool(state.compute_url and probes.compute(state.compute_url, "/"))
    print(f"compute   {state.compute_url}  ({'answering' if answering else 'NOT ANSWERING'})")
    print(f"placement {state.placement_url}")
    print(f"transport {state.transport_url}")
    print(f"logs      {state.run_dir}/logs/")
    return 0 if answering and _services_alive(state) else EXIT_NOT_UP


def env(settings: BoxSettings) -> int:
    state = _manual_state(settings)
    if state is None:
        print("novabox: no manual box", file=sys.stderr)
        return EXIT_NOT_UP
    print(_exports(state))
    return 0


def _print_access(state: RunState) -> None:
    url = state.compute_url
    print(
        f"""
Nova is up (run {state.run_id}).

  compute API    {url}   (X-Auth-Token: admin:admin, i.e. user:project)
  placement API  {state.placement_url}   (X-Auth-Token: admin)
  transport URL  {state.transport_url}   (oslo.messaging; kombu: {state.amqp_url})
  notifications  exchange 'nova', routing keys versioned_notifications.info/.error
  logs           {state.run_dir}/logs/

clouds.yaml:

  clouds:
    novabox:
      auth_type: admin_token
      auth:
        endpoint: {url}
        token: "admin:admin"
      compute_endpoint_override: {url}

or in a shell:  eval "$(scripts/novabox env)"; openstack server list

nova-autopilot.conf:

  [DEFAULT]
  transport_url = {state.transport_url}

Boot servers from image 155d900f-4e14-4e4c-a73d-069cbf4541e6 with networks 'none'.
Stop it with: scripts/novabox down
"""
    )


def _exports(state: RunState) -> str:
    url = state.compute_url or ""
    return "\n".join(
        [
            "export OS_AUTH_TYPE=admin_token",
            f"export OS_ENDPOINT={url}",
            "export OS_TOKEN=admin:admin",
            f"export OS_COMPUTE_ENDPOINT_OVERRIDE={url}",
            f"export NOVABOX_COMPUTE_URL={url}",
            f"export NOVABOX_PLACEMENT_URL={state.placement_url}",
            f"export NOVABOX_TRANSPORT_URL={state.transport_url}",
            f"export NOVABOX_AMQP_URL={state.amqp_url}",
        ]
    )


def _manual_file(settings: BoxSettings) -> Path:
    return settings.runs_dir / MANUAL_FILE


def _manual_state(settings: BoxSettings) -> RunState | None:
    try:
        run_dir = Path(json.loads(_manual_file(settings).read_text())["run_dir"])
        return RunState.load(run_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _services_alive(state: RunState) -> bool:
    return bool(state.services) and all(pid_alive(pid) for pid in state.services.values())


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
