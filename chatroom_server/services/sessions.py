"""Sessions: started at signup and login, named by the token's `sid`, ended at will.

Every REST call and websocket upgrade asks whether its token's session (and user)
still stands. Asking the database each time would add a round trip to every
request, so the answer is cached in this process and forgotten when a
revocation is heard through the broker (see realtime/revocations.py). While the
broker is unhealthy (Redis away) revocations from other hosts may be missed, so
cached answers are trusted for `recheck` seconds only: that is the staleness
bound, documented in README and SECURITY.md.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

from tortoise import timezone

from ..db.errors import storage_errors
from ..db.models import SessionRow, UserRow
from ..domain import Identity, Revocation, SessionInfo
from ..errors import NotFound, Unauthorized
from ..security import INVALID_TOKEN, MAX_SESSION_ID

log = logging.getLogger("chatroom_server.sessions")

Announce = Callable[[Revocation], Awaitable[None]]
T = TypeVar("T")

MAX_USER_AGENT = 256
# The sessions list shows at most this many (the most recently seen).
MAX_LISTED = 100
# Rows of sessions that ended or expired this long ago are deleted, a user's own
# at each of their logins: the table stays the size of its active sessions.
KEEP_ENDED = timedelta(days=30)
# Entries kept per table: past this the least recently used are forgotten.
MAX_CACHED = 100_000


def new_session_id() -> str:
    return secrets.token_hex(16)  # 32 characters, 128 bits


def _ended() -> Unauthorized:
    return Unauthorized(INVALID_TOKEN)


class SessionService:
    def __init__(
        self,
        token_ttl: int,
        *,
        cache_seconds: float,
        recheck: float,
        healthy: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_ttl = token_ttl
        self.cache_seconds = cache_seconds
        self.recheck = recheck
        self._healthy = healthy
        self._clock = clock
        self._announce: Announce | None = None
        # sid -> (valid, user ID, checked at); user ID -> (usable, tokens valid after, checked at)
        self._sessions: OrderedDict[str, tuple[bool, int, float]] = OrderedDict()
        self._users: OrderedDict[int, tuple[bool, float, float]] = OrderedDict()
        # Bumped by every forget() and clear(): an answer read from the database
        # while one happened may predate it, and is read again, not cached.
        self._generation = 0

    def announce_with(self, announce: Announce) -> None:
        """Where ended sessions are announced (the relay's control room); set once at start."""
        self._announce = announce

    # ------------------------------------------------------------------ the gate

    def _fresh(self, checked: float) -> bool:
        limit = self.cache_seconds if self._healthy() else min(self.cache_seconds, self.recheck)
        return self._clock() - checked < limit

    async def check(self, identity: Identity) -> None:
        """Raise Unauthorized unless the token's session and its user still stand."""
        sid = identity.session_id
        if sid is None:
            usable, valid_after = await self._user(identity.user_id)
            if not usable or identity.issued_at < valid_after:
                raise _ended()
            return
        cached = self._sessions.get(sid)
        if cached is not None and self._fresh(cached[2]):
            valid, user_id, _ = cached
        else:
            valid, user_id = await self._load_session(sid)
        if not valid or user_id != identity.user_id:
            raise _ended()

    async def _user(self, user_id: int) -> tuple[bool, float]:
        cached = self._users.get(user_id)
        if cached is not None and self._fresh(cached[2]):
            return cached[0], cached[1]
        for _ in range(3):
            generation = self._generation
            usable, valid_after = await self._read_user(user_id)
            if generation == self._generation:
                _remember(self._users, user_id, (usable, valid_after, self._clock()))
                break
        return usable, valid_after

    async def _read_user(self, user_id: int) -> tuple[bool, float]:
        with storage_errors():
            rows = await UserRow.filter(id=user_id).values(
                "deleted_at", "deactivated_at", "tokens_valid_after"
            )
        usable, valid_after = False, 0.0
        if rows:
            row = rows[0]
            usable = row["deleted_at"] is None and row["deactivated_at"] is None
            after = row["tokens_valid_after"]
            valid_after = after.timestamp() if after is not None else 0.0
        return usable, valid_after

    async def _load_session(self, sid: str) -> tuple[bool, int]:
        for _ in range(3):
            generation = self._generation
            valid, user_id = await self._read_session(sid)
            if generation == self._generation:
                _remember(self._sessions, sid, (valid, user_id, self._clock()))
                break
        if valid:
            await self._seen(sid)
        return valid, user_id

    async def _seen(self, sid: str) -> None:
        # At most once per cache period per process, never per request; best effort:
        # a busy database must not turn a valid request into a failure.
        try:
            await SessionRow.filter(id=sid).update(last_seen_at=timezone.now())
        except Exception:
            log.debug("could not note a session as seen", exc_info=True)

    async def _read_session(self, sid: str) -> tuple[bool, int]:
        with storage_errors():
            rows = await SessionRow.filter(id=sid).values(
                "user_id", "ended_at", "user__deleted_at", "user__deactivated_at"
            )
            valid, user_id = False, 0
            if rows:
                row = rows[0]
                user_id = row["user_id"]
                valid = (
                    row["ended_at"] is None
                    and row["user__deleted_at"] is None
                    and row["user__deactivated_at"] is None
                )
        return valid, user_id

    def forget(self, revocation: Revocation) -> None:
        """A revocation was heard: drop what the cache believed about it."""
        self._generation += 1
        if revocation.legacy_only:
            self._users.pop(revocation.user_id, None)
            return
        if revocation.session_id is not None:
            _remember(
                self._sessions, revocation.session_id, (False, revocation.user_id, self._clock())
            )
            return
        self._users.pop(revocation.user_id, None)
        for sid in [s for s, (_, uid, _) in self._sessions.items() if uid == revocation.user_id]:
            if sid != revocation.keep:
                del self._sessions[sid]

    def clear(self) -> None:
        """Forget everything (revocations may have been missed while the broker was away)."""
        self._generation += 1
        self._sessions.clear()
        self._users.clear()

    async def ended_among(self, identities: Iterable[Identity]) -> set[Identity]:
        """Which of these identities no longer stand, in two queries whatever their number."""
        wanted = set(identities)
        sids = {i.session_id for i in wanted if i.session_id is not None}
        user_ids = {i.user_id for i in wanted}
        live: set[str] = set()
        users: dict[int, dict[str, Any]] = {}
        with storage_errors():
            for chunk in _chunks(sorted(sids)):
                found = await SessionRow.filter(id__in=chunk, ended_at=None).values_list(
                    "id", flat=True
                )
                live.update(str(sid) for sid in found)
            for ids in _chunks(sorted(user_ids)):
                for row in await UserRow.filter(id__in=ids).values(
                    "id", "deleted_at", "deactivated_at", "tokens_valid_after"
                ):
                    users[row["id"]] = row
        ended = set()
        for identity in wanted:
            user = users.get(identity.user_id)
            if user is None or user["deleted_at"] is not None or user["deactivated_at"] is not None:
                ended.add(identity)
            elif identity.session_id is not None:
                if identity.session_id not in live:
                    ended.add(identity)
            elif (after := user["tokens_valid_after"]) is not None and (
                identity.issued_at < after.timestamp()
            ):
                ended.add(identity)
        return ended

    # ------------------------------------------------------------------ lifecycle of a session

    async def start(self, user_id: int, user_agent: str | None) -> str:
        sid = new_session_id()
        now = timezone.now()
        with storage_errors():
            await SessionRow.filter(user_id=user_id, expires_at__lt=now - KEEP_ENDED).delete()
            await SessionRow.create(
                id=sid,
                user_id=user_id,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=self.token_ttl),
                user_agent=clean_user_agent(user_agent),
            )
        _remember(self._sessions, sid, (True, user_id, self._clock()))
        return sid

    async def refresh(self, identity: Identity, user_agent: str | None) -> str:
        """The session to put in a fresh token: the caller's, or a new one for an old token."""
        if identity.session_id is None:
            return await self.start(identity.user_id, user_agent)
        now = timezone.now()
        with storage_errors():
            updated = await SessionRow.filter(
                id=identity.session_id, user_id=identity.user_id, ended_at=None
            ).update(last_seen_at=now, expires_at=now + timedelta(seconds=self.token_ttl))
        if not updated:
            raise _ended()
        return identity.session_id

    async def list(self, user_id: int) -> list[SessionInfo]:
        with storage_errors():
            rows = (
                await SessionRow.filter(
                    user_id=user_id, ended_at=None, expires_at__gt=timezone.now()
                )
                .order_by("-last_seen_at", "id")
                .limit(MAX_LISTED)
            )
        return [SessionInfo(r.id, r.created_at, r.last_seen_at, r.user_agent) for r in rows]

    async def end(self, user_id: int, session_id: str, own: bool = False) -> None:
        """End one session of the user: `own` for logout (a session already ended is then
        the caller's token failing, 401), else DELETE /sessions/<id> (404)."""
        missing = _ended() if own else NotFound("No such session.")
        if not 0 < len(session_id) <= MAX_SESSION_ID:
            raise missing
        with storage_errors():
            updated = await SessionRow.filter(id=session_id, user_id=user_id, ended_at=None).update(
                ended_at=timezone.now()
            )
        if not updated:
            raise missing
        log.info("session ended: user=%s", user_id)
        await self._revoke(Revocation(user_id, session_id))

    async def end_all(self, user_id: int, keep: str | None = None) -> None:
        """End every session of the user but `keep`, and their tokens without a session."""
        now = timezone.now()
        try:
            with storage_errors():
                await (
                    SessionRow.filter(user_id=user_id, ended_at=None)
                    .exclude(id=keep or "")
                    .update(ended_at=now)
                )
                await UserRow.filter(id=user_id).update(tokens_valid_after=now)
        finally:
            # Whatever of it was done is announced, even if the second step failed.
            await self._revoke(Revocation(user_id, None, keep))
        log.info("sessions ended: user=%s kept=%s", user_id, keep is not None)

    async def end_legacy(self, user_id: int) -> None:
        """End the user's tokens without a session (a logout with one); sessions stay."""
        try:
            with storage_errors():
                await UserRow.filter(id=user_id).update(tokens_valid_after=timezone.now())
        finally:
            await self._revoke(Revocation(user_id, legacy_only=True))

    async def end_user(self, user_id: int) -> None:
        """The account was deactivated: everything of it ends (its rows stay)."""
        await self._revoke(Revocation(user_id))

    async def _revoke(self, revocation: Revocation) -> None:
        self.forget(revocation)
        if self._announce is not None:
            await self._announce(revocation)


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def clean_user_agent(value: str | None) -> str | None:
    """Printable characters only (no NUL, no lone surrogates), at most MAX_USER_AGENT."""
    if not value:
        return None
    printable = "".join(ch for ch in value if ch.isprintable())
    return printable[:MAX_USER_AGENT] or None


def _remember(table: OrderedDict, key: object, value: tuple) -> None:  # type: ignore[type-arg]
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_CACHED:
        table.popitem(last=False)
