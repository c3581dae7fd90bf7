"""Several daemons on one journal: who resumes the operations of one that died.

Every daemon claims, in the journal, each operation it runs (owner: its member
id, with a lease it renews at each heartbeat) and holds its server's lock of
the group until the operation ends. :meth:`Takeover.run`, called at start and
then every ``[coordination] takeover_interval`` on every daemon, looks at the
journal's unfinished operations and resumes those nobody works on any more:

* an operation whose owner is still a member of the group is left to it;
* the server's lock must be free (the dead owner's expired with it): taken at
  once or the operation is left for the next look;
* the journal's claim must succeed: another owner's unexpired lease, or a
  survivor that claimed it first, leaves it alone; a claim moves the
  operation's version on, so a daemon that was only paused finds out at its
  next write and lets it go;
* then it goes to the runner, as at a restart (:meth:`Engine.resume`).

Held operations (queued, awaiting approval) belong to no daemon: the leader
keeps their deadlines and, when nothing occupies their server any more,
releases the next queued one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from nova_autopilot.actions.runner import Runner, Work
from nova_autopilot.coordination import Coordinator
from nova_autopilot.engine.holds import Holds
from nova_autopilot.engine.locks import ServerLocks
from nova_autopilot.journal import HELD_PHASES, Journal, Operation
from nova_autopilot.logs import bound, get_logger

log = get_logger(__name__)


class Takeover:
    def __init__(
        self,
        *,
        journal: Journal,
        coordinator: Coordinator,
        holds: Holds,
        locks: ServerLocks,
        runner: Runner,
        work_of: Callable[[Operation], Work],
        clock: Callable[[], datetime],
    ) -> None:
        self._journal = journal
        self._coordinator = coordinator
        self._holds = holds
        self._locks = locks
        self._runner = runner
        self._work_of = work_of
        self._clock = clock
        self._tracked: set[str] = set()
        self._started = False

    def run(self) -> int:
        """Resume the operations nobody works on; how many this daemon took."""
        me = self._coordinator.member_id
        first, self._started = not self._started, True
        members = self._coordinator.members()
        mine = {r.op_id for r in self._runner.running()}
        leader = self._coordinator.is_leader()
        taken = 0
        held_servers: set[str | None] = set()
        for operation in self._journal.unfinished():
            if operation.phase in HELD_PHASES:
                if leader:
                    held_servers.add(operation.server_id)
                    if operation.id not in self._tracked and self._holds.track(operation):
                        self._tracked.add(operation.id)
                continue
            if operation.id in mine:
                continue
            if operation.owner == me and not first:
                continue  # claimed a moment ago, on its way to the runner
            if operation.owner not in (None, me) and operation.owner in members:
                continue
            taken += self._adopt(operation, me)
        now = self._clock()
        for server_id in held_servers:
            self._holds.release_next(server_id, now)
        self._tracked &= {o.id for o in self._journal.unfinished() if o.phase in HELD_PHASES}
        if taken:
            log.info("operations.taken_over", count=taken, member_id=me)
        return taken

    def _adopt(self, operation: Operation, me: str) -> int:
        servers = self._locks
        if not servers.take(operation.server_id):
            return 0  # its owner still holds the server, or another survivor does
        claimed = self._journal.claim(operation.id, owner=me, now=self._clock())
        if claimed is None:
            servers.drop(operation.server_id)
            return 0
        with bound(operation_id=operation.id, server_id=operation.server_id):
            log.warning(
                "operation.taken_over",
                action=operation.action,
                phase=operation.phase,
                previous_owner=operation.owner,
            )
        self._runner.submit(self._work_of(claimed))
        return 1
