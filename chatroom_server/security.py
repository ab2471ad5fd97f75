"""Passwords (bcrypt) and tokens (JWT, HS256 only, the key named by `kid`). No web
framework here.

bcrypt costs tens of milliseconds of CPU, so the async helpers run it in a thread
and the event loop keeps serving pings and other sockets meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import jwt

from .domain import Identity, User
from .errors import Unauthorized

ALGORITHM = "HS256"
INVALID_TOKEN = "The token is missing, invalid or expired."
MAX_SESSION_ID = 32
MAX_KEY_ID = 32
# The key of tokens without a kid: CHATROOM_JWT_SECRET, or the secret generated once
# and stored in server_secrets (services/secrets.py).
LEGACY_KID = "legacy"


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


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HS256 key: `kid` names it in the tokens it signs (LEGACY_KID: tokens
    without a kid, signed before keys had IDs)."""

    kid: str
    secret: str = field(repr=False)
    # Unix seconds from which tokens it signed are refused; None: no end set.
    retires_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.retires_at is None or now < self.retires_at


class KeyRing:
    """The keys a process signs and verifies with.

    `keys` oldest first; the newest one without an end signs (the legacy key when
    there is none: the server then signs as it did before keys had IDs, without
    a kid). A key that is not in the ring, or whose end has passed, verifies
    nothing.
    """

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys = {key.kid: key for key in keys}
        if not self._keys:
            raise ValueError("a key ring needs a key to sign with")
        signers = [k for k in self._keys.values() if k.retires_at is None and k.kid != LEGACY_KID]
        # No keyed key without an end: the legacy key, as before the first rotation
        # (or, were every key retiring, the newest: nothing better is left).
        fallback = self._keys.get(LEGACY_KID) or list(self._keys.values())[-1]
        self.current = signers[-1] if signers else fallback

    @classmethod
    def legacy(cls, secret: str) -> KeyRing:
        return cls([SigningKey(LEGACY_KID, secret)])

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.kid!r}, kids={sorted(self._keys)!r})"

    def get(self, kid: str | None) -> SigningKey | None:
        return self._keys.get(LEGACY_KID if kid is None else kid)

    def accepts(self, kid: str | None, now: float) -> bool:
        """Whether a token signed with `kid` (None: no kid) still stands."""
        key = self.get(kid)
        return key is not None and key.usable(now)

    def ends(self) -> list[float]:
        """When keys of the ring stop verifying (unix seconds), soonest first."""
        return sorted(k.retires_at for k in self._keys.values() if k.retires_at is not None)


class TokenService:
    """Issues and verifies tokens with the current key ring (replaced by `use` when a
    rotation is picked up: realtime/keys.py)."""

    def __init__(self, secret: str | KeyRing, ttl: int) -> None:
        self.ring = secret if isinstance(secret, KeyRing) else KeyRing.legacy(secret)
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"TokenService(ring={self.ring!r}, ttl={self.ttl})"

    def use(self, ring: KeyRing) -> None:
        self.ring = ring

    def accepts(self, identity: Identity, now: float | None = None) -> bool:
        """Whether the key that signed this (verified) identity's token still verifies."""
        return self.ring.accepts(identity.key_id, time.time() if now is None else now)

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
        key = self.ring.current
        # The legacy key signs as before keys had IDs: no kid (verifiers that only
        # know CHATROOM_JWT_SECRET keep working until the first rotation).
        headers = None if key.kid == LEGACY_KID else {"kid": key.kid}
        return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers=headers)

    def verify(self, token: str | None, now: float | None = None) -> Identity:
        """Return who the token names, or raise Unauthorized (never says why, to the caller)."""
        if not token or len(token) > 4096:
            raise Unauthorized(INVALID_TOKEN)
        try:
            claims, key = self._check(token)
            if not key.usable(time.time() if now is None else now):
                raise ValueError("key retired")
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
                user_id,
                user_name,
                email,
                int(claims["exp"]),
                session_id,
                int(claims["iat"]),
                None if key.kid == LEGACY_KID else key.kid,
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise Unauthorized(INVALID_TOKEN) from None

    def names_unknown_key(self, token: str) -> bool:
        """Whether the token's header names a key ID this service does not hold (a key
        added by a rotation that this process has not read yet, or a forged one)."""
        try:
            kid = _kid(jwt.get_unverified_header(token))
        except (jwt.PyJWTError, ValueError):
            return False
        return kid is not None and self.ring.get(kid) is None

    def _check(self, token: str) -> tuple[dict[str, Any], SigningKey]:
        """The claims of a token signed by the key its header names, and that key.

        Most tokens are the current key's: tried first, that costs one parse, as
        before keys had IDs. Otherwise the header's kid picks the key.
        """
        current = self.ring.current
        try:
            found = jwt.decode_complete(
                token, current.secret, algorithms=[ALGORITHM], options=_NEED
            )
            if self.ring.get(_kid(found["header"])) is current:
                return found["payload"], current
        except jwt.InvalidSignatureError:
            pass
        key = self.ring.get(_kid(jwt.get_unverified_header(token)))
        if key is None:
            raise ValueError("unknown key")
        found = jwt.decode_complete(token, key.secret, algorithms=[ALGORITHM], options=_NEED)
        return found["payload"], key


_NEED: Any = {"require": ["exp", "iat", "sub"]}


def _kid(header: dict[str, Any]) -> str | None:
    kid = header.get("kid")
    if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= MAX_KEY_ID):
        raise ValueError("kid")
    return kid
