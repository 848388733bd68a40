"""What every `aiops` command shares: faults the operator must deal with as one line on stderr and a distinct exit
status (never a traceback), logging set-up, and opening an engine together with its API server.

Exit statuses: 0 done; 1 a bug (with its traceback); 2 something the operator must fix (settings, files, a port in
use, a database that refuses the engine's credentials or has a newer schema); 3 a server the engine needs could not
be reached (the store stayed unreachable past AIOPS_STORE_OUTAGE_LIMIT_S): starting again later can work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import typer
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import SQLAlchemyError

from engine.adapters.api.auth import TokenBook
from engine.adapters.http_server import HttpServer, bind
from engine.adapters.store.resilience import Fault, StoreUnavailableError, fault_of, reason
from engine.app.bootstrap import EngineBase
from engine.app.interpreter import freeze_startup_objects, shorten_thread_switches
from engine.app.log_repeats import RepeatFilter
from engine.app.settings import Settings
from engine.domain.errors import ConfigurationError, TemporaryError

E = TypeVar("E", bound=EngineBase)

EXIT_CONFIGURATION = 2
EXIT_UNAVAILABLE = 3


@contextlib.contextmanager
def operator_errors() -> Iterator[None]:
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        verdict = operator_fault(exc)
        if verdict is None:
            raise
        status, message = verdict
        typer.echo(f"aiops: error: {message}", err=True)
        raise typer.Exit(status) from None


def operator_fault(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line for a fault the operator must deal with; None for a bug, whose traceback
    is worth showing. The failure of concurrent tasks (an exception group) is one when every failure in it is."""
    if isinstance(exc, BaseExceptionGroup):
        verdicts = [operator_fault(inner) for inner in exc.exceptions]
        found = [verdict for verdict in verdicts if verdict is not None]
        return found[0] if found and len(found) == len(verdicts) else None
    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIGURATION, str(exc)
    if isinstance(exc, TemporaryError | StoreUnavailableError):
        # A server the command needs did not answer: the operator can retry, nothing is wrong with the input.
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, SQLAlchemyError):
        # A database fault on a path that does not wait out outages: the process ends, and a new one waits for it.
        fault = fault_of(exc)
        if fault is Fault.TRANSIENT:
            return EXIT_UNAVAILABLE, f"the database cannot be reached: {reason(exc)}"
        if fault is Fault.FATAL:
            return EXIT_CONFIGURATION, f"the database refused the engine: {reason(exc)}"
    if isinstance(exc, ConnectionError | TimeoutError | KafkaConnectionError):
        # KafkaConnectionError: `aiops serve` started while its brokers cannot be reached.
        return EXIT_UNAVAILABLE, f"a server the engine needs did not answer: {reason(exc)}"
    return None


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        # On the handler, so that it sees the records of every logger (client libraries' included).
        if not any(isinstance(existing, RepeatFilter) for existing in handler.filters):
            handler.addFilter(RepeatFilter())


async def open_with_api(settings: Settings, open_engine: Callable[[], Awaitable[E]]) -> tuple[E, HttpServer]:
    """An engine and its API server: the port is taken first, so a port in use fails before anything opens."""
    sock = bind(settings.http_host, settings.http_port)
    try:
        engine = await open_engine()
    except BaseException:
        sock.close()
        raise
    server = HttpServer(engine.api(TokenBook.parse(settings.api_tokens)), sock)
    freeze_startup_objects()
    shorten_thread_switches()
    return engine, server
