"""The small, safe languages inside playbooks: durations ("90s", "5m", "1h30m"), Prometheus-style label
matchers (``model=~"fraud.*"``) and conditions (sandboxed Jinja expressions such as
``incident.peak_score > 0.99 and incident.labels.model == "fraud-detector"``; never ``eval``, never a shell).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from jinja2 import TemplateError
from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from engine.core.playbooks.sandbox import SANDBOX, bounded_evaluation
from engine.domain.promql_strings import PromQLStringError, PromQLStringProblem, quote, unquote

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a Prometheus-style duration string; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '90s', '5m', '1h30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    raise ValueError(f"invalid duration {value!r}; use a number of seconds or e.g. '90s', '5m', '1h30m', '2d'")


def format_duration(seconds: float) -> str:
    return f"{seconds:g}s"


# Seconds in Python, a friendly string in YAML and JSON Schema.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"},
            ],
            "description": "seconds, or a duration such as 90s, 5m, 1h30m",
        }
    ),
]


class MatchOp(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


# The name and operator; the rest, blanks around it aside, is the value as a PromQL string literal. (Trailing
# blanks are stripped apart: a lazy group before them would backtrack over every blank, quadratic in the length.)
_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class LabelMatcher:
    """One Prometheus label matcher; regular expressions are anchored at both ends, as in PromQL. The value is
    written as a PromQL string (``engine.domain.promql_strings``): double, single or back quotes, Go's escapes."""

    label: str
    op: MatchOp
    value: str

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        found = _MATCHER.fullmatch(text)
        literal = "" if found is None else found.group(3).rstrip()
        if found is None or not literal:
            raise ValueError(f'invalid matcher {text!r}; expected label="value", !=, =~ or !~')
        label, op = found.group(1, 2)
        try:
            value = unquote(literal)
        except PromQLStringError as exc:
            at = found.start(3) + exc.position
            raise ValueError(f"invalid matcher {text!r}: {exc.reason} at character {at}{_hint(exc)}") from exc
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression in {text!r}: {exc}") from exc
        return cls(label, MatchOp(op), value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A missing label matches as the empty string, as in Prometheus.
        actual = labels.get(self.label, "")
        if self.op is MatchOp.EQUAL:
            return actual == self.value
        if self.op is MatchOp.NOT_EQUAL:
            return actual != self.value
        hit = _anchored(self.value).fullmatch(actual) is not None
        return hit if self.op is MatchOp.REGEX else not hit

    def __str__(self) -> str:
        # Written so that ``parse`` (and Prometheus) reads back the same value: a stored step's matchers must load
        # as they were planned.
        return f"{self.label}{self.op.value}{quote(self.value)}"


def _hint(exc: PromQLStringError) -> str:
    if exc.problem is PromQLStringProblem.UNKNOWN_ESCAPE:
        # Mostly a regular expression's backslash (\d, \.) written once, as Python's raw strings allow.
        return '; in quotes a backslash is written twice (=~"v1\\\\.2"), in backticks once (=~`v1\\.2`)'
    return ""


@lru_cache(maxsize=512)
def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _to_matcher(value: object) -> LabelMatcher:
    if isinstance(value, LabelMatcher):
        return value
    if not isinstance(value, str):
        raise ValueError('a matcher is a string such as model=~"fraud.*"')
    return LabelMatcher.parse(value)


Matcher = Annotated[
    LabelMatcher,
    BeforeValidator(_to_matcher),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"""^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*(".*"|'.*'|`[^`]*`)\s*$"""}
    ),
]


class ConditionError(ValueError):
    """A condition that does not compile, or fails to evaluate for a given incident (including one that goes past
    a limit of the sandbox, see ``engine.core.playbooks.sandbox``)."""


# Conditions see only the values the caller passes in; the bounded sandbox refuses attribute tricks, mutation
# and anything that would take the engine's memory or time.
@lru_cache(maxsize=512)
def compile_condition(text: str) -> Callable[..., Any]:
    try:
        return SANDBOX.compile_condition(text)
    except TemplateError as exc:
        raise ConditionError(f"invalid condition {_quoted(text)}: {exc}") from exc


def evaluate_condition(text: str, context: Mapping[str, Any]) -> bool:
    condition = compile_condition(text)
    try:
        with bounded_evaluation():
            return bool(condition(**context))
    except TemplateError as exc:
        raise ConditionError(f"condition {_quoted(text)} failed: {exc}") from exc


def _quoted(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}..."
