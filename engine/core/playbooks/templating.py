"""Sandboxed rendering of step parameters: templates can read incident fields and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

# A sandbox that cannot mutate its inputs or call unsafe attributes; undefined names are errors, not blanks.
_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=1024)
def compile_template(text: str) -> Template:
    return _ENVIRONMENT.from_string(text)


def render_params(params: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Render every string (also inside lists and dicts) of ``params`` with ``context``."""
    return {key: _render(value, context) for key, value in params.items()}


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return compile_template(value).render(context) if "{" in value else value
    if isinstance(value, list):
        return [_render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: _render(item, context) for key, item in value.items()}
    return value
