"""A minimal HTTP/1.1 keep-alive client for the load benchmarks.

The benchmarks run their clients on the same small machine as the server they measure. A full-featured client
(httpx) spends more CPU per request than the server under test, so what it measures becomes the client; this one
writes a request and reads the status line, headers and ``Content-Length`` body, and nothing else. It speaks only
to servers that answer with ``Content-Length`` (uvicorn does for every response these benchmarks get).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


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
