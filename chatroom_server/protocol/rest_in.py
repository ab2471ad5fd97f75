"""REST requests: what a client may send, validated (the message names the field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import BadRequest
from ..names import refused_character
from .common import (
    _CONTROL,
    EMAIL_MAX,
    PASSWORD_MAX_BYTES,
    PASSWORD_MIN_BYTES,
    ROOM_NAME_MAX,
    USER_NAME_MAX,
    M,
)

# --------------------------------------------------------------------------- REST in


MAX_ID = 2**63 - 1


def query_int(raw: str | None, name: str, low: int, high: int) -> int | None:
    """An integer query parameter in [low, high] (ASCII digits only), None when absent."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: must be an integer from {low} to {high}.")
    return int(raw)


def _strict_int(value: Any) -> Any:
    # Accept 5 and "5" (seed clients send either), never True or 5.0.
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    if not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


# Bounds before the validator, so that the JSON schema says minimum/maximum.
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_strict_int)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _check_email(value: str) -> str:
    if len(value) > EMAIL_MAX:
        raise ValueError(f"must be at most {EMAIL_MAX} characters")
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("must be a valid email address") from None
    return checked.normalized.lower()


def _check_password(value: str) -> str:
    size = len(value.encode("utf-8"))
    if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
        raise ValueError(f"must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes long (UTF-8)")
    return value


def check_new_password(value: str) -> str:
    """The signup rule for a new password (the CLI's reset-password applies it too)."""
    return _check_password(value)


def _check_password_length(value: str) -> str:
    """An existing password: any length bcrypt can take (no minimum: never a hint)."""
    if len(value.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise ValueError(f"must be at most {PASSWORD_MAX_BYTES} bytes long (UTF-8)")
    return value


def _check_name(value: str, limit: int) -> str:
    value = value.strip()
    if not 1 <= len(value) <= limit:
        raise ValueError(f"must be 1 to {limit} characters long after trimming")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


# The `json_schema_extra` below only document a constraint in the OpenAPI document;
# the validators are what enforce it (bytes, not characters, for passwords).


def _doc(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


class SignupRequest(_Request):
    user_name: str = _doc(minLength=1, maxLength=USER_NAME_MAX)
    email: str = _doc(format="email", maxLength=EMAIL_MAX)
    password: str = _doc(minLength=PASSWORD_MIN_BYTES, maxLength=PASSWORD_MAX_BYTES)

    @field_validator("user_name")
    @classmethod
    def _user_name(cls, value: str) -> str:
        value = _check_name(value, USER_NAME_MAX)
        refused = refused_character(value)
        if refused:
            raise ValueError(
                f"must not contain control, format, line or paragraph separator, private-use"
                f" or unassigned characters ({refused})"
            )
        return value

    _email = field_validator("email")(_check_email)
    _password = field_validator("password")(_check_password)


class LoginRequest(_Request):
    email: str = _doc(maxLength=EMAIL_MAX)
    password: str = _doc(maxLength=PASSWORD_MAX_BYTES)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        # No format check: an unknown address gets the same answer as a wrong password.
        if len(value) > EMAIL_MAX:
            raise ValueError(f"must be at most {EMAIL_MAX} characters")
        return value.strip().lower()

    _password = field_validator("password")(_check_password_length)


Visibility = Literal["public", "private"]
Role = Literal["moderator", "member"]
REASON_MAX = 200
BAN_SECONDS_MAX = 365 * 24 * 3600  # 31536000, the bound of the i13 design


class CreateRoomRequest(_Request):
    name: str = _doc(minLength=1, maxLength=ROOM_NAME_MAX)
    visibility: Visibility = Field(
        default="public", description="`private`: only its members see it."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, ROOM_NAME_MAX)


class UpdateRoomRequest(_Request):
    name: str | None = Field(
        default=None, json_schema_extra={"minLength": 1, "maxLength": ROOM_NAME_MAX}
    )
    visibility: Visibility | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, ROOM_NAME_MAX)


class UserRefRequest(_Request):
    """A user, by ID or by user name (exactly one of them)."""

    userId: Id | None = None
    userName: str | None = Field(
        default=None, json_schema_extra={"minLength": 1, "maxLength": USER_NAME_MAX}
    )

    @field_validator("userName")
    @classmethod
    def _user_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, USER_NAME_MAX)

    @model_validator(mode="after")
    def _one(self) -> UserRefRequest:
        if (self.userId is None) == (self.userName is None):
            raise ValueError("give either userId or userName")
        return self


class RoleRequest(_Request):
    role: Role


class MuteRequest(_Request):
    userId: Id
    seconds: int | None = Field(
        default=None, ge=1, le=BAN_SECONDS_MAX, description="Omitted: until lifted."
    )


class BanRequest(MuteRequest):
    reason: str | None = Field(default=None, json_schema_extra={"maxLength": REASON_MAX})

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _check_name(value, REASON_MAX)


class PasswordChangeRequest(_Request):
    oldPassword: str = _doc(maxLength=PASSWORD_MAX_BYTES)
    newPassword: str = _doc(minLength=PASSWORD_MIN_BYTES, maxLength=PASSWORD_MAX_BYTES)

    _old = field_validator("oldPassword")(_check_password_length)
    _new = field_validator("newPassword")(_check_password)


class RoomMessagesRequest(_Request):
    roomId: Id


class ReadRequest(_Request):
    lastReadId: Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_strict_int)] = Field(
        description="The last message read. The marker goes to the room's message with the"
        " largest ID at most this one (the newest, for a larger ID) and never moves back."
    )


def parse_body(model: type[M], raw: bytes | None) -> M:
    """Decode a JSON body into `model`, or raise BadRequest naming the field."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "missing":
        return f"{field}: this field is required."
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}."
