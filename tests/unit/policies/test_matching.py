"""Matching: conditions, combinators, the event-type index and explanations."""

from __future__ import annotations

import pytest

from nova_autopilot.policies import PolicySet
from tests.unit.policy_helpers import nova_event, policies, request_event


def one_policy(match: str, event: str = "instance.update", source: str = "nova") -> PolicySet:
    return policies(
        f"""
        policies:
          - name: p
            when:
              source: {source}
              event: {event}
              match: {match}
            do:
              action: rescue
              params: {{server: {{id: "{{{{ instance_id }}}}"}}}}
        """
    )


@pytest.mark.parametrize(
    ("condition", "payload", "fires"),
    [
        ("{field: payload.state, equals: error}", {"state": "error"}, True),
        ("{field: payload.state, equals: error}", {"state": "active"}, False),
        ("{field: payload.state, equals: error}", {}, False),
        ("{field: payload.state, not_equals: error}", {"state": "active"}, True),
        ("{field: payload.state, not_equals: error}", {}, False),
        ("{field: payload.state, '==': null}", {"state": None}, True),
        ("{field: payload.locked, equals: 1}", {"locked": True}, False),
        ("{field: payload.state, in: [error, stopped]}", {"state": "stopped"}, True),
        ("{field: payload.state, not_in: [error, stopped]}", {"state": "active"}, True),
        ("{field: payload.flavor.name, glob: 'm1.*'}", {"flavor": {"name": "m1.big"}}, True),
        ("{field: payload.flavor.name, glob: 'm1.*'}", {"flavor": {"name": "x1.big"}}, False),
        ("{field: payload.msg, regex: 'panic|emergency'}", {"msg": "Kernel panic!"}, True),
        ("{field: payload.msg, regex: '^ok$'}", {"msg": 42}, False),
        ("{field: payload.launched_at, exists: true}", {"launched_at": "2026-01-01"}, True),
        ("{field: payload.launched_at, exists: true}", {"launched_at": None}, False),
        ("{field: payload.launched_at, exists: false}", {}, True),
        ("{field: payload.vcpus, '<': 4}", {"vcpus": 2}, True),
        ("{field: payload.vcpus, lt: 4}", {"vcpus": 4}, False),
        ("{field: payload.vcpus, '<=': 4}", {"vcpus": 4}, True),
        ("{field: payload.vcpus, '>': 4}", {"vcpus": 8}, True),
        ("{field: payload.vcpus, '>=': 4}", {"vcpus": 3.5}, False),
        ("{field: payload.vcpus, '>': 4}", {"vcpus": "8"}, False),
        ("{field: payload.vcpus, '>': 4}", {"vcpus": True}, False),
        ("{field: payload.tags, contains: gold}", {"tags": ["gold", "x"]}, True),
        ("{field: payload.name, contains: web}", {"name": "prod-web-1"}, True),
        ("{field: payload.metadata, contains: team}", {"metadata": {"team": "a"}}, True),
        ("{field: payload.metadata, contains: team}", {"metadata": 7}, False),
        ("{any: [{field: payload.a, equals: 1}, {field: payload.b, equals: 2}]}", {"b": 2}, True),
        ("{any: [{field: payload.a, equals: 1}, {field: payload.b, equals: 2}]}", {"b": 3}, False),
        ("{all: [{field: payload.a, equals: 1}, {field: payload.b, equals: 2}]}", {"a": 1}, False),
        ("{not: {field: payload.a, equals: 1}}", {"a": 2}, True),
        ("{not: {field: payload.a, equals: 1}}", {"a": 1}, False),
        ("[{field: payload.a, equals: 1}, {field: instance_id, exists: true}]", {"a": 1}, True),
        ("{field: project_id, equals: project-1}", {}, True),
        ("{field: host, equals: compute-1}", {}, True),
    ],
)
def test_conditions_decide_whether_a_policy_fires(
    condition: str, payload: dict[str, object], fires: bool
) -> None:
    assert bool(one_policy(condition).match(nova_event(**payload))) is fires


