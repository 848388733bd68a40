"""Opaque keyset cursors for incident pages: the (opened_at, id) of a page's last incident, URL-safe encoded."""

from __future__ import annotations

import base64
import binascii

from engine.domain.events import Incident


class BadCursorError(ValueError):
    """A cursor this API did not make."""


def encode_cursor(incident: Incident) -> str:
    return cursor_for(incident.opened_at, incident.id)


def cursor_for(opened_at: float, incident_id: str) -> str:
    raw = f"{opened_at!r}|{incident_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        opened_at, incident_id = raw.split("|", 1)
        return float(opened_at), incident_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursorError("cursor is not one this API returned") from exc
