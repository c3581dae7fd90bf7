"""[policies]: where the automation policies are read from."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group


def policies() -> Group:
    """The policy file or directory."""
    return cfg.OptGroup("policies", title="Automation policies"), [
        cfg.StrOpt(
            "path",
            default="/etc/nova-autopilot/policies.yaml",
            help="YAML policy file, or a directory whose *.yaml and *.yml files are read "
            "in name order.",
        ),
    ]
