"""Loading policies: the seed file is valid, and every mistake is reported at once
with its file, line, policy and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nova_autopilot.errors import PolicyError, PolicyProblem
from nova_autopilot.policies import load_policies, load_texts
from nova_autopilot.policies.model import BreakerLimits, Budget
from tests.unit.policy_helpers import policies

ROOT = Path(__file__).resolve().parents[3]

VALID = """\
version: 1
policies:
  - name: resize-approved
    when:
      source: request
      event: quota.request.approved
    do:
      action: resize
      params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}
"""


def problems(text: str, file: str = "p.yaml") -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        load_texts([(file, textwrap.dedent(text))])
    return list(caught.value.problems)


def test_the_seed_policies_are_valid_and_describe_both_flows() -> None:
    seed = load_policies(ROOT / "config" / "policies.yaml")
    names = [p.name for p in seed.policies]
    assert names == ["resize-on-approved-quota", "rescue-failed-boot", "unrescue-when-repaired"]
    resize = seed.by_name("resize-on-approved-quota")
    assert resize is not None
    assert resize.confirm.on_failure == "revert"
    assert resize.limits.cooldown_s == 3600
    assert resize.limits.budget is not None
    assert resize.limits.budget.max == 20
    assert [c.kind for c in resize.confirm.gate] == ["tcp", "console"]


def test_defaults_fill_what_a_policy_leaves_out() -> None:
    policy = policies(VALID).policies[0]
    assert policy.enabled is True
    assert policy.mode == "enforce"
    assert policy.confirm.on_failure == "revert"
    assert policy.confirm.timeout_s == 900
    assert policy.confirm.task_timeout_s == 120
    assert policy.limits.cooldown_s is None
    assert policy.line == 3


def test_a_policy_sets_how_long_its_action_waits_for_novas_task() -> None:
    policy = policies(VALID + "    confirm: {task_timeout: 5m}\n").policies[0]
    assert policy.confirm.task_timeout_s == 300


def test_every_mistake_is_reported_at_once_with_file_line_policy_and_field() -> None:
    found = problems(
        """\
        version: 1
        policies:
          - name: first
            mode: sometimes
            when:
              source: neutron
              event: instance.update
            do:
              action: resize
              params: {server: "{{ instance_id }}"}
          - name: second
            when:
              event: instance.update
              match:
                - field: payload.state
                  between: [1, 2]
            do:
              action: reboot
            limits:
              cooldown: soon
        """
    )
    rendered = [str(p) for p in found]
    assert rendered == [
        "p.yaml:4: policy 'first': mode: must be one of enforce, dry-run, approve; got 'sometimes'",
        "p.yaml:6: policy 'first': when.source: must be one of nova, request, autopilot, sweep, "
        "any; got 'neutron'",
        "p.yaml:10: policy 'first': do.params: action 'resize' needs parameter 'flavor'",
        "p.yaml:15: policy 'second': when.match[0]: needs exactly one operator of: equals, "
        "not_equals, in, not_in, glob, regex, contains, lt, le, gt, ge, longer_than, "
        "shorter_than, exists; got ['between']",
        "p.yaml:18: policy 'second': do.action: must be one of resize, finish_resize, rescue, "
        "unrescue, verify_boot; got 'reboot'",
        "p.yaml:20: policy 'second': limits.cooldown: must be a duration such as 90s, 15m, "
        "1h30m or seconds; got 'soon'",
    ]


@pytest.mark.parametrize(
    ("snippet", "field", "message"),
    [
        ("    colour: blue\n", "colour", "unknown key"),
        ("    enabled: maybe\n", "enabled", "true or false"),
        ("    confirm: {on_failure: explode}\n", "confirm.on_failure", "revert, keep"),
        ("    confirm: {gate: [{ping: {}}]}\n", "confirm.gate[0]", "tcp, console"),
        ("    confirm: {gate: [{tcp: {timeout: 5}}]}\n", "confirm.gate[0].tcp", "needs a port"),
        ("    limits: {budget: {max: 0, per: 1h}}\n", "limits.budget.max", "at least 1"),
        ("    limits: {when_busy: queue}\n", "limits.when_busy", "refuse, wait"),
        ("    limits: {max_wait: 5m}\n", "limits.max_wait", "only with when_busy: wait"),
        ("    limits: {when_busy: wait, max_wait: later}\n", "limits.max_wait", "duration"),
        ("    confirm: {task_timeout: later}\n", "confirm.task_timeout", "a duration"),
        ("    limits: {budget_per_host: {max: 2}}\n", "limits.budget_per_host", "needs 'per'"),
        ("    limits: {budget_per_zone: {max: 2, per: 0}}\n", "limits.budget_per_zone.per", "zero"),
        ("    limits: {budget_per_rack: {max: 2, per: 1h}}\n", "limits.budget_per_rack", "unknown"),
        ("    limits: {max_concurrent: 0}\n", "limits.max_concurrent", "at least 1"),
        ("    limits: {loop: {max: two, per: 1h}}\n", "limits.loop.max", "whole number"),
        ("    limits: {breaker: {failures: -1}}\n", "limits.breaker.failures", "at least 0"),
        ("    limits: {breaker: {window: soon}}\n", "limits.breaker.window", "a duration"),
        ("    limits: {breaker: {trip: 1}}\n", "limits.breaker.trip", "unknown key"),
    ],
)
def test_each_section_is_validated(snippet: str, field: str, message: str) -> None:
    found = problems(VALID + snippet)
    assert len(found) == 1, found
    assert found[0].field == field
    assert message in found[0].message
    assert found[0].policy == "resize-approved"


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{field: payload.x, regex: '(unclosed'}", "not a valid regular expression"),
        ("{field: payload.x, in: notalist}", "list of plain values"),
        ("{field: payload.x, exists: yes please}", "true or false"),
        ("{field: 'payload..x', equals: 1}", "not a field path"),
        ("{field: secret.thing, equals: 1}", "unknown field 'secret'"),
        ("{any: []}", "non-empty list"),
        ("{all: [{field: a}], any: []}", "must stand alone"),
        ("{field: payload.x, '>': [1]}", "number or a string"),
    ],
)
def test_bad_conditions_are_explained(condition: str, message: str) -> None:
    text = VALID.replace(
        "      event: quota.request.approved\n",
        f"      event: quota.request.approved\n      match: {condition}\n",
    )
    found = problems(text)
    assert any(message in p.message for p in found), found
    assert all(p.line is not None and p.line >= 6 for p in found)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ('{server: "{{ __class__ }}", flavor: x}', "are not fields"),
        ('{server: "{{ secrets.key }}", flavor: x}', "unknown field 'secrets'"),
        ('{server: "{{ payload.x | eval }}", flavor: x}', "unknown filter"),
        ('{server: "{{ payload.x", flavor: x}', "unbalanced"),
        ('{server: "{{ payload.x | default }}", flavor: x}', "needs argument"),
        ('{server: "{{ payload.x | default(os.system) }}", flavor: x}', "filter argument"),
        ('{server: "{{ instance_id }}", flavor: x, extra: 1}', "unknown key"),
    ],
)
def test_templates_that_could_reach_further_than_event_fields_are_refused(
    params: str, message: str
) -> None:
    text = VALID.replace(
        'params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}',
        f"params: {params}",
    )
    found = problems(text)
    assert any(message in p.message for p in found), found


def test_duplicate_names_across_files_name_the_first_definition() -> None:
    with pytest.raises(PolicyError) as caught:
        load_texts([("a.yaml", VALID), ("b.yaml", VALID)])
    (problem,) = caught.value.problems
    assert problem.file == "b.yaml"
    assert "first defined at a.yaml:3" in problem.message


def test_a_directory_loads_every_yaml_file_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "20-second.yaml").write_text(VALID.replace("resize-approved", "second"))
    (tmp_path / "10-first.yml").write_text(VALID.replace("resize-approved", "first"))
    (tmp_path / "README.txt").write_text("not a policy")
    loaded = load_policies(tmp_path)
    assert [p.name for p in loaded.policies] == ["first", "second"]


def test_missing_paths_and_empty_directories_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_policies(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match=r"no \*\.yaml policy files"):
        load_policies(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies: [\n", "not valid YAML"),
        ("policies: !!python/object:os.system {}\n", "is not allowed"),
        ("policies: !!python/name:os.system x\n", "not valid YAML"),
        ("policies: []\npolicies: []\n", "duplicate key"),
        ("- just a list\n", "must be a mapping"),
        ("version: 2\npolicies: []\n", "only version 1"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, n in zip("abcdef", "bcdefg", strict=True)
            )
            + "policies: []\n",
            "expands to more than",
        ),
    ],
)
def test_broken_or_hostile_yaml_is_a_located_error(text: str, message: str) -> None:
    found = problems(text)
    assert any(message in p.message for p in found), found


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "when",
                    "do",
                    "event",
                    "match",
                    "field",
                    "equals",
                    "action",
                    "params",
                    "policies",
                    "confirm",
                    "limits",
                    "any",
                    "not",
                    "gate",
                    "tcp",
                    "source",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.just("policies"), st.lists(yaml_values, max_size=3)) | yaml_values)
def test_random_documents_load_or_fail_with_problems_never_a_crash(value: object) -> None:
    try:
        load_texts([("fuzz.yaml", yaml.safe_dump(value))])
    except PolicyError as exc:
        assert exc.problems
        assert all(p.file == "fuzz.yaml" and p.message for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_loads_or_fails_with_problems_never_a_crash(text: str) -> None:
    try:
        load_texts([("fuzz.yaml", text)])
    except PolicyError as exc:
        assert exc.problems


def test_busy_servers_and_approvals_are_policy_settings() -> None:
    text = VALID.replace("name: resize-approved", "name: resize-approved\n    mode: approve")
    limits = "    limits: {when_busy: wait, max_wait: 30m}\n"
    (policy,) = load_texts([("p.yaml", text + limits)]).policies
    assert policy.mode == "approve"
    assert (policy.limits.when_busy, policy.limits.max_wait_s) == ("wait", 1800.0)
    (default,) = load_texts([("p.yaml", VALID)]).policies
    assert (default.mode, default.limits.when_busy) == ("enforce", "refuse")


def test_every_limit_a_policy_can_set_is_read() -> None:
    (policy,) = load_texts(
        [
            (
                "p.yaml",
                VALID
                + """    limits:
      cooldown: 10m
      budget: {max: 20, per: 1h}
      budget_per_project: {max: 5, per: 1h}
      budget_per_host: {max: 2, per: 10m}
      budget_per_zone: {max: 10, per: 1d}
      max_concurrent: 4
      loop: {max: 3, per: 2h}
      breaker: {failures: 0, half_open_after: 5m}
