"""Keyset pagination cursors of the incident lists (the API's and the console's): the last
row's (created_at, id), opaque to the caller."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from fastapi.exceptions import RequestValidationError


def encode_cursor(created_at: datetime, incident_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{incident_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "invalid cursor", "type": "value_error"}]
        ) from exc
