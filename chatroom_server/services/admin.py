"""Site administration from the CLI: list users, (de)activate them, admins, passwords.

The CLI is another process, so running servers learn of what it changed in two
ways (SPEC 10: within 2 s on every host). With Redis, the CLI announces the
revocation in the broker's control room exactly as a logout-all does. Whatever
the broker, every change that ends tokens also writes a new value to one row,
the accounts mark (server_secrets, ACCOUNTS_MARK), in the same transaction;
every server reads that row about every second (realtime/revocations.py) and,
when it changed, forgets its cached session answers and checks its open
sockets against the database. One primary-key read a second is the whole cost
while nothing changes, and a server with no Redis (which cannot hear the CLI)
still closes a deactivated user's sockets in time.

Taking a site admin's right away (`set-admin --off`) moves the mark too, and the
CLI announces it as a room event ("admin_off"): the servers re-check that user's
open sockets' room access, and close those to rooms they may no longer see.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ..db.errors import storage_errors
from ..db.models import ServerSecret, SessionRow, UserRow
from ..domain import Revocation
from ..errors import BadRequest, Conflict, NotFound
from ..names import name_key
from ..security import hash_password

log = logging.getLogger("chatroom_server.admin")

ACCOUNTS_MARK = "accounts_mark"
MAX_ID = 2**63 - 1
# Users listed per query: the list streams, whatever the size of the table.
PAGE = 1000

_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the administrator sees it (never the password hash)."""

    id: int
    user_name: str
    email: str
    is_admin: bool
    deactivated_at: datetime | None


_FIELDS = ("id", "user_name", "email", "is_admin", "deactivated_at")


def _account(row: dict[str, object]) -> Account:
    return Account(
        int(row["id"]),  # type: ignore[call-overload]
        str(row["user_name"]),
        str(row["email"]),
        bool(row["is_admin"]),
        row["deactivated_at"],  # type: ignore[arg-type]
    )


async def list_accounts(after: int = 0, limit: int = PAGE) -> list[Account]:
    """Up to `limit` users with an ID above `after`, by ID (deleted ones left out)."""
    with storage_errors():
        rows = (
            await UserRow.filter(id__gt=after, deleted_at=None)
            .order_by("id")
            .limit(limit)
            .values(*_FIELDS)
        )
    return [_account(row) for row in rows]


async def find_account(ref: str) -> Account:
    """The user a CLI argument names: a number is an ID; else the exact user name,
    else the one user whose name looks the same (names.name_key), as signup compares."""
    with storage_errors():
        if _NUMBER.fullmatch(ref):
            user_id = int(ref)
            if not 1 <= user_id <= MAX_ID:
                raise BadRequest(f"Invalid user ID {ref}: IDs are 1 to {MAX_ID}.")
            rows = await UserRow.filter(id=user_id, deleted_at=None).values(*_FIELDS)
            if not rows:
                raise NotFound(f"User {user_id} does not exist.")
            return _account(rows[0])
        rows = await UserRow.filter(user_name=ref, deleted_at=None).values(*_FIELDS)
        if not rows:
            rows = await _look_alikes(ref)
    if not rows:
        raise NotFound(f'User "{ref}" does not exist.')
    if len(rows) > 1:
        ids = ", ".join(str(r["id"]) for r in rows)
        raise Conflict(f'Several users are called "{ref}" (IDs {ids}); give the ID instead.')
    return _account(rows[0])


async def _look_alikes(ref: str) -> list[dict[str, object]]:
    key = name_key(ref)
    rows = await UserRow.filter(name_key=key, deleted_at=None).values(*_FIELDS)
    # Look-alikes that existed before names were compared (0003) have no key: few,
    # so compare them here rather than miss one and act on the wrong user.
    legacy = await UserRow.filter(name_key=None, deleted_at=None).values(*_FIELDS)
    return [*rows, *(r for r in legacy if name_key(str(r["user_name"])) == key)]


async def deactivate(ref: str) -> tuple[Account, Revocation | None]:
    """Deactivate the user and end every session of it; None when it already was."""
    account = await find_account(ref)
    if account.deactivated_at is not None:
        return account, None
    await _ensure_mark()
    now = timezone.now()
    with storage_errors():
        async with in_transaction():
            await UserRow.filter(id=account.id).update(deactivated_at=now, tokens_valid_after=now)
            await _end_sessions(account.id, now)
    log.info("user deactivated: id=%s", account.id)
    return replace(account, deactivated_at=now), Revocation(account.id)


async def reactivate(ref: str) -> tuple[Account, bool]:
    """Let the user log in again (the sessions ended at deactivation stay ended)."""
    account = await find_account(ref)
    if account.deactivated_at is None:
        return account, False
    with storage_errors():
        await UserRow.filter(id=account.id).update(deactivated_at=None)
    log.info("user reactivated: id=%s", account.id)
    return replace(account, deactivated_at=None), True


async def set_admin(ref: str, on: bool) -> tuple[Account, bool]:
    """Make the user a site admin (or not); whether that changed anything.

    Taking the right away moves the accounts mark in the same transaction: the
    user's open sockets to rooms they may no longer see are closed (SPEC 10).
    """
    account = await find_account(ref)
    if account.is_admin == on:
        return account, False
    if not on:
        await _ensure_mark()
    with storage_errors():
        async with in_transaction():
            await UserRow.filter(id=account.id).update(is_admin=on)
            if not on:
                await _move_mark()
    log.info("site admin %s: id=%s", "granted" if on else "revoked", account.id)
    return replace(account, is_admin=on), True


async def reset_password(ref: str, password: str, bcrypt_rounds: int) -> tuple[Account, Revocation]:
    """Set a new password (already checked against the signup rule) and end every session."""
    account = await find_account(ref)
    hashed = await hash_password(password, bcrypt_rounds)
    await _ensure_mark()
    now = timezone.now()
    with storage_errors():
        async with in_transaction():
            await UserRow.filter(id=account.id).update(password_hash=hashed, tokens_valid_after=now)
            await _end_sessions(account.id, now)
    log.info("password reset: id=%s", account.id)
    return account, Revocation(account.id)


async def _end_sessions(user_id: int, now: datetime) -> None:
    """Inside the caller's transaction: end the sessions, then move the accounts mark,
    so a server that sees the new mark also sees what it marks."""
    await SessionRow.filter(user_id=user_id, ended_at=None).update(ended_at=now)
    await _move_mark()


async def _move_mark() -> None:
    """Inside the caller's transaction, after what it marks."""
    await ServerSecret.filter(name=ACCOUNTS_MARK).update(value=secrets.token_hex(16))


async def _ensure_mark() -> None:
    """Create the accounts mark's row once, before any transaction that moves it (two
    CLIs racing to insert it would otherwise abort one of those transactions)."""
    with storage_errors():
        if await ServerSecret.exists(name=ACCOUNTS_MARK):
            return
        try:
            await ServerSecret.create(name=ACCOUNTS_MARK, value=secrets.token_hex(16))
        except IntegrityError:
            pass  # another process created it


async def accounts_mark() -> str | None:
    """The accounts mark: it changes whenever the CLI ends a user's tokens or takes
    a site admin's right away."""
    with storage_errors():
        row = await ServerSecret.get_or_none(name=ACCOUNTS_MARK)
    return None if row is None else row.value
