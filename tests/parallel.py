"""Running the suite on several pytest-xdist workers: which tests share a worker, and
which start first (tests/conftest.py wires these into pytest's hooks).

``@pytest.mark.xdist_group("name")`` puts tests in one worker, one after the other,
as ``--dist loadgroup`` promises. xdist carries a test's group to its scheduler by
appending it to the test's id, which pytest 9.2 no longer lets it do (the groups
are then silently ignored); so each worker writes the groups it collected to a
file, and the scheduler here reads them from there. It serves ``--dist loadgroup``
and ``--dist load`` (what ``-n`` alone gives), so that no way of spreading the tests
one by one splits a group.

``@pytest.mark.slow`` (tens of seconds or more) moves a test to the front of the
collection: on several workers the long tests start first instead of being the
last ones left to wait for; ``@pytest.mark.slow(seconds)`` says about how long its
module takes, and the longest start first of all (xdist hands each worker a share
of the first tests at once: a two-minute test behind the others of its share would
start late and end last).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

GROUPS_DIR = "nova_autopilot_groups_dir"


def slow_first(items: list[pytest.Item]) -> None:
    """Reorders ``items`` in place: the slow ones first, the slowest of them first
    (``@pytest.mark.slow(120)``: about two minutes; a bare ``slow`` counts as 0), each
    module's tests kept together (a module-scoped fixture is then set up once, as
    before), the order otherwise kept."""
    weights: dict[Path, float] = {}
    for item in items:
        mark = item.get_closest_marker("slow")
        if mark is not None:
            weight = float(mark.args[0]) if mark.args else 0.0
            weights[item.path] = max(weights.get(item.path, 0.0), weight)
    items.sort(key=lambda item: (item.path not in weights, -weights.get(item.path, 0.0)))


def groups_of(items: list[pytest.Item]) -> dict[str, str]:
    """Test id -> its group, for the tests with an ``xdist_group`` mark."""
    groups = {}
    for item in items:
        names = sorted(
            {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
        )  # fmt: skip
        if names:
            groups[item.nodeid] = "_".join(names)
    return groups


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: leave the groups it collected where the scheduler looks for them."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if not workerinput or GROUPS_DIR not in workerinput:
        return
    folder = Path(workerinput[GROUPS_DIR])
    mine = folder / f"{workerinput['workerid']}.json"
    partial = mine.with_suffix(".partial")
    partial.write_text(json.dumps(groups_of(items)))
    os.replace(partial, mine)  # the scheduler never reads half a file


def new_groups_dir(config: pytest.Config) -> str:
    """In the controller: the folder the workers write their groups to (removed at the
    end of the run by :func:`remove_groups_dir`)."""
    folder: str | None = getattr(config, "_nova_autopilot_groups_dir", None)
    if folder is None:
        folder = tempfile.mkdtemp(prefix="xdist-groups-")
        config._nova_autopilot_groups_dir = folder  # type: ignore[attr-defined]
    return folder


def remove_groups_dir(config: pytest.Config) -> None:
    folder = getattr(config, "_nova_autopilot_groups_dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler of ``--dist loadgroup`` (and ``load``), with the groups the workers
    wrote; None (xdist's own) for the other ways of spreading the tests."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    folder = Path(new_groups_dir(config))

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """xdist's load scheduling by scope, a scope being a group or else one test."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once every worker collected (and wrote)
                self.groups = {}
                for written in sorted(folder.glob("*.json")):
                    self.groups.update(json.loads(written.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
