"""The [guards] group, as the guards read it."""

from __future__ import annotations

from pathlib import Path

from nova_autopilot import settings
from nova_autopilot.guards import BreakerLimits, GuardSettings
from nova_autopilot.policies.model import Budget
from tests.unit.settings.support import write


def test_the_guards_settings_are_read_from_the_guards_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "g.conf",
        "[guards]\nbudget_per_host = 3\nbudget_per_host_window = 600\nloop_max_per_server = 0\n"
        "policy_breaker_failures = 2\nbreaker_failures = 0\n[cloud]\nworkers = 4\n",
    )
    conf = settings.load(config_files=[path])
    guard = GuardSettings.from_conf(conf)
    assert guard.budgets == {"host": Budget(3, 600.0)}
    assert guard.loop is None
    assert (guard.max_concurrent, guard.default_cooldown_s) == (10, 1800.0)
    assert guard.breaker == BreakerLimits(0, 600.0, 1800.0)
    assert guard.policy_breaker == BreakerLimits(2, 600.0, 1800.0)
    assert conf.cloud.workers == 4
    defaults = GuardSettings.from_conf(settings.load(config_files=[write(tmp_path, "e.conf", "")]))
    assert defaults.budgets == {}
    assert defaults.loop == Budget(5, 3600.0)
