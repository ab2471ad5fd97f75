"""Accounts: sign up and log in."""

from __future__ import annotations

import logging

from tortoise.exceptions import IntegrityError

from ..db.errors import storage_errors
from ..db.models import UserRow
from ..domain import User
from ..errors import Conflict, Forbidden, Unauthorized
from ..names import name_key
from ..security import DummyHash, check_password, hash_password
from .limits import AbuseLimits

log = logging.getLogger("chatroom_server.users")

INVALID_LOGIN = "invalid login credentials"


def to_user(row: UserRow) -> User:
    return User(row.id, row.user_name, row.email, row.created_at, row.updated_at, row.deleted_at)


async def _conflict(user_name: str, key: str, email: str) -> Conflict:
    if await UserRow.exists(email=email):
        return Conflict("An account with this email already exists.")
    if await UserRow.exists(name_key=key):
        return Conflict(f'user_name: "{user_name}" is taken, or looks the same as a name that is.')
    return Conflict("An account with this email or user name already exists.")


class UserService:
    def __init__(self, bcrypt_rounds: int, limits: AbuseLimits | None = None) -> None:
        self.bcrypt_rounds = bcrypt_rounds
        self.limits = limits
        self._dummy = DummyHash(bcrypt_rounds)

    async def signup(self, user_name: str, email: str, password: str) -> User:
        """Create an account; `email` arrives validated and lower-cased."""
        key = name_key(user_name)
        hashed = await hash_password(password, self.bcrypt_rounds)
        with storage_errors():
            try:
                row = await UserRow.create(
                    user_name=user_name, name_key=key, email=email, password_hash=hashed
                )
            except IntegrityError:
                # The unique indexes decide (two signups racing for one name end in
                # one 409 here, never a 500); then say which one refused it.
                raise await _conflict(user_name, key, email) from None
        log.info("user signed up: id=%s", row.id)
        return to_user(row)

    async def login(self, email: str, password: str, client_ip: str = "") -> User:
        """Check the credentials; one answer whether the email exists or not.

        Failures lock out an (email, client IP) pair, never the email everywhere: a
        stranger's wrong guesses do not lock the owner out at their own address.
        """
        if self.limits is not None:
            await self.limits.check_login(email, client_ip)
        with storage_errors():
            row = await UserRow.get_or_none(email=email, deleted_at=None, deactivated_at=None)
        # Check a dummy hash for unknown emails so both answers take about as long.
        hashed = row.password_hash if row is not None else await self._dummy.get()
        valid = await check_password(password, hashed)
        if row is None or not valid:
            if self.limits is not None:
                await self.limits.login_failed(email, client_ip)
            raise Unauthorized(INVALID_LOGIN)
        if self.limits is not None:
            await self.limits.login_succeeded(email, client_ip)
        return to_user(row)

    async def get(self, user_id: int) -> User:
        """The account of a token that passed the session check, or Unauthorized."""
        with storage_errors():
            row = await UserRow.get_or_none(id=user_id, deleted_at=None, deactivated_at=None)
        if row is None:
            raise Unauthorized("The token is missing, invalid or expired.")
        return to_user(row)

    async def change_password(self, user_id: int, old: str, new: str, client_ip: str = "") -> None:
        """Set a new password if `old` is the current one (the caller ends other sessions).

        Wrong guesses of the current password count as failed logins: a stolen token
        is no way around the login limits.
        """
        with storage_errors():
            row = await UserRow.get_or_none(id=user_id, deleted_at=None, deactivated_at=None)
        if row is None:
            raise Unauthorized("The token is missing, invalid or expired.")
        if self.limits is not None:
            await self.limits.check_login(row.email, client_ip)
        if not await check_password(old, row.password_hash):
            if self.limits is not None:
                await self.limits.login_failed(row.email, client_ip)
            raise Forbidden("oldPassword: this is not the current password.")
        hashed = await hash_password(new, self.bcrypt_rounds)
        with storage_errors():
            await UserRow.filter(id=user_id).update(password_hash=hashed)
        log.info("password changed: id=%s", user_id)
