"""Accounts: sign up and log in."""

from __future__ import annotations

import logging

from tortoise.exceptions import IntegrityError

from ..db.errors import storage_errors
from ..db.models import UserRow
from ..domain import User
from ..errors import Conflict, RateLimited, Unauthorized
from ..security import DummyHash, check_password, hash_password
from .throttle import LoginThrottle

log = logging.getLogger("chatroom_server.users")

INVALID_LOGIN = "invalid login credentials"


def to_user(row: UserRow) -> User:
    return User(row.id, row.user_name, row.email, row.created_at, row.updated_at, row.deleted_at)


class UserService:
    def __init__(self, bcrypt_rounds: int, throttle: LoginThrottle) -> None:
        self.bcrypt_rounds = bcrypt_rounds
        self.throttle = throttle
        self._dummy = DummyHash(bcrypt_rounds)

    async def signup(self, user_name: str, email: str, password: str) -> User:
        """Create an account; `email` arrives validated and lower-cased."""
        hashed = await hash_password(password, self.bcrypt_rounds)
        with storage_errors():
            try:
                row = await UserRow.create(user_name=user_name, email=email, password_hash=hashed)
            except IntegrityError:
                raise Conflict("An account with this email already exists.") from None
        log.info("user signed up: id=%s", row.id)
        return to_user(row)

    async def login(self, email: str, password: str) -> User:
        """Check the credentials; one answer whether the email exists or not."""
        wait = self.throttle.retry_after(email)
        if wait:
            raise RateLimited(
                "Too many failed logins for this account; try again later.", retry_after=wait
            )
        with storage_errors():
            row = await UserRow.get_or_none(email=email, deleted_at=None)
        # Check a dummy hash for unknown emails so both answers take about as long.
        hashed = row.password_hash if row is not None else await self._dummy.get()
        valid = await check_password(password, hashed)
        if row is None or not valid:
            self.throttle.failed(email)
            raise Unauthorized(INVALID_LOGIN)
        self.throttle.succeeded(email)
        return to_user(row)
