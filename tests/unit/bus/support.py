"""What the bus's unit tests share: a configuration with oslo.messaging's options."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.bus.connection import register_oslo_options


def conf_with(**groups: dict[str, object]) -> cfg.ConfigOpts:
    """A parsed ConfigOpts with oslo.messaging's options and ``{group: {option: value}}``."""
    conf = settings.build_conf()
    conf(args=[], default_config_files=[])
    register_oslo_options(conf)
    for group, values in groups.items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
    return conf
