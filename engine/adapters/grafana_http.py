"""What the engine's clients of Grafana's HTTP API share: the checked server address, the request headers, and
Grafana's own sentence from an error answer."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from engine.domain.errors import ConfigurationError

USER_AGENT = "aiops-engine"


@dataclass(frozen=True)
class GrafanaAddress:
    # Ends in "/": relative API paths ("api/annotations") then land under a sub-path Grafana may be served from.
    base_url: str
    # scheme://host[:port] for messages: they name the server, never credentials written into the URL.
    where: str

    @classmethod
    def parse(cls, url: str) -> GrafanaAddress:
        """ConfigurationError unless ``url`` is http(s)://host[:port][/path]."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
            raise ConfigurationError(f"the Grafana URL must be http(s)://host[:port][/path], not {url!r}")
        return cls(url.rstrip("/") + "/", f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")


def grafana_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json"}


def grafana_reason(reply: httpx.Response) -> str:
    """Grafana's own sentence from an error answer (``{"message": ...}``), or where a redirect points."""
    if reply.is_redirect:
        # Usually a URL missing the sub-path Grafana is served from, which then sends clients to its login page.
        return f"redirected to {reply.headers.get('Location', '?')}; check the Grafana URL"
    try:
        body = reply.json()
    except ValueError:
        return reply.text.strip()[:300]
    return str(body.get("message", ""))[:300] if isinstance(body, dict) else ""
