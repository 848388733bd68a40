"""Prometheus's label rules and the engine's bounds on labels and stored texts."""

import pytest

from engine.domain.limits import CLIPPED_MARKER, LabelLimits, clip_text, label_problem, metric_name_problem

LIMITS = LabelLimits(max_labels=3, max_name_length=10, max_value_length=8)


def _problem(labels: dict[str, str]) -> tuple[str, str | None] | None:
    problem = label_problem(labels.items(), LIMITS, count=len(labels))
    return None if problem is None else (problem.kind, problem.label)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"job": "api", "_private": "", "Zone_2": "eu"}, None),
        ({"": "x"}, ("label_name", "")),
        ({"has space": "x"}, ("label_name", "has space")),
        ({"9lives": "x"}, ("label_name", "9lives")),
        ({"dot.name": "x"}, ("label_name", "dot.name")),
        ({"nul\x00": "x"}, ("label_name", "nul\x00")),
        ({"__name__": "up"}, ("reserved_label", "__name__")),
        ({"__meta_x": "y"}, ("reserved_label", "__meta_x")),
        ({"job": "a\x00b"}, ("label_value", "job")),
        ({"job": "x" * 9}, ("value_too_long", "job")),
        ({"a" * 11: "x"}, ("name_too_long", "a" * 11)),
        ({"a": "1", "b": "2", "c": "3", "d": "4"}, ("too_many_labels", None)),
    ],
)
def test_labels_follow_prometheus_rules_and_the_bounds(
    labels: dict[str, str], expected: tuple[str, str | None] | None
) -> None:
    assert _problem(labels) == expected


def test_values_count_characters_not_bytes() -> None:
    assert _problem({"city": "Zürich€€"}) is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [("up", None), ("ns:rule", None), ("", "metric_name"), ("5xx", "metric_name"), ("a-b", "metric_name")],
)
def test_metric_names_follow_prometheus_rules(name: str, kind: str | None) -> None:
    problem = metric_name_problem(name, LIMITS)
    assert (None if problem is None else problem.kind) == kind


def test_a_huge_name_is_quoted_clipped_in_the_message() -> None:
    problem = label_problem([("x" * 1_000_000 + "!", "v")], LabelLimits(max_name_length=2_000_000), count=1)
    assert problem is not None
    assert problem.kind == "label_name"
    assert len(problem.message) < 200
    assert problem.label is not None
    assert len(problem.label) <= 64


@pytest.mark.parametrize("limit", [0, 3, 12, 13, 50])
def test_clipped_text_has_at_most_the_limit_and_says_it_was_cut(limit: int) -> None:
    text = "a" * 40
    clipped = clip_text(text, limit)
    if limit >= len(text):
        assert clipped == text
    else:
        assert len(clipped) == limit
        kept = limit - len(CLIPPED_MARKER)
        if kept >= 0:
            assert clipped == text[:kept] + CLIPPED_MARKER
        else:
            assert clipped == CLIPPED_MARKER[:limit]
