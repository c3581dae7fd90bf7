"""Glance and Neutron stand-ins inside the box's Nova processes.

The box has no Glance and no Neutron. Nova's wheel ships the fixtures its
own functional tests use in their place (``nova.tests.fixtures``): an image
service holding a few fake images and a network service that needs no
server. Those fixtures expect a test case to host them (``useFixture``,
``stub_out``, ``flags``); :class:`FixtureHost` is that host, for the lifetime
of a service process. Boot servers with ``networks='none'`` and the image
:data:`tests.novabox.client.IMAGE_ID`.
"""

from typing import Any

import fixtures
from oslo_config import cfg


class FixtureHost:
    """The three methods of a test case that Nova's fixtures call."""

    def __init__(self) -> None:
        self._fixtures: list[fixtures.Fixture] = []

    def useFixture(self, fixture: fixtures.Fixture) -> fixtures.Fixture:
        fixture.setUp()
        self._fixtures.append(fixture)
        return fixture

    def stub_out(self, target: str, replacement: Any) -> None:
        self.useFixture(fixtures.MonkeyPatch(target, replacement))

    def flags(self, **overrides: Any) -> None:
        group = overrides.pop("group", None)
        for name, value in overrides.items():
            cfg.CONF.set_override(name, value, group)


_host: FixtureHost | None = None


def install() -> None:
    """Put the Glance and Neutron stand-ins in place (once per process).

    Call it after Nova has parsed its configuration.
    """
    global _host
    if _host is not None:
        return
    # Imported here: this pulls in a good part of Nova's test tree, and must
    # come after Nova has chosen its concurrency backend.
    from nova.tests import fixtures as nova_fixtures

    host = FixtureHost()
    host.useFixture(nova_fixtures.GlanceFixture(host))
    host.useFixture(nova_fixtures.NeutronFixture(host))
    _host = host
