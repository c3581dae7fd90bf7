"""Fixtures of the end-to-end tests: a real Nova (tests/novabox) for the whole session.

``novabox``      a running box (:class:`tests.novabox.client.NovaBox`), started
                 once per session and stopped at its end; the stop fails the run
                 if it leaves anything behind.
``nova_venv``    Nova's venv, installed if needed (for tests that start a box of
                 their own).
``box_settings`` the harness's settings, from the environment.
``flavors``      a small flavor (1 vCPU, 128 MiB) and a large one (2 vCPUs, 256 MiB) on
                 the box, for the session; ``small`` and ``large`` are each of them.

When Nova's venv cannot be installed at all (no package index, say), the
tests that need it are skipped with a loud reason, except in CI (``CI`` set),
where they fail instead.
"""

from collections.abc import Iterator
from typing import NoReturn

import pytest
from openstack.compute.v2.flavor import Flavor

from tests.novabox import stale
from tests.novabox.box import Box
from tests.novabox.client import NovaBox
from tests.novabox.errors import HarnessUnavailable
from tests.novabox.settings import BoxSettings
from tests.novabox.venv import NovaVenv, ensure_venv
from tests.unavailable import unavailable


@pytest.fixture(scope="session")
def box_settings() -> BoxSettings:
    return BoxSettings.from_env()


@pytest.fixture(scope="session")
def nova_venv(box_settings: BoxSettings) -> NovaVenv:
    try:
        venv = ensure_venv(box_settings.venv_dir, python=box_settings.python, log=_say)
        with stale.cleaning_excluded(box_settings):  # not while test_box_lifecycle's box is up
            stale.clean_stale_runs(box_settings, venv, log=_say)
    except HarnessUnavailable as exc:
        _unavailable(exc)
    return venv


@pytest.fixture(scope="session")
def novabox(box_settings: BoxSettings, nova_venv: NovaVenv) -> Iterator[NovaBox]:
    box = Box.start(box_settings, nova_venv, log=_say)
    try:
        yield NovaBox(box)
    finally:
        leftovers = box.stop()
        if not leftovers.clean:
            pytest.fail(f"stopping the Nova box {box.run_id}: {leftovers}")


@pytest.fixture(scope="session")
def flavors(novabox: NovaBox) -> Iterator[tuple[Flavor, Flavor]]:
    small = novabox.create_flavor(ram=128)
    large = novabox.create_flavor(ram=256, vcpus=2)
    yield small, large
    for flavor in (small, large):
        novabox.conn.compute.delete_flavor(flavor, ignore_missing=True)


@pytest.fixture(scope="session")
def small(flavors: tuple[Flavor, Flavor]) -> Flavor:
    return flavors[0]


@pytest.fixture(scope="session")
def large(flavors: tuple[Flavor, Flavor]) -> Flavor:
    return flavors[1]


def _unavailable(exc: HarnessUnavailable) -> NoReturn:
    unavailable(f"NOVABOX UNAVAILABLE, end-to-end tests against a real Nova did not run: {exc}")


def _say(message: str) -> None:
    # Shown with -s, and kept in the captured output of the test that started the box.
    print(message, flush=True)
