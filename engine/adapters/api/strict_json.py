"""JSON request bodies read strictly: text that is not valid Unicode, and numbers that are not finite, are refused.

Python's decoder, which FastAPI uses, accepts ``"\\ud800"`` (half of a UTF-16 pair) and ``NaN``: such a string
cannot be encoded again, so it failed the response, the store or the log line that carried it (a 500), and a
non-finite number has no place in a decision. orjson refuses both; its error is a ``json.JSONDecodeError``, which
FastAPI answers with a 422 naming the position.

A body is also bounded (``MAX_JSON_BODY_BYTES``, 413 past it, refused as it is read): the largest valid body here
(a silence with its twenty matchers) is a few KiB, and a 60 MB comment was parsed whole and echoed back in the
422, holding the event loop for about a second.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from engine.adapters.api.ingest_limits import read_body

# Over ten times the largest valid body (a silence: 20 matchers of 512 characters, each escaped \uXXXX, and its
# comment), so that no valid request comes near it.
MAX_JSON_BODY_BYTES = 1024 * 1024


class _StrictJsonRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await read_body(self, MAX_JSON_BODY_BYTES, "request body")
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is decoded by orjson (pass as ``APIRouter(route_class=...)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
