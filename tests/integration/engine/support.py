"""What the engine's tests share: its world on a real journal (SQLite), the runner and an
in-memory Nova; the time; an operator's decision request."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nova_autopilot.actions.runner import Runner
from nova_autopilot.engine.flow import Engine
from nova_autopilot.events import Event, parse_message
from nova_autopilot.journal import Journal
from nova_autopilot.logs import redact
from nova_autopilot.policies import PolicySet
from tests.unit.fakes import FakeCloud, FakeServer, Results
from tests.unit.policy_helpers import nova_event, request_event

SID = "11111111-2222-4333-8444-555555555555"


def now() -> datetime:
    return datetime.now(timezone.utc)


class World:
    def __init__(self, tmp_path: Path, policy_set: PolicySet) -> None:
        self.cloud = FakeCloud()
        self.cloud.add(FakeServer(id=SID, name="web-1", flavor="m1.small"))
        self.journal = Journal.open(f"sqlite:///{tmp_path}/journal.sqlite", redact=redact)
        self.results = Results()
        self.engine: Engine
        self.runner = Runner(
            cloud=self.cloud,
            store=self.journal,
            clock=now,
            on_done=lambda done: self.engine.on_done(done),
            on_phase=lambda op_id, phase: self.engine.on_phase(op_id, phase),
            workers=2,
            retry_base_s=0.01,
        )
        self.engine = Engine(
            policies=lambda: policy_set,
            journal=self.journal,
            runner=self.runner,
            clock=now,
            reporter=self.results,
        )

    def approve(
        self, request_id: str = "r-1", flavor: str = "m1.large", *, redelivered: bool = False
    ) -> list[str]:
        event = request_event(id=request_id, flavor=flavor)
        return self.engine.handle(
            event, correlation_id=f"c-{request_id}", reply_to="answers", redelivered=redelivered
        )

    def nova(self, event_type: str) -> None:
        self.engine.handle(nova_event(event_type, uuid=SID))


def decision(verb: str, op_id: str, request_id: str, **fields: Any) -> Event:
    """An operator's ``operation.approve`` or ``operation.reject`` of ``op_id``."""
    return parse_message(
        {
            "type": f"operation.{verb}",
            "id": request_id,
            "timestamp": now().isoformat(),
            "operation_id": op_id,
            "approved_by": "carol",
            **fields,
        },
        expect="request",
    )
