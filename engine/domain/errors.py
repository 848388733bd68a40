"""The engine's error vocabulary; third-party errors are wrapped into these at the edge."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigurationError(EngineError):
    """Settings, scenario or playbook files that cannot be used; the message is meant for the operator."""


class NotFoundError(EngineError):
    """A requested object (incident, action) does not exist."""


class ConflictError(EngineError):
    """The object is not in a state that allows the request (e.g. approving a step nobody waits on)."""


class TemporaryError(EngineError):
    """A failure worth retrying after ``delay`` seconds (timeouts, 409, 429, 5xx)."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(EngineError):
    """A failure that retrying cannot fix (invalid request, forbidden, no backend for an action)."""
