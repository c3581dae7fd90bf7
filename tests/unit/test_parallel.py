"""The order the suite's tests start in on several workers (tests/parallel.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.parallel import slow_first


@dataclass
class Item:
    """What slow_first reads of a collected test: its module and its slow mark."""

    path: Path
    name: str
    slow: Any = None  # None: not slow; (): slow; (seconds,): slow, about that long

    def get_closest_marker(self, name: str) -> Any:
        if name != "slow" or self.slow is None:
            return None
        return pytest.mark.slow(*self.slow).mark


def test_the_slow_modules_start_first_the_longest_first_each_module_kept_together() -> None:
    items = [
        Item(Path("a.py"), "a1"),
        Item(Path("b.py"), "b1", ()),
        Item(Path("c.py"), "c1", (30,)),
        Item(Path("b.py"), "b2"),  # b.py is slow as a whole: its tests stay together
        Item(Path("d.py"), "d1", (120,)),
        Item(Path("c.py"), "c2", (30,)),
        Item(Path("e.py"), "e1"),
    ]
    slow_first(items)  # type: ignore[arg-type]
    assert [i.name for i in items] == ["d1", "c1", "c2", "b1", "b2", "a1", "e1"]
