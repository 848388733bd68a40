"""Serves an ASGI app with uvicorn inside the engine's own event loop and task group.

The listening socket is bound before uvicorn starts, so a port in use is reported as one clear error, and
uvicorn's own signal handling is turned off because the engine decides how to shut down.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from engine.domain.errors import ConfigurationError


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The engine owns SIGINT/SIGTERM; uvicorn must not re-raise them after it stops.
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or ConfigurationError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and with
    # it on, every keep-alive response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = _EmbeddedServer(config)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    async def serve(self) -> None:
        """Serve until ``stop`` is called."""
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._server.should_exit = True
