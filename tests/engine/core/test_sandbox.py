"""Hostile templates and conditions: every one fails as a TemplateError (or ConditionError), within the limits."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jinja2 import TemplateError, TemplateSyntaxError

from engine.core.playbooks import sandbox
from engine.core.playbooks.expressions import ConditionError, compile_condition, evaluate_condition
from engine.core.playbooks.sandbox import MAX_VALUE_CHARS, SandboxEvaluationError, SandboxLimitError
from engine.core.playbooks.templating import MAX_RENDER_CHARS, compile_template, render_params

CONTEXT: dict[str, Any] = {
    "incident": {"labels": {"model": "fraud", "namespace": "serving"}, "peak_score": 0.97, "title": "t"}
}

# Each would have taken the engine's memory or time, or escaped as a non-template exception.
EXPLODING = [
    pytest.param("range(10**10)|list", SandboxLimitError, id="huge-range"),
    pytest.param("'x' * 100000000", SandboxLimitError, id="string-repetition"),
    pytest.param("[1, 2] * 100000000", SandboxLimitError, id="list-repetition"),
    pytest.param("10 ** 100000", SandboxLimitError, id="huge-power"),
    pytest.param("'%0999999999d' % 1", SandboxLimitError, id="printf-width"),
    pytest.param("'%.2f'|format(1) ~ '%999999999s'|format(1)", SandboxLimitError, id="format-filter-width"),
    pytest.param("('x' * 5000)|replace('x', 'yyyyy')", SandboxLimitError, id="replace-growth"),
    pytest.param("range(1000)|map('string')|join('x' * 5000)", SandboxLimitError, id="join-growth"),
    pytest.param("[('x' * 9999)|list] * 1000", SandboxLimitError, id="nested-repetition"),
    pytest.param("[('x' * 5000)|list, ('y' * 5000)|list]|sum(start=[])", SandboxLimitError, id="sum-of-lists"),
    pytest.param("2.0 ** 100000", SandboxEvaluationError, id="float-overflow"),
    pytest.param("1 / 0", SandboxEvaluationError, id="division-by-zero"),
    pytest.param("'a' + 1", SandboxEvaluationError, id="type-error"),
]


@pytest.mark.parametrize(("expression", "error"), EXPLODING)
def test_exploding_templates_fail_as_template_errors(expression: str, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        render_params({"deployment": f"{{{{ {expression} }}}}"}, CONTEXT)
    assert isinstance(raised.value, TemplateError)


@pytest.mark.parametrize(("expression", "error"), EXPLODING)
def test_exploding_conditions_fail_as_condition_errors(expression: str, error: type[Exception]) -> None:
    with pytest.raises(ConditionError) as raised:
        evaluate_condition(f"({expression}) == 1", CONTEXT)
    assert isinstance(raised.value.__cause__, error)


def test_rendered_output_is_capped_per_value_and_per_rendering() -> None:
    concatenated = "{{ 'x' * 9000 ~ 'y' * 9000 }}"
    with pytest.raises(SandboxLimitError):
        render_params({"message": concatenated}, CONTEXT)
    just_under = f"{{{{ 'x' * {MAX_VALUE_CHARS} }}}}"
    assert len(render_params({"message": just_under}, CONTEXT)["message"]) == MAX_VALUE_CHARS
    many = {"matchers": {f"m{i}": just_under for i in range(MAX_RENDER_CHARS // MAX_VALUE_CHARS + 1)}}
    with pytest.raises(SandboxLimitError):
        render_params(many, CONTEXT)


def test_evaluation_time_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_EVAL_SECONDS", 0.0)
    started = time.monotonic()
    with pytest.raises(SandboxLimitError):
        render_params({"deployment": "{{ incident.labels.model|upper }}"}, CONTEXT)
    with pytest.raises(ConditionError):
        evaluate_condition("incident.labels.model|upper == 'FRAUD'", CONTEXT)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{% for i in range(3) %}{{ i }}{% endfor %}", id="loop"),
        pytest.param("{% set x = 'a' %}{{ x }}", id="assignment"),
        pytest.param("{% macro m() %}x{% endmacro %}{{ m() }}", id="macro"),
        pytest.param("{{ 'a'|center(10**9) }}", id="padding-filter"),
        pytest.param("{{ " + "(" * 400 + "1" + ")" * 400 + " }}", id="deep-nesting"),
        pytest.param("{{ '" + "x" * 5000 + "' }}", id="too-long"),
    ],
)
def test_templates_beyond_the_language_are_refused_when_compiled(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        compile_template(text)


def test_deeply_nested_conditions_are_refused_when_compiled() -> None:
    with pytest.raises(ConditionError):
        compile_condition("(" * 400 + "1" + ")" * 400)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param("'{:>999999999}'.format(1)", "cannot be called", id="str-format"),
        pytest.param("'x'.ljust(999999999)", "cannot be called", id="padding-method"),
        pytest.param("lipsum(10**6)", "undefined", id="lipsum"),
    ],
)
def test_only_safe_callables_are_callable(call: str, error: str) -> None:
    with pytest.raises(TemplateError, match=error):
        render_params({"message": f"{{{{ {call} }}}}"}, CONTEXT)


def test_ordinary_templates_and_conditions_still_work() -> None:
    rendered = render_params(
        {
            "deployment": "{{ incident.labels.model }}",
            "message": "{{ incident.labels.model|upper }} at {{ '%.2f'|format(incident.peak_score) }}"
            "{% if incident.peak_score > 0.9 %} (high){% endif %}",
            "tags": ["{{ incident.labels|dictsort|map('first')|join(',') }}", "plain"],
            "replicas": 3,
        },
        CONTEXT,
    )
    assert rendered == {
        "deployment": "fraud",
        "message": "FRAUD at 0.97 (high)",
        "tags": ["model,namespace", "plain"],
        "replicas": 3,
    }
    assert evaluate_condition("incident.labels.model.startswith('fr') and incident.peak_score > 0.9", CONTEXT)
    assert evaluate_condition("incident.labels.get('team', 'none') == 'none'", CONTEXT)
