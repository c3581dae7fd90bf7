"""What the declarations of several groups share: the shape of a group, options
in whole seconds, and the names an AMQP exchange or queue may take."""

from __future__ import annotations

from oslo_config import cfg

#: One option group and its options; the group None is [DEFAULT].
Group = tuple[cfg.OptGroup | None, list[cfg.Opt]]

#: AMQP exchange/queue names used by the daemon.
AMQP_NAME = r"^[A-Za-z0-9._:-]+$"


def seconds(name: str, default: int, help_text: str, *, minimum: int = 1) -> cfg.Opt:
    """A duration in whole seconds, at least ``minimum``."""
    return cfg.IntOpt(name, default=default, min=minimum, help=help_text)
