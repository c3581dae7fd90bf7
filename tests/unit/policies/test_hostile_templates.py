"""Templates render event fields and nothing else: values that look like
templates stay text, paths never reach a Python attribute or method, and a
filter's argument is a literal, whoever wrote the request."""

from __future__ import annotations

import dataclasses

import pytest

from nova_autopilot.errors import TemplateError
from nova_autopilot.policies.templating import compile_value, render_value
from tests.unit.policy_helpers import request_event


def render(template: object, **fields: object) -> object:
    event = dataclasses.replace(request_event(**fields), key_id="team-a")
    return render_value(compile_value(template), event)


def test_a_request_value_that_looks_like_a_template_is_rendered_as_text_once() -> None:
    hostile = "{{ key_id }} {{ payload.__class__ }} {% import os %}"
    assert render("{{ payload.reason }}", reason=hostile) == hostile
    assert render("say {{ payload.reason }}", reason=hostile) == f"say {hostile}"


@pytest.mark.parametrize(
    "path",
    ["payload.flavor.upper", "payload.flavor.0", "payload.server.id.count", "payload.x.y"],
)
def test_a_path_never_reaches_an_attribute_or_method(path: str) -> None:
    with pytest.raises(TemplateError, match="is missing"):
        render(f"{{{{ {path} }}}}", flavor="m1.large")


def test_a_filter_argument_is_a_literal_never_rendered() -> None:
    assert render('{{ payload.absent | default("key_id") }}') == "key_id"
    assert render("{{ payload.absent | default('payload.flavor') }}") == "payload.flavor"


def test_the_signing_key_is_a_field_like_any_other() -> None:
    assert render("{{ key_id }}") == "team-a"


@pytest.mark.parametrize(
    "template",
    [
        "{{ payload.__class__ }}",
        "{{ payload.server.id.__len__ }}",
        '{{ payload.absent | default("{{ key_id }}") }}',
        "{{ payload.flavor | attr('__class__') }}",
        "{{ ''.__class__ }}",
        "{{ payload.flavor() }}",
        "{{ payload['flavor'] }}",
        "{{ event }}",
    ],
)
def test_templates_that_reach_further_do_not_compile(template: str) -> None:
    with pytest.raises(ValueError, match=r"field|filter|unbalanced"):
        compile_value(template)
