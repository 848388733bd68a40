"""How the store outlives its database going away, and how it tells of faults it cannot outlive.

A call the pipeline depends on (storing incident changes, saving and loading checkpoints, opening the store) that
fails because the database cannot be reached right now (a refused, reset or timed-out connection, a server that is
starting up or shutting down, a full disk) is tried again after a growing pause until it succeeds: the pipeline
waits where it is instead of crashing, and goes on once the database is back. An outage is logged when it begins
and when it ends, not once per attempt, however many calls wait on it. A database still unreachable after the
outage limit ends the wait with ``StoreUnavailableError``; a fault that waiting cannot fix (authentication refused,
no such database or table, no permission) is raised at once as ``StoreRefusedError``. Any other error (a conflict,
a bug) passes unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential, wait_random

from engine.domain.errors import ConfigurationError, EngineError

log = logging.getLogger(__name__)

DEFAULT_OUTAGE_LIMIT_S = 300.0
# The longest pause between two attempts: a database that comes back is used again within this long.
MAX_PAUSE_S = 5.0
# Failures further apart than this are two outages, not one: the calls that saw the first gave up waiting (they
# were cancelled) without seeing its end. Longer than a pause plus the slowest failing attempt (a timed-out
# statement, then a timed-out connection).
OUTAGE_GAP_S = 60.0


class StoreUnavailableError(EngineError):
    """The database stayed unreachable past the outage limit: the process cannot go on without it."""


class StoreRefusedError(ConfigurationError):
    """The database answers but refuses the engine (credentials, a missing database or table, permissions): only
    the operator can fix it."""


class Fault(enum.Enum):
    TRANSIENT = "transient"
    FATAL = "fatal"


# SQLSTATE classes and codes (PostgreSQL's appendix A). Connection exceptions, insufficient resources (disk full,
# too many connections), transaction rollbacks (serialization failures, deadlocks), operator intervention
# (shutting down, starting up, a statement cancelled by its timeout) and a read-only transaction (a server that a
# failover has not promoted yet) pass; the rest are about who the engine is or what the database holds.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "25006")
_FATAL_CODES = frozenset({"3D000", "3F000", "42501", "42P01", "42703", "57P04"})
_FATAL_CLASSES = ("28",)
# SQLite reports through messages, not codes.
_TRANSIENT_SQLITE = ("database or disk is full", "disk i/o error", "database is locked", "unable to open database")
_FATAL_SQLITE = ("no such table", "no such column", "readonly database", "file is not a database")
_FATAL_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def fault_of(exc: BaseException) -> Fault | None:
    """Whether ``exc`` says the database is away for now (TRANSIENT), refuses the engine for good (FATAL), or
    neither (None: not a fault of reaching the database)."""
    for cause in _chain(exc):
        if isinstance(cause, OSError):  # refused, reset, timed out (TimeoutError is one), no space left, DNS
            return Fault.FATAL if cause.errno in _FATAL_ERRNOS else Fault.TRANSIENT
        if isinstance(cause, PoolTimeoutError):  # every pooled connection busy: a backlog, not a broken database
            return Fault.TRANSIENT
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            if sqlstate in _FATAL_CODES or sqlstate.startswith(_FATAL_CLASSES):
                return Fault.FATAL
            if sqlstate.startswith(_TRANSIENT_CLASSES):
                return Fault.TRANSIENT
        if type(cause).__module__ == "sqlite3":
            message = str(cause).lower()
            if any(text in message for text in _FATAL_SQLITE):
                return Fault.FATAL
            if any(text in message for text in _TRANSIENT_SQLITE):
                return Fault.TRANSIENT
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault.TRANSIENT
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver's error it wraps, and their causes, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        # Causes only, not the context: an error raised while handling an unrelated one is not caused by it.
        pending += [orig if isinstance(orig, BaseException) else None, current.__cause__]


def reason(exc: BaseException) -> str:
    """What went wrong, in one line, from the innermost error that says something (drivers' messages name the host
    and the user, never the password)."""
    said = [cause for cause in _chain(exc) if str(cause).strip()]
    innermost = said[-1] if said else exc
    text = str(innermost).strip().splitlines()[0] if str(innermost).strip() else ""
    return f"{type(innermost).__name__}: {text}" if text else type(innermost).__name__


def shown_url(url: str) -> str:
    """A database URL fit for messages and logs: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable, so its password cannot be told apart: show only what kind of URL it is.
        return url.split(":", 1)[0] + ":..." if ":" in url else "..."


