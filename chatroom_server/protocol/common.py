"""Shared by the REST and websocket formats: JSON, timestamps, IDs, error codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import (
    BaseModel,
)

M = TypeVar("M", bound=BaseModel)

SYSTEM_USER_ID = -1
FRAME_TYPE = 1
# The newest websocket protocol (`v=2` in the query: SPEC 12's events too).
PROTOCOL_VERSION = 2

# Error codes of `error` frames.
INVALID_JSON = "invalid_json"
INVALID_MESSAGE = "invalid_message"
MESSAGE_TOO_LONG = "message_too_long"
WRONG_ROOM = "wrong_room"
RATE_LIMITED = "rate_limited"
STORE_FAILED = "store_failed"
MUTED = "muted"
# ... and of protocol v2's edit and delete.
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"

# Control characters other than tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit: longer is refused, never truncated
USER_NAME_MAX = 64
ROOM_NAME_MAX = 100
EMAIL_MAX = 254
CLIENT_MESSAGE_ID_MAX = 64


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z suffix and microseconds, as the Go server wrote them."""
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # isoformat is C and zero-pads the year, so the first 26 characters are always
    # the date and time to the microsecond (strftime took 3x as long: room lists).
    return value.isoformat(timespec="microseconds")[:26] + "Z"
