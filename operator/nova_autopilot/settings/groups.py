"""Every option group, in the order of the sample: the one list that
:func:`build_conf`, :func:`list_opts` and the checks of loading go through.

Each group is declared by a function of its name in the module of its family
(:mod:`.service` for [DEFAULT]); every call builds fresh option objects.
"""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings import (
    cloud,
    coordination,
    guards,
    journal,
    messaging,
    observability,
    policies,
    service,
    sweeps,
)
from nova_autopilot.settings.kinds import Group


def option_groups() -> list[Group]:
    """Build fresh option objects, so that no two ConfigOpts share state."""
    return [
        service.default(),
        messaging.notifications(),
        messaging.requests(),
        cloud.cloud(),
        policies.policies(),
        journal.journal(),
        guards.guards(),
        messaging.intake(),
        observability.logging(),
        observability.metrics(),
        sweeps.sweeps(),
        coordination.coordination(),
    ]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return ``(group name, options)`` pairs for ``oslo-config-generator``."""
    return [(g.name if g else "DEFAULT", opts) for g, opts in option_groups()]


def build_conf() -> cfg.ConfigOpts:
    """Return a new, unparsed ConfigOpts with every nova-autopilot option registered."""
    conf = cfg.ConfigOpts()
    for group, opts in option_groups():
        if group is not None:
            conf.register_group(group)
        conf.register_opts(opts, group=group)
    return conf
