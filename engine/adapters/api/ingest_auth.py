"""Credentials for the machine-to-machine ingest endpoints (Alertmanager webhook, Prometheus remote_write).

Both senders authenticate the way their ``http_config`` allows: a bearer token (``authorization``) or basic auth.
Only SHA-256 digests of the secrets are configured; comparisons run in constant time; every rejected request is
counted so that a misconfigured sender (or someone probing) shows up on a dashboard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from engine.adapters.telemetry import IngestMetrics
from engine.domain.errors import ConfigurationError


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IngestCredentials:
    bearer_sha256: str = ""
    basic_user: str = ""
    basic_sha256: str = ""

    @classmethod
    def parse(cls, bearer_sha256: str, basic_auth: str) -> IngestCredentials:
        """``bearer_sha256``: hex digest of the token; ``basic_auth``: ``user:sha256-of-password``."""
        user, _, password_digest = basic_auth.partition(":")
        for name, digest in (
            ("AIOPS_INGEST_BEARER_SHA256", bearer_sha256),
            ("AIOPS_INGEST_BASIC_AUTH", password_digest),
        ):
            if digest and (len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest)):
                raise ConfigurationError(f"{name}: expected a hex SHA-256 digest (64 characters)")
        if basic_auth and not (user and password_digest):
            raise ConfigurationError("AIOPS_INGEST_BASIC_AUTH: expected user:sha256-of-password")
        return cls(bearer_sha256.lower(), user, password_digest.lower())

    def __bool__(self) -> bool:
        return bool(self.bearer_sha256 or self.basic_user)

    def accepts(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.bearer_sha256:
            return hmac.compare_digest(_digest(value), self.bearer_sha256)
        if scheme.lower() == "basic" and self.basic_user:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            same_user = hmac.compare_digest(user.encode(), self.basic_user.encode())
            return hmac.compare_digest(_digest(password), self.basic_sha256) and same_user
        return False


def ingest_guard(credentials: IngestCredentials, metrics: IngestMetrics, endpoint: str) -> Callable[[Request], None]:
    """A check the ingest handlers call first: 401 (counted) unless the request carries one of the configured
    credentials. Called inline rather than as a FastAPI dependency: these endpoints take every sample and alert
    notification, and dependency resolution costs more per request than the check itself."""

    def guard(request: Request) -> None:
        if not credentials.accepts(request.headers.get("authorization", "")):
            metrics.auth_failures.labels(endpoint).inc()
            raise HTTPException(401, "a valid ingest credential is required", headers={"WWW-Authenticate": "Bearer"})

    return guard
