"""Passwords (bcrypt) and tokens (JWT, HS256 only). No web framework here.

bcrypt costs tens of milliseconds of CPU, so the async helpers run it in a thread
and the event loop keeps serving pings and other sockets meanwhile.
"""

from __future__ import annotations

import asyncio
import time

import bcrypt
import jwt

from .domain import Identity, User
from .errors import Unauthorized

ALGORITHM = "HS256"
INVALID_TOKEN = "The token is missing, invalid or expired."
MAX_SESSION_ID = 32


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def _check(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


async def hash_password(password: str, rounds: int) -> str:
    return await asyncio.to_thread(_hash, password, rounds)


async def check_password(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(_check, password, hashed)


class DummyHash:
    """A hash to check against when the email is unknown, so both cases take as long."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._value: str | None = None

    async def get(self) -> str:
        if self._value is None:
            self._value = await hash_password("not-a-real-password", self.rounds)
        return self._value


class TokenService:
    def __init__(self, secret: str, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"TokenService(secret=***, ttl={self.ttl})"

    def issue(self, user: User, session_id: str | None = None, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {
            "sub": str(user.id),
            "UserID": user.id,
            "UserName": user.user_name,
            "Email": user.email,
            "iat": issued,
            "exp": issued + self.ttl,
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str | None) -> Identity:
        """Return who the token names, or raise Unauthorized (never says why, to the caller)."""
        if not token or len(token) > 4096:
            raise Unauthorized(INVALID_TOKEN)
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
            user_id = int(claims["sub"])
            user_name = claims.get("UserName")
            email = claims.get("Email")
            session_id = claims.get("sid")
            if not isinstance(user_name, str) or not isinstance(email, str):
                raise ValueError("claims")
            if session_id is not None and not (
                isinstance(session_id, str) and 0 < len(session_id) <= MAX_SESSION_ID
            ):
                raise ValueError("sid")
            return Identity(
                user_id, user_name, email, int(claims["exp"]), session_id, int(claims["iat"])
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise Unauthorized(INVALID_TOKEN) from None
