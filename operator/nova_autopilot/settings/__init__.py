"""Configuration of nova-autopilot: option definitions and loading (oslo.config).

There is no global configuration object. :func:`build_conf` returns a fresh
``ConfigOpts`` with every option registered, :func:`load` also parses the
configuration files, and :func:`list_opts` feeds ``oslo-config-generator``.
Every problem found while loading is raised as :class:`SettingsError`, whose
message names the file and the option concerned.

oslo.messaging's own options (``[DEFAULT] transport_url``,
``[oslo_messaging_notifications]``, ``[oslo_messaging_rabbit]``...) are not
defined here: oslo.messaging registers them on the same ``ConfigOpts`` when a
transport is created, and documents them under its own generator namespace.

The options are declared next to what they configure, one module per group or
family of groups: :mod:`.service` ([DEFAULT]), :mod:`.messaging`
([notifications], [requests], [intake]), :mod:`.cloud`, :mod:`.policies`,
:mod:`.journal`, :mod:`.guards`, :mod:`.observability` ([logging],
[metrics]), :mod:`.sweeps` and :mod:`.coordination`; :mod:`.groups` orders
them as the sample does, :mod:`.loading` reads and checks the files.
"""

from __future__ import annotations

from nova_autopilot.errors import SettingsError
from nova_autopilot.settings.groups import build_conf, list_opts
from nova_autopilot.settings.loading import PROJECT, load

__all__ = ["PROJECT", "SettingsError", "build_conf", "list_opts", "load"]
