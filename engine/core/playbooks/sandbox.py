"""The Jinja sandbox that playbook templates and conditions run in, bounded in size and in time.

Jinja's own sandbox stops templates from reaching Python internals, but not from exhausting the engine: a
playbook that validates could still ask for ``range(10**10)``, ``'x' * 10**8`` or ``10**10**10``, and a
template runs on the event loop. Here every value a template builds is checked as it is built:

* ``range`` holds at most ``MAX_RANGE`` items;
* a string, list or tuple made by ``*``, ``+``, ``%``, a filter or a method call holds at most
  ``MAX_VALUE_CHARS`` items, and an integer at most ``MAX_INT_BITS`` bits (``**`` is checked before it runs);
* the text of a template or condition is at most ``MAX_SOURCE_CHARS`` long, and templates hold expressions and
  ``{% if %}`` only: no loops, macros, assignments or includes, so the work a template does grows with its
  length, not with the numbers in it;
* one evaluation (a condition, or all parameters of a step) may use ``MAX_EVAL_SECONDS`` of CPU time (CPU time of
  the evaluating thread, so that a busy machine does not fail templates that are merely waiting for a core);
* only a fixed set of filters and of string and mapping methods can be called.

Whatever goes wrong inside a template (a limit, a division by zero, a type error, an overflow) surfaces as a
``jinja2.TemplateError``: ``SandboxLimitError`` for a limit, ``SandboxEvaluationError`` for anything else, so
the one step or condition it belongs to fails and nothing else does.
"""

from __future__ import annotations

import operator
import re
import time
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateRuntimeError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SOURCE_CHARS = 4096
MAX_VALUE_CHARS = 10_000
MAX_RANGE = 1000
MAX_INT_BITS = 4096
MAX_EVAL_SECONDS = 0.5
# The widest field a printf-style format may ask for ("%10s", "%.3f").
MAX_FORMAT_WIDTH = 100

# Statements a template may hold besides plain text and ``{{ ... }}``.
_ALLOWED_STATEMENTS = (nodes.Output, nodes.If)

