"""API tokens with roles: viewer (read), responder (ack, resolve, approve), admin (everything, e.g. reloads).

The operator configures tokens as ``name:role:sha256-of-secret``; only the hash is ever stored, and the name is
what the audit trail records. Secrets are long random strings (``aiops token new``), so one SHA-256 is enough,
and digests are compared in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.domain.errors import ConfigurationError


class Role(enum.IntEnum):
    VIEWER = 1
    RESPONDER = 2
    ADMIN = 3


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: Role
    digest: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "aiops_" + secrets.token_urlsafe(32)


class TokenBook:
    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self._tokens = tuple(tokens)

    @classmethod
    def parse(cls, spec: str) -> TokenBook:
        """``name:role:sha256,...`` as configured in AIOPS_API_TOKENS."""
        tokens = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, rest = item.partition(":")
            role, _, digest = rest.partition(":")
            if not name or role.upper() not in Role.__members__ or len(digest) != 64:
                raise ConfigurationError(
                    f"AIOPS_API_TOKENS: {item!r} is not name:role:sha256 with role viewer, responder or admin"
                )
            tokens.append(ApiToken(name, Role[role.upper()], digest.lower()))
        return cls(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def __iter__(self) -> Iterator[ApiToken]:
        return iter(self._tokens)

    def with_token(self, token: ApiToken) -> TokenBook:
        return TokenBook((*self._tokens, token))

    def authenticate(self, secret: str) -> ApiToken | None:
        digest = hash_secret(secret)
        found = None
        for token in self._tokens:
            # Look at every token so that timing does not tell how many there are or which one matched.
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found


_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def requirement(book: TokenBook, role: Role) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[ApiToken]]:
    """A FastAPI dependency: the caller's token, which must have at least ``role`` (401/403 otherwise)."""

    async def caller(credentials: Credentials) -> ApiToken:
        token = book.authenticate(credentials.credentials) if credentials is not None else None
        if token is None:
            raise HTTPException(401, "a valid API token is required", headers={"WWW-Authenticate": "Bearer"})
        if token.role < role:
            raise HTTPException(
                403, f"this needs the {role.name.lower()} role; {token.name} is a {token.role.name.lower()}"
            )
        return token

    return caller
