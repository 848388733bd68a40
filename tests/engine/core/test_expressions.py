import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.core.playbooks.expressions import (
    ConditionError,
    LabelMatcher,
    MatchOp,
    evaluate_condition,
    parse_duration,
)

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]*", fullmatch=True)


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


@pytest.mark.parametrize(
    ("text", "label", "op", "value"),
    [
        # Values are PromQL strings, read as Prometheus reads them (cases in tests/engine/test_promql_strings.py).
        (r'job="a\\b"', "job", MatchOp.EQUAL, "a\\b"),
        (r'path="C:\\\\x"', "path", MatchOp.EQUAL, "C:\\\\x"),
        (r'msg!="a\nb\tc"', "msg", MatchOp.NOT_EQUAL, "a\nb\tc"),
        (r'name="caf\u00e9 \x41\101"', "name", MatchOp.EQUAL, "café AA"),
        ("env='prod'", "env", MatchOp.EQUAL, "prod"),
        ("msg='it\\'s \"x\"'", "msg", MatchOp.EQUAL, 'it\'s "x"'),
        (r"model=~`fraud\.v\d+`", "model", MatchOp.REGEX, r"fraud\.v\d+"),
        (r'model!~"fraud\\.v\\d+"', "model", MatchOp.NOT_REGEX, r"fraud\.v\d+"),
        ('  env = "prod"  ', "env", MatchOp.EQUAL, "prod"),
    ],
)
def test_matcher_values_decode_as_in_promql(text: str, label: str, op: MatchOp, value: str) -> None:
    assert LabelMatcher.parse(text) == LabelMatcher(label, op, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r'model=~"fraud\.v2"', r"unknown escape sequence U+002E '.' at character 14; in quotes a backslash"),
        ('msg="two\nlines"', "unterminated quoted string at character 8"),
        ('msg="open', "unterminated quoted string at character 9"),
        (r'name="\u00"', "illegal character U+0022 '\"' in escape sequence at character 10"),
        (r'name="\xff"', "escaped bytes are not valid UTF-8 at character 6"),
        ('name="a" or b', "unexpected text after the closing quote at character 8"),
        ("name=prod", "expected a string in double quotes, single quotes or backticks at character 5"),
        ("name=", "expected label="),
    ],
)
def test_matchers_prometheus_refuses_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid matcher") as caught:
        LabelMatcher.parse(text)
    assert message in str(caught.value)


@given(
    label_names,
    st.sampled_from(MatchOp),
    st.text(st.one_of(st.sampled_from("\"'`\\\n\r\t\x00\u0085 "), st.characters(codec="utf-8"))),
)
@example("msg", MatchOp.EQUAL, 'say "hi" \\ C:\\\\x \n\t é \u200b')
def test_every_matcher_reads_back_from_its_text(label: str, op: MatchOp, text: str) -> None:
    # A stored step's matchers are written with str() and read back with parse(); regular expressions are any text
    # made literal, so that every value is a valid pattern.
    value = re.escape(text) if op in (MatchOp.REGEX, MatchOp.NOT_REGEX) else text
    matcher = LabelMatcher(label, op, value)
    assert LabelMatcher.parse(str(matcher)) == matcher


def test_conditions_cannot_reach_python_internals() -> None:
    with pytest.raises(ConditionError, match="unsafe"):
        evaluate_condition("incident.__class__.__base__.__subclasses__()", {"incident": {}})
    with pytest.raises(ConditionError, match="unsafe"):
        evaluate_condition("incident.labels.pop('model')", {"incident": {"labels": {"model": "x"}}})


def test_undefined_names_are_errors_not_false() -> None:
    with pytest.raises(ConditionError):
        evaluate_condition("missing > 1", {})
