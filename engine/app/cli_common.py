"""What every `aiops` command shares: operator errors as one line and exit status 2, and logging set-up."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer

from engine.app.settings import Settings
from engine.domain.errors import ConfigurationError, TemporaryError

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
