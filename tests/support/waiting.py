"""Waiting in end-to-end tests for something that real processes bring about in their own time."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

# Long enough for a process to start, be scraped and act on what it was sent, on a loaded CI machine.
WAIT_S = 45.0


def eventually(
    check: Callable[[], Any],
    what: str,
    *,
    timeout_s: float = WAIT_S,
    processes: Iterable[subprocess.Popen[bytes]] = (),
) -> Any:
    """The first truthy result of ``check``, asked every 0.25 s. A server that does not answer yet counts as not
    yet. AssertionError after ``timeout_s``, or at once if one of ``processes`` has exited meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args!r} exited while waiting for {what}"
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
