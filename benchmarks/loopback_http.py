"""The loopback plumbing of the load benchmarks: a server process on a free port, and a minimal HTTP/1.1
keep-alive client.

The benchmarks run their clients on the same small machine as the server they measure. A full-featured client
(httpx) spends more CPU per request than the server under test, so what it measures becomes the client; this one
writes a request and reads the status line, headers and ``Content-Length`` body, and nothing else. It speaks only
to servers that answer with ``Content-Length`` (uvicorn does for every response these benchmarks get).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

# How long a benchmark's server process may take to answer its health check (imports included).
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(module: str, arguments: Sequence[str]) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m module --port P *arguments`` on a free port, once its ``/healthz`` answers; the process and its
    base URL. The server runs in a process of its own so that clients and server do not share one event loop."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), *arguments])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"the {module} server ({' '.join(arguments)}) did not start")


class LoopbackConnection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, host: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._host = host
        self._reader = reader
        self._writer = writer
        self._heads: dict[tuple[str, str], bytes] = {}
        self._head_headers: dict[tuple[str, str], dict[str, str] | None] = {}

    @classmethod
    async def open(cls, base_url: str) -> LoopbackConnection:
        parts = urlsplit(base_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(f"{parts.hostname}:{parts.port}", reader, writer)

    async def request(
        self, method: str, target: str, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request (``target``: path and query, already encoded); the status code and the body."""
        head = self._heads.get((method, target))
        if head is None or self._head_headers.get((method, target)) is not headers:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}"]
            lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
            head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
            # Kept for the next request to the same target: the client must stay light next to the server.
            self._heads[(method, target)] = head
            self._head_headers[(method, target)] = headers
        self._writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        await self._writer.drain()
        status = int((await self._reader.readline()).split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()
