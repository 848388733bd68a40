"""`aiops dashboards push`: upload the Grafana dashboards through Grafana's HTTP API.

The token is read from an environment variable named on the command line, never from an argument, so it stays
out of shell histories and process listings. A refused upload ends with one line on stderr and exit status 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from engine.adapters.grafana_dashboards import GrafanaDashboards, load_dashboards
from engine.app.cli_common import EXIT_CONFIGURATION, operator_errors
from engine.domain.errors import ConfigurationError, EngineError

EXIT_REFUSED = 1

dashboards_cli = typer.Typer(help="Upload the Grafana dashboards.", no_args_is_help=True)


@dashboards_cli.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", help="Grafana's base URL, e.g. https://grafana.example.com")],
    directory: Annotated[Path, typer.Argument(help="directory of dashboard JSON files")] = Path("dashboards"),
    token_env: Annotated[
        str, typer.Option("--token-env", help="environment variable holding a Grafana service account token")
    ] = "GRAFANA_TOKEN",
    folder_uid: Annotated[
        str | None, typer.Option("--folder-uid", help="uid of an existing Grafana folder (default: General)")
    ] = None,
    message: Annotated[str, typer.Option(help="version history note")] = "uploaded by aiops dashboards push",
    timeout_s: Annotated[float, typer.Option("--timeout", help="seconds to wait for each answer", min=0.1)] = 10.0,
) -> None:
    """Create or replace every dashboard of DIRECTORY in Grafana (matched by uid, so pushing again updates)."""
    with operator_errors():
        token = os.environ.get(token_env, "")
        if not token:
            raise ConfigurationError(f"environment variable {token_env} is not set or empty (a Grafana token)")
        dashboards = load_dashboards(directory)
        grafana = GrafanaDashboards(url, token, timeout_s=timeout_s)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]dashboards"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console,
        # Gone when done: what stays is one line per dashboard on stdout, or the one error line.
        transient=True,
    )
    with grafana, progress:
        task = progress.add_task("", total=len(dashboards))
        for dashboard in dashboards:
            progress.update(task, description=dashboard.title)
            try:
                uploaded = grafana.push(dashboard, folder_uid=folder_uid, message=message)
            except ConfigurationError as exc:
                progress.stop()
                typer.echo(f"aiops: error: {exc}", err=True)
                raise typer.Exit(EXIT_CONFIGURATION) from None
            except EngineError as exc:
                progress.stop()
                typer.echo(f"aiops: error: {exc}", err=True)
                raise typer.Exit(EXIT_REFUSED) from None
            progress.advance(task)
            typer.echo(f"{dashboard.uid}: version {uploaded.version} at {uploaded.url}")
    typer.echo(f"{len(dashboards)} dashboards pushed to {url}")
