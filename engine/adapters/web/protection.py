"""What keeps other pages from using the on-call page: no framing, no caching, no cross-origin form posts.

SameSite=Strict cookies are not enough on their own: "site" ignores the port and the subdomain, so any other
page on the same host (a Grafana, a notebook) could post the page's forms with the cookie. Every state-changing
post must therefore come from this very origin (``from_this_origin``) and carry the session's form token.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_PREFIX = "/ui"
# The page has no scripts, no inline styles and nothing from elsewhere; it may not be framed by anyone.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def from_this_origin(request: Request) -> bool:
    """Whether the browser says this request comes from a page of this very origin (scheme, host and port).

    ``Sec-Fetch-Site`` is set by the browser and cannot be changed by a page; browsers without it send
    ``Origin`` on every form post. A request with neither is refused: every browser the page supports sends one.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and origin == f"{request.url.scheme}://{request.url.netloc}"


class PageHeaders:
    """ASGI middleware: every response under ``/ui`` (errors included) carries ``PAGE_HEADERS``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PAGE_PREFIX and not path.startswith(PAGE_PREFIX + "/"):
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(PAGE_HEADERS)
            await send(message)

        await self._app(scope, receive, send_with_headers)