def test_a_match_carries_the_rendered_parameters_and_mode() -> None:
    (match,) = one_policy("{field: payload.state, equals: error}").match(nova_event(state="error"))
    assert match.action == "rescue"
    assert match.params == {"server": {"id": "11111111-2222-4333-8444-555555555555"}}
    assert match.dry_run is False
    assert match.error is None


def test_event_types_match_exactly_or_by_glob_and_sources_are_respected() -> None:
    cond = "{field: instance_id, exists: true}"
    assert one_policy(cond, event="'instance.*.error'").match(nova_event("instance.reboot.error"))
    assert not one_policy(cond, event="'instance.*.error'").match(nova_event("instance.update"))
    assert one_policy(cond, event="[a.b, instance.update]").match(nova_event())
    assert not one_policy(cond, source="request").match(nova_event())
    assert one_policy(cond, source="any").match(nova_event())


def test_disabled_policies_never_fire_and_say_so() -> None:
    ps = policies(
        """
        policies:
          - name: switched-off
            enabled: false
            when: {event: instance.update}
            do: {action: unrescue, params: {server: "{{ instance_id }}"}}
        """
    )
    event = nova_event()
    assert ps.match(event) == []
    (verdict,) = ps.explain(event)
    assert verdict.reason == "policy is disabled"


def test_matches_come_in_declaration_order_across_exact_and_glob_types() -> None:
    ps = policies(
        """
        policies:
          - name: glob-first
            when: {event: "instance.*"}
            do: {action: rescue, params: {server: "{{ instance_id }}"}}
          - name: exact-second
            when: {event: instance.update}
            do: {action: rescue, params: {server: "{{ instance_id }}"}}
          - name: glob-third
            when: {event: ["*.update", "instance.update"]}
            do: {action: rescue, params: {server: "{{ instance_id }}"}}
        """
    )
    assert [m.policy.name for m in ps.match(nova_event())] == [
        "glob-first",
        "exact-second",
        "glob-third",
    ]


def test_only_policies_that_can_match_the_event_type_are_evaluated() -> None:
    text = "policies:\n" + "".join(
        f"  - name: p{i}\n    when: {{event: other.event.{i}}}\n"
        f"    do: {{action: rescue, params: {{server: x}}}}\n"
        for i in range(500)
    )
    text += (
        "  - name: target\n    when: {event: instance.update}\n"
        "    do: {action: rescue, params: {server: x}}\n"
    )
    ps = policies(text)
    assert [p.name for p in ps.candidates(nova_event())] == ["target"]


def test_explain_gives_the_first_failing_condition_with_the_value_it_saw() -> None:
    ps = one_policy(
        "[{field: payload.state, equals: error}, {field: payload.launched_at, exists: true}]"
    )
    (verdict,) = ps.explain(nova_event(state="error", launched_at=None))
    assert not verdict.matched
    assert verdict.reason == "condition failed: payload.launched_at exists (saw None)"
    (verdict,) = ps.explain(nova_event(state="active"))
    assert verdict.reason == "condition failed: payload.state equals 'error' (saw 'active')"


def test_explain_names_source_and_event_type_mismatches() -> None:
    ps = one_policy("{field: payload.a, exists: true}", event="instance.update", source="nova")
    (verdict,) = ps.explain(request_event())
    assert verdict.reason == "source is 'request', the policy listens to 'nova'"
    (verdict,) = ps.explain(nova_event("instance.delete.end"))
    assert verdict.reason == "event type 'instance.delete.end' is not one of: instance.update"


def test_explain_and_match_agree_on_every_policy() -> None:
    ps = one_policy("{any: [{field: payload.a, equals: 1}, {not: {field: payload.b, gt: 2}}]}")
    for payload in ({"a": 1}, {"b": 3}, {"b": 1}, {"a": 2, "b": 5}, {}):
        event = nova_event(**payload)
        (verdict,) = ps.explain(event)
        assert verdict.matched is bool(ps.match(event)), payload


def test_a_match_whose_parameters_cannot_render_reports_the_error() -> None:
    ps = policies(
        """
        policies:
          - name: needs-flavor
            when: {event: quota.request.approved}
            do:
              action: resize
              params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}
        """
    )
    (match,) = ps.match(request_event())
    assert match.params == {}
    assert match.error == "{{payload.flavor}}: payload.flavor is missing"
