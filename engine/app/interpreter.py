"""How the engine's long-running commands (`aiops run`, `serve`, `watch`) set up the Python interpreter they run in."""

from __future__ import annotations

import gc
import sys

# How long a thread may hold the interpreter while another waits for it (Python's default: 5 ms).
THREAD_SWITCH_S = 0.0005


def freeze_startup_objects() -> None:
    """Put everything alive now (imported modules, the wired engine, its schemas and compiled statements) out of
    the garbage collector's way: it lives for the whole run, yet each full collection walked all of it again, which
    under load cost the webhook and the API several per cent of their requests per second."""
    gc.collect()
    gc.freeze()


def shorten_thread_switches() -> None:
    """Let the event loop's thread take the interpreter back from a busy worker thread within ``THREAD_SWITCH_S``.

    Work too long for the event loop runs in threads (decoding a remote_write request of a hundred thousand
    samples takes a second or more), but each time the loop's thread comes back from a socket call it waits for the
    worker to give up the interpreter: by default up to 5 ms, and one health check makes a dozen such calls, so a
    large request stalled /healthz for about a tenth of a second. The shorter switch costs the worker a few per cent
    only while both threads want to run."""
    sys.setswitchinterval(THREAD_SWITCH_S)
