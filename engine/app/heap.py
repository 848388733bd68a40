"""What the engine's long-running commands do with the objects built at start-up."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Put everything alive now (imported modules, the wired engine, its schemas and compiled statements) out of
    the garbage collector's way: it lives for the whole run, yet each full collection walked all of it again, which
    under load cost the webhook and the API several per cent of their requests per second."""
    gc.collect()
    gc.freeze()
