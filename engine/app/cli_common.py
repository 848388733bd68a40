"""What every `aiops` command shares: operator errors as one line and exit status 2, logging set-up, and opening
an engine together with its API server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import typer

from engine.adapters.api.auth import TokenBook
from engine.adapters.http_server import HttpServer, bind
from engine.app.bootstrap import EngineBase
from engine.app.heap import freeze_startup_objects
from engine.app.settings import Settings
from engine.domain.errors import ConfigurationError, TemporaryError

E = TypeVar("E", bound=EngineBase)

EXIT_CONFIGURATION = 2
EXIT_UNAVAILABLE = 3


@contextlib.contextmanager
def operator_errors() -> Iterator[None]:
    try:
        yield
    except ConfigurationError as exc:
        typer.echo(f"aiops: error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except TemporaryError as exc:
        # A server the command needs did not answer: the operator can retry, nothing is wrong with the input.
        typer.echo(f"aiops: error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    return engine, server
