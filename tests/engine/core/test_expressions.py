import pytest

from engine.core.playbooks.expressions import (
    ConditionError,
    LabelMatcher,
    MatchOp,
    evaluate_condition,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0), ("250ms", 0.25), (42, 42.0), (1.5, 1.5)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "m5", "", "-5s", -1, True, "5m junk"])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_matcher_parsing_and_quotes() -> None:
    matcher = LabelMatcher.parse(r'msg="say \"hi\""')
    assert (matcher.label, matcher.op, matcher.value) == ("msg", MatchOp.EQUAL, 'say "hi"')
    assert matcher.matches({"msg": 'say "hi"'})


def test_conditions_cannot_reach_python_internals() -> None:
    with pytest.raises(ConditionError, match="unsafe"):
        evaluate_condition("incident.__class__.__base__.__subclasses__()", {"incident": {}})
    with pytest.raises(ConditionError, match="unsafe"):
        evaluate_condition("incident.labels.pop('model')", {"incident": {"labels": {"model": "x"}}})


def test_undefined_names_are_errors_not_false() -> None:
    with pytest.raises(ConditionError):
        evaluate_condition("missing > 1", {})
