"""How the answers of remote systems map onto the engine's errors: what is worth retrying and what is not.

Conflicts (409), throttling (429), timeouts and server errors (5xx) are temporary: the executor retries them with
backoff. Everything else the server refused (400, 401, 403, 404, 422) is permanent: retrying cannot help, so the
step stops and a human is told.
"""

from __future__ import annotations

from typing import TypeVar

from engine.core.actions.catalogue import ActionParams
from engine.domain.errors import EngineError, PermanentError, TemporaryError

_TEMPORARY = frozenset({408, 409, 425, 429})


def is_temporary_status(status: int) -> bool:
    return status in _TEMPORARY or status >= 500


def error_for_status(status: int, what: str) -> EngineError:
    """The engine error for an HTTP ``status`` answered to ``what`` (a sentence naming the call)."""
    if is_temporary_status(status):
        return TemporaryError(f"{what}: HTTP {status} (will retry)")
    return PermanentError(f"{what}: HTTP {status}")


P = TypeVar("P", bound=ActionParams)


def expect_params(params: ActionParams, model: type[P]) -> P:
    """``params`` as the model this backend serves (the executor picks backends by action, so a mismatch is a
    wiring mistake, reported as a permanent failure rather than an assertion)."""
    if not isinstance(params, model):
        raise PermanentError(f"expected {model.__name__}, got {type(params).__name__}")
    return params
