"""New identifiers: random, unaffected by whoever seeds the random module, distinct in
a forked child."""

from __future__ import annotations

import multiprocessing
import random
import re

import pytest

from nova_autopilot.ids import new_id


def test_an_id_is_32_hex_digits_and_ids_do_not_repeat() -> None:
    ids = [new_id() for _ in range(10_000)]

    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_seeding_the_random_module_does_not_repeat_ids() -> None:
    random.seed(7)
    first = new_id()
    random.seed(7)

    assert new_id() != first


def _child_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(new_id())


# eventlet (which oslo.messaging imports) warns against fork for its own green threads.
@pytest.mark.filterwarnings("ignore:Using fork:DeprecationWarning")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    children = [context.Process(target=_child_id, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    drawn = {queue.get(timeout=30) for _ in children}
    for child in children:
        child.join(timeout=30)

    assert len(drawn) == 2
    assert new_id() not in drawn