# Filters whose output is at most a small multiple of their input; ``join``, ``replace`` and ``format`` are
# checked before they run (below). Left out: those that pad or repeat (center, indent, wordwrap, batch, slice),
# pretty-print or mark up (pprint, urlize, xmlattr, tojson), or are not deterministic (random).
_PLAIN_FILTERS = (
    *("abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "int", "items"),
    *("last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "reverse", "round"),
    *("select", "selectattr", "sort", "string", "striptags", "sum", "title", "trim", "truncate", "unique"),
    *("upper", "urlencode", "wordcount"),
)

# Methods templates may call on strings and mappings: none of them builds more than it is given.
_SAFE_METHODS: Mapping[type, frozenset[str]] = {
    str: frozenset(
        {
            *("capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isdigit"),
            *("islower", "isnumeric", "isspace", "isupper", "lower", "lstrip", "partition", "removeprefix"),
            *("removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip", "split", "splitlines"),
            *("startswith", "strip", "title", "upper"),
        }
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}

_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")

_deadline: ContextVar[float | None] = ContextVar("template_deadline", default=None)


class SandboxLimitError(TemplateRuntimeError):
    """A template or condition went past one of the sandbox's limits."""


class SandboxEvaluationError(TemplateRuntimeError):
    """A template or condition raised an error of its own (a type error, a division by zero, an overflow)."""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _check_time() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.thread_time() > deadline:
        raise SandboxLimitError(f"evaluation took longer than {MAX_EVAL_SECONDS:g}s")


def _weight(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """Characters and items in ``value``, nested containers counted in full (each time they are referred to), up
    to a little over ``limit``: ``[big] * 1000`` is as heavy as the thousand copies it turns into when joined."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list | tuple | dict):
        return 1
    total = len(value)
    for item in value.values() if isinstance(value, dict) else value:
        if total > limit:
            break
        if isinstance(item, str | list | tuple | dict):
            total += _weight(item, limit - total)
    return total


def checked(value: Any) -> Any:
    """``value`` unchanged if it is within the size limits; SandboxLimitError otherwise."""
    weight = _weight(value)
    if weight > MAX_VALUE_CHARS:
        raise SandboxLimitError(f"a value of more than {MAX_VALUE_CHARS} characters and items is over the limit")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SandboxLimitError(f"an integer of more than {MAX_INT_BITS} bits is over the limit")
    return value


def _check_printf(fmt: str) -> None:
    for width, precision in _PRINTF_FIELD.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise SandboxLimitError(f"format fields may be at most {MAX_FORMAT_WIDTH} wide")


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        bits = max(abs(base).bit_length() - 1, 0) * exponent
        if bits > MAX_INT_BITS:
            raise SandboxLimitError(f"a power of about {bits} bits is larger than the limit of {MAX_INT_BITS}")
    return operator.pow(base, exponent)


def _multiply(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        repeated = isinstance(sequence, str | list | tuple) and isinstance(count, int)
        if repeated and _weight(sequence) * max(count, 0) > MAX_VALUE_CHARS:
            raise SandboxLimitError(f"repeating a value {count} times would exceed {MAX_VALUE_CHARS} items")
    return operator.mul(left, right)


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_printf(left)
    return operator.mod(left, right)


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SandboxLimitError(f"range of {len(numbers)} items is larger than the limit of {MAX_RANGE}")
    return numbers


def _join(value: Any, d: str = "") -> str:
    items = list(value)
    size = len(str(d)) * max(len(items) - 1, 0) + _weight(items)
    if size > MAX_VALUE_CHARS:
        raise SandboxLimitError(f"joining would build {size} characters, over the limit of {MAX_VALUE_CHARS}")
    items = [str(item) for item in items]
    size = len(str(d)) * max(len(items) - 1, 0) + sum(len(item) for item in items)
    if size > MAX_VALUE_CHARS:
        raise SandboxLimitError(f"joining would build {size} characters, over the limit of {MAX_VALUE_CHARS}")
    return str(d).join(items)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    hits = text.count(old) if count is None else min(count, text.count(old))
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_VALUE_CHARS:
        raise SandboxLimitError(f"replacing would build more than {MAX_VALUE_CHARS} characters")
    return text.replace(old, new, -1 if count is None else count)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    formatted: str = FILTERS["format"](value, *args, **kwargs)
    return formatted


def _guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the clock before it runs and the size of what it returns."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        return checked(function(*args, **kwargs))

    # Jinja passes the context or environment to filters marked so; the mark must survive the wrapping.
    if hasattr(function, "jinja_pass_arg"):
        guarded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox with the limits of this module; undefined names are errors, not blanks."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "//", "/", "-"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.globals.clear()
        self.globals["range"] = _bounded_range
        self.filters = {name: _guarded(FILTERS[name]) for name in _PLAIN_FILTERS}
        self.filters.update({"join": _guarded(_join), "replace": _guarded(_replace), "format": _guarded(_format)})
        self.binop_table.update({"*": _multiply, "**": _power, "%": _modulo})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        return checked(self.binop_table[operator](left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_time()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_time()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_time()
        if not isinstance(__obj, Undefined) and __obj is not _bounded_range and not _safe_method(__obj):
            name = getattr(__obj, "__name__", type(__obj).__name__)
            raise SecurityError(f"{name}() cannot be called in a playbook template or condition")
        return checked(__context.call(__obj, *args, **kwargs))

    def compile_checked(self, source: str) -> Template:
        """The template of ``source``; TemplateSyntaxError for text that is too long, holds statements other
        than ``{% if %}``, or does not compile."""
        _check_source(source)
        try:
            tree = self.parse(source)
            for statement in tree.find_all(nodes.Stmt):
                if not isinstance(statement, _ALLOWED_STATEMENTS):
                    kind = type(statement).__name__.lower()
                    raise TemplateSyntaxError(
                        f"'{kind}' is not allowed in playbook templates: use {{{{ expressions }}}} and {{% if %}}",
                        statement.lineno,
                    )
            return self.from_string(tree)
        except TemplateError:
            raise
        except (RecursionError, MemoryError, SyntaxError, ValueError) as exc:
            # Deeply nested expressions overflow Jinja's parser or Python's compiler.
            raise TemplateSyntaxError(f"too deeply nested or too complex ({type(exc).__name__})", 1) from exc

    def compile_condition(self, source: str) -> Callable[..., Any]:
        """An expression as a callable; TemplateSyntaxError as for ``compile_checked``."""
        _check_source(source)
        try:
            return self.compile_expression(source, undefined_to_none=False)
        except TemplateError:
            raise
        except (RecursionError, MemoryError, SyntaxError, ValueError) as exc:
            raise TemplateSyntaxError(f"too deeply nested or too complex ({type(exc).__name__})", 1) from exc


def _check_source(source: str) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSyntaxError(f"{len(source)} characters is longer than the limit of {MAX_SOURCE_CHARS}", 1)


def _safe_method(obj: Any) -> bool:
    if not isinstance(obj, types.BuiltinMethodType):
        return False
    owner = type(getattr(obj, "__self__", None))
    return obj.__name__ in _SAFE_METHODS.get(owner, frozenset())


@contextmanager
def bounded_evaluation() -> Iterator[None]:
    """Run template code under the time limit, with every error it raises turned into a TemplateError.

    Nested uses share the outermost deadline.
    """
    token = _deadline.set(time.thread_time() + MAX_EVAL_SECONDS) if _deadline.get() is None else None
    try:
        yield
    except TemplateError:
        raise
    except Exception as exc:
        # Anything raised from inside a template is the template's fault (the sandbox stops it from touching
        # anything else), so it becomes that template's error instead of escaping into the engine.
        raise SandboxEvaluationError(f"{type(exc).__name__}: {_short(str(exc))}") from exc
    finally:
        if token is not None:
            _deadline.reset(token)


SANDBOX = BoundedSandbox()