T = TypeVar("T")
P = ParamSpec("P")


class Patience:
    """Waits out outages of one database: shared by every call of a store, so that one outage is one story in the
    log and one limit, however many calls are waiting on it. ``clock`` and ``sleep`` are for tests on fake time."""

    def __init__(
        self,
        limit_s: float = DEFAULT_OUTAGE_LIMIT_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._sleep = sleep
        self._outage_since: float | None = None
        self._failed_at = 0.0

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """``operation()``, tried again while it fails for a transient reason, until the outage (counted from the
        first failure of any call) has lasted ``limit_s``."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: fault_of(exc) is Fault.TRANSIENT),
            wait=wait_exponential(multiplier=0.1, max=MAX_PAUSE_S) + wait_random(0, 0.1),
            stop=self._past_limit,
            after=functools.partial(self._failed, what),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    result = await operation()
        except Exception as exc:
            fault = fault_of(exc)
            if fault is Fault.FATAL:
                raise StoreRefusedError(f"the database refused the engine while {what}: {reason(exc)}") from exc
            if fault is Fault.TRANSIENT:
                raise StoreUnavailableError(
                    f"the database has been unreachable for {self._outage_s():.0f}s, past the outage limit of "
                    f"{self.limit_s:g}s ({what}: {reason(exc)})"
                ) from exc
            raise
        if self._outage_since is not None:
            lasted = self._outage_s()
            log.warning("the database is reachable again after %.1fs", lasted, extra={"outage": "ended"})
            self._outage_since = None
        return result

    def _failed(self, what: str, state: RetryCallState) -> None:
        now = self._clock()
        ongoing = self._outage_since is not None and now - self._failed_at < OUTAGE_GAP_S
        self._failed_at = now
        if ongoing:
            return
        self._outage_since = now
        failure = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "the database is unreachable (%s): %s waits and retries for up to %gs",
            reason(failure) if failure is not None else "no answer",
            what,
            self.limit_s,
            extra={"outage": "began"},
        )

    def _past_limit(self, _: RetryCallState) -> bool:
        return self._outage_s() >= self.limit_s

    def _outage_s(self) -> float:
        return 0.0 if self._outage_since is None else self._clock() - self._outage_since


@contextlib.contextmanager
def skipped_during_outage(what: str) -> Iterator[None]:
    """For a chore that runs again on its next round anyway: a database that cannot be reached for now skips this
    round with a warning instead of ending the engine; every other error passes."""
    try:
        yield
    except Exception as exc:
        if fault_of(exc) is not Fault.TRANSIENT:
            raise
        log.warning(
            "%s skipped a round: the database is unreachable (%s)", what, reason(exc), extra={"outage": "skipped"}
        )


class Patient(Protocol):
    @property
    def patience(self) -> Patience: ...


S = TypeVar("S", bound=Patient)
_Method = Callable[Concatenate[S, P], Coroutine[Any, Any, T]]


def patient(
    what: str,
) -> Callable[[_Method[S, P, T]], _Method[S, P, T]]:
    """A store method that waits out outages with its store's ``patience``. The method must be safe to run again
    after a failure whose outcome is unknown (a commit whose answer was lost): an idempotent write or a read."""

    def decorate(method: _Method[S, P, T]) -> _Method[S, P, T]:
        @functools.wraps(method)
        async def waiting(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return await self.patience.call(functools.partial(method, self, *args, **kwargs), what)

        return waiting

    return decorate
