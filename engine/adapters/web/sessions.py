"""Sessions of the on-call page: who is logged in, until when, and the form token their forms must carry.

The cookie holds a signed value (itsdangerous), never the API token: the token's name, a keyed fingerprint of
the token (so that a token removed from AIOPS_API_TOKENS, or given a new secret, ends its sessions at once), the
form token that protects the page's forms from cross-site requests, and the time the session ends. Anyone can
read these fields; only a holder of the signing key can make or change them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.adapters.api.auth import ApiToken, TokenBook
from engine.domain.clock import Clock

# A signed session is about 200 characters; a longer cookie is not one of ours and is not even decoded.
_MAX_COOKIE = 1024
# A working day: long enough for a shift, short enough that a forgotten browser does not stay logged in for days.
DEFAULT_LIFETIME_S = 8 * 3600.0


@dataclass(frozen=True)
class PageSession:
    caller: ApiToken
    csrf: str
    expires_at: float


class _Claims(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=200)
    fingerprint: str = Field(max_length=64)
    csrf: str = Field(max_length=64)
    expires_at: float


class PageSessions:
    """Issues and reads the page's session cookies, signed with ``key`` and lasting ``lifetime_s`` of ``clock``."""

    def __init__(self, *, key: str | bytes, lifetime_s: float, clock: Clock) -> None:
        self._key = key.encode() if isinstance(key, str) else key
        self._serializer = URLSafeSerializer(self._key, salt="aiops-engine.ui-session")
        self.lifetime_s = lifetime_s
        self._clock = clock

    @classmethod
    def with_random_key(cls, *, lifetime_s: float, clock: Clock) -> PageSessions:
        """Sessions that end when the process does: the key exists only in its memory."""
        return cls(key=secrets.token_bytes(32), lifetime_s=lifetime_s, clock=clock)

    def issue(self, caller: ApiToken) -> tuple[str, PageSession]:
        """A new session for ``caller``: the cookie value and what it stands for."""
        session = PageSession(caller, secrets.token_urlsafe(24), self._clock.now() + self.lifetime_s)
        claims = _Claims(
            name=caller.name, fingerprint=self._fingerprint(caller), csrf=session.csrf, expires_at=session.expires_at
        )
        return self._serializer.dumps(claims.model_dump()), session

    def read(self, cookie: str, tokens: TokenBook) -> PageSession | None:
        """The session ``cookie`` stands for; None if it is forged, expired, or its token is no longer valid."""
        if len(cookie) > _MAX_COOKIE:
            return None
        try:
            claims = _Claims.model_validate(self._serializer.loads(cookie))
        except (BadData, ValidationError):
            return None
        if claims.expires_at <= self._clock.now():
            return None
        for token in tokens:
            if token.name == claims.name and hmac.compare_digest(self._fingerprint(token), claims.fingerprint):
                return PageSession(token, claims.csrf, claims.expires_at)
        return None

    def _fingerprint(self, token: ApiToken) -> str:
        # Keyed, so the cookie does not carry the digest the server checks secrets against.
        return hmac.new(self._key, token.digest.encode(), hashlib.sha256).hexdigest()[:32]
