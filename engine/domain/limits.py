"""What a series' labels may be, and how long a stored text may grow: the rules every entry point applies.

Label names and values follow Prometheus's rules: a name matches ``[a-zA-Z_][a-zA-Z0-9_]*`` and does not start
with ``__`` (Prometheus reserves that prefix for its own use; ``__name__`` travels as the metric name, never as a
label), a value is any text without NUL (PostgreSQL refuses NUL in text, and no exporter means one). On top of
those rules, ``LabelLimits`` bounds how many labels a series has and how long a name or value is, so that one
sender cannot make every key, title and index entry of the engine huge.

Texts the engine stores from outside (incident titles, alert annotations) are clipped with ``clip_text``, which
keeps the start and says that the rest was cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.domain.events import is_label_name, is_metric_name

RESERVED_PREFIX = "__"
# What a clipped text ends with, so that a reader knows there was more.
CLIPPED_MARKER = "…[truncated]"
# An offending name or value is quoted in an error only this far: errors are logged, returned and stored.
_QUOTED = 64


@dataclass(frozen=True)
class LabelLimits:
    """Bounds on one series' labels (the Prometheus naming rules always apply)."""

    max_labels: int = 64
    max_name_length: int = 256
    max_value_length: int = 1024


@dataclass(frozen=True)
class LabelProblem:
    """Why a label set was refused: ``kind`` is a short, bounded category, ``label`` the (clipped) name of the label
    at fault (None when the fault is the whole set's)."""

    kind: str
    label: str | None
    message: str


def quoted(text: str) -> str:
    """``text`` for an error message: repr-quoted, clipped so that a huge input does not make a huge error."""
    return repr(clip_text(text, _QUOTED))


def metric_name_problem(name: str, limits: LabelLimits) -> LabelProblem | None:
    """What is wrong with a metric name, or None."""
    if len(name) > limits.max_value_length:
        return LabelProblem("name_too_long", "__name__", f"metric name longer than {limits.max_value_length}")
    if not is_metric_name(name):
        return LabelProblem("metric_name", "__name__", f"invalid metric name {quoted(name)}")
    return None


def label_problem(labels: Iterable[tuple[str, str]], limits: LabelLimits, *, count: int) -> LabelProblem | None:
    """What is wrong with the first bad label of ``labels`` (``count`` of them), or None if all are valid."""
    if count > limits.max_labels:
        return LabelProblem("too_many_labels", None, f"{count} labels, more than {limits.max_labels}")
    for name, value in labels:
        problem = _name_problem(name, limits) or _value_problem(name, value, limits)
        if problem is not None:
            return problem
    return None


def _name_problem(name: str, limits: LabelLimits) -> LabelProblem | None:
    if len(name) > limits.max_name_length:
        return LabelProblem(
            "name_too_long", clip_text(name, _QUOTED), f"label name longer than {limits.max_name_length}"
        )
    if not is_label_name(name):
        return LabelProblem("label_name", clip_text(name, _QUOTED), f"invalid label name {quoted(name)}")
    if name.startswith(RESERVED_PREFIX):
        return LabelProblem("reserved_label", name, f"label name {quoted(name)} starts with the reserved '__'")
    return None


def _value_problem(name: str, value: str, limits: LabelLimits) -> LabelProblem | None:
    if len(value) > limits.max_value_length:
        return LabelProblem(
            "value_too_long", name, f"value of label {name!r} longer than {limits.max_value_length} characters"
        )
    if "\x00" in value:
        return LabelProblem("label_value", name, f"value of label {name!r} contains NUL")
    return None


def clip_text(text: str, max_chars: int) -> str:
    """``text`` if it has at most ``max_chars`` characters, else its start and ``CLIPPED_MARKER``, ``max_chars``
    characters in all."""
    if len(text) <= max_chars:
        return text
    return text[: max(max_chars - len(CLIPPED_MARKER), 0)] + CLIPPED_MARKER[: max(max_chars, 0)]