""",
            )
        ]
    ).policies
    limits = policy.limits
    assert limits.cooldown_s == 600
    assert (limits.budget_per_project, limits.budget_per_host, limits.budget_per_zone) == (
        Budget(5, 3600),
        Budget(2, 600),
        Budget(10, 86400),
    )
    assert (limits.max_concurrent, limits.loop) == (4, Budget(3, 7200))
    assert limits.breaker == BreakerLimits(failures=0, window_s=None, half_open_after_s=300)


def test_an_empty_policy_file_is_an_error_for_check_and_runs_doing_nothing() -> None:
    assert len(load_texts([("empty.yaml", "")])) == 0
    with pytest.raises(PolicyError) as caught:
        load_texts([("empty.yaml", "")], strict=True)
    assert [str(p) for p in caught.value.problems] == [
        "empty.yaml: the file is empty: it has no policies"
    ]


def test_a_duplicate_name_is_reported_even_when_the_duplicate_has_another_error() -> None:
    text = (
        "policies:\n"
        "  - name: a\n    when: {event: instance.update}\n"
        "    do: {action: rescue, params: {server: x}}\n"
        "  - name: a\n    when: {source: moon, event: instance.update}\n"
        "    do: {action: rescue, params: {server: x}}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_texts([("p.yaml", text)])
    assert [str(p) for p in caught.value.problems] == [
        "p.yaml:6: policy 'a': when.source: must be one of nova, request, autopilot, sweep, any;"
        " got 'moon'",
        "p.yaml:5: policy 'a': name: duplicate policy name (first defined at p.yaml:2)",
    ]


def test_event_types_are_checked_only_when_asked_and_declarations_are_always_read() -> None:
    text = (
        "event_types:\n  request: [quota.request.approved]\n"
        "policies:\n  - name: a\n    when: {source: nova, event: instance.updte}\n"
        "    do: {action: rescue, params: {server: x}}\n"
    )
    assert len(load_texts([("p.yaml", text)])) == 1
    with pytest.raises(PolicyError, match=r"did you mean instance\.update"):
        load_texts([("p.yaml", text)], strict=True)
