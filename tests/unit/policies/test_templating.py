"""Templating: event fields into parameters, and nothing else."""

from __future__ import annotations

import pytest

from nova_autopilot.errors import TemplateError
from nova_autopilot.policies.templating import compile_template, compile_value, render_value
from tests.unit.policy_helpers import nova_event, request_event


def render(text: str, **payload: object) -> object:
    return render_value(compile_value(text), nova_event(**payload))


def test_a_lone_placeholder_keeps_the_value_type() -> None:
    assert render("{{ payload.vcpus }}", vcpus=4) == 4
    assert render("{{ payload.flavor }}", flavor={"name": "m1"}) == {"name": "m1"}
    assert render("{{ payload.gone | default(null) }}") is None


def test_mixed_text_renders_to_a_string() -> None:
    assert render("server {{ instance_id }} has {{ payload.vcpus }} vcpus", vcpus=4) == (
        "server 11111111-2222-4333-8444-555555555555 has 4 vcpus"
    )


def test_filters_transform_values() -> None:
    assert render("{{ payload.name | upper }}", name="web") == "WEB"
    assert render("{{ payload.name | lower }}", name="WEB") == "web"
    assert render("{{ payload.count | int }}", count="7") == 7
    assert render("{{ payload.count | string }}", count=7) == "7"
    assert render("{{ payload.missing | default('m1.small') }}") == "m1.small"
    assert render("{{ payload.missing | default(3) }}") == 3


def test_nested_parameters_are_rendered_throughout() -> None:
    value = compile_value({"server": {"id": "{{ instance_id }}"}, "tags": ["{{ host }}", 1]})
    assert render_value(value, nova_event()) == {
        "server": {"id": "11111111-2222-4333-8444-555555555555"},
        "tags": ["compute-1", 1],
    }


def test_plain_strings_stay_plain() -> None:
    assert compile_template("m1.large") == "m1.large"


def test_a_missing_field_without_default_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"payload\.flavor is missing"):
        render_value(compile_value("{{ payload.flavor }}"), request_event())


def test_an_unconvertible_value_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="integer"):
        render("{{ payload.n | int }}", n="many")


@pytest.mark.parametrize(
    "text",
    [
        "{{ payload.__class__.__mro__ }}",
        "{{ ().__class__ }}",
        "{{ raw }}",
        "{{ payload.x(1) }}",
        "{{ payload.x | attr('y') }}",
        "{{ payload.x + 1 }}",
        "{{ import os }}",
        "{{ payload.x }",
        "{{ payload.x | default(open) }}",
    ],
)
def test_anything_beyond_a_field_path_and_known_filters_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        compile_value(text)
