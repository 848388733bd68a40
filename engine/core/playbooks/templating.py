"""Sandboxed rendering of step parameters: templates can read incident fields and nothing else.

Rendering is bounded (see ``engine.core.playbooks.sandbox``): each rendered value holds at most
``MAX_VALUE_CHARS`` characters and all values of one step together at most ``MAX_RENDER_CHARS``, and a step's
rendering may take ``MAX_EVAL_SECONDS``. Any failure is a ``jinja2.TemplateError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template

from engine.core.playbooks.sandbox import MAX_VALUE_CHARS, SANDBOX, SandboxLimitError, bounded_evaluation

MAX_RENDER_CHARS = 65_536


@lru_cache(maxsize=1024)
def compile_template(text: str) -> Template:
    """The compiled template; TemplateSyntaxError if it does not compile or breaks the sandbox's rules."""
    return SANDBOX.compile_checked(text)


def is_template(value: str) -> bool:
    """Whether a parameter string is rendered (it may hold ``{{ }}`` or ``{% %}``) rather than taken as it is."""
    return "{" in value


def render_params(params: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Render every string (also inside lists and dicts) of ``params`` with ``context``."""
    budget = _Budget()
    with bounded_evaluation():
        return {key: _render(value, context, budget) for key, value in params.items()}


class _Budget:
    """Characters all values of one rendering may still produce."""

    def __init__(self) -> None:
        self.left = MAX_RENDER_CHARS

    def spend(self, chars: int) -> None:
        self.left -= chars
        if self.left < 0:
            raise SandboxLimitError(f"the rendered parameters are longer than the limit of {MAX_RENDER_CHARS}")


def _render(value: Any, context: Mapping[str, Any], budget: _Budget) -> Any:
    if isinstance(value, str):
        return _render_text(value, context, budget) if is_template(value) else value
    if isinstance(value, list):
        return [_render(item, context, budget) for item in value]
    if isinstance(value, dict):
        return {key: _render(item, context, budget) for key, item in value.items()}
    return value


def _render_text(text: str, context: Mapping[str, Any], budget: _Budget) -> str:
    # Streamed piece by piece, so output over the limit stops the template instead of being built first.
    parts: list[str] = []
    length = 0
    for part in compile_template(text).generate(context):
        length += len(part)
        if length > MAX_VALUE_CHARS:
            raise SandboxLimitError(f"a rendered value is longer than the limit of {MAX_VALUE_CHARS} characters")
        budget.spend(len(part))
        parts.append(part)
    return "".join(parts)
