"""The abuse limits of SPEC section 11: who may connect, send, log in, sign up, create.

The counters live behind `pubsub.limits.Limits` (shared through Redis when it
is configured); this module knows what is counted under which key, the limits,
and the one sentence each refusal says. Every refusal is a RateLimited (HTTP 429
with Retry-After) naming the limit; the message rate answers with error frames.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from ..errors import RateLimited
from ..periodic import Periodic
from ..pubsub.limits import Limits
from ..settings import Settings

log = logging.getLogger("chatroom_server.limits")

# A refused connection cannot know when a slot frees up: ask clients to wait a little.
CONNECTION_RETRY_AFTER = 5


@dataclass(frozen=True)
class LimitSettings:
    user_connections: int
    ip_connections: int
    user_rate: float
    user_burst: int
    login_ip_rate: int  # a minute
    login_failures: int
    login_window: float
    signup_ip_rate: int  # an hour
    room_create_rate: int  # an hour
    slot_ttl: float  # a dead host's connections stop counting by then

    @classmethod
    def of(cls, s: Settings) -> LimitSettings:
        return cls(
            s.user_connections, s.ip_connections, s.user_rate, s.user_burst, s.login_ip_rate,
            s.login_failures, s.login_window, s.signup_ip_rate, s.room_create_rate,
            slot_ttl=s.presence_ttl,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Slot:
    """A websocket's place under its user's and its address's connection limits."""

    user_key: str
    ip_key: str
    member: str  # unique per connection on every host


def _refused(message: str, wait: float) -> RateLimited:
    return RateLimited(message, retry_after=math.ceil(wait))


class AbuseLimits:
    def __init__(self, limits: Limits, settings: LimitSettings) -> None:
        self.limits = limits
        self.settings = settings
        self._host = uuid.uuid4().hex[:12]
        self._serial = itertools.count(1)
        self._held: dict[Slot, None] = {}  # open sockets' slots, refreshed
        self._releasing: set[asyncio.Future[None]] = set()
        # Like presence: a host that dies stops refreshing, its slots lapse within slot_ttl.
        self._refresher = Periodic(
            "connection-slot-refresh", settings.slot_ttl / 3, self._refresh, log
        )

    def start(self) -> None:
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=5)
        await self.limits.close()

    # ---------------------------------------------------------------- websockets

    async def open_socket(self, user_id: int, ip: str) -> Slot:
        """Take a connection slot for the user and the address, or raise RateLimited.

        The slot expires after slot_ttl unless `hold` is called (the upgrade worked).
        """
        s = self.settings
        slot = Slot(f"user:{user_id}", f"ip:{ip}", f"{self._host}:{next(self._serial)}")
        if not await self.limits.acquire(
            slot.user_key, slot.member, s.user_connections, s.slot_ttl
        ):
            raise _refused(
                f"Too many open connections for this user (limit {s.user_connections}).",
                CONNECTION_RETRY_AFTER,
            )
        if not await self.limits.acquire(slot.ip_key, slot.member, s.ip_connections, s.slot_ttl):
            await self.limits.release(slot.user_key, slot.member)
            raise _refused(
                f"Too many open connections from this address (limit {s.ip_connections}).",
                CONNECTION_RETRY_AFTER,
            )
        return slot

    def hold(self, slot: Slot) -> None:
        """The socket is open: keep its slot alive until `close_socket`."""
        self._held[slot] = None

    def close_socket(self, slot: Slot) -> None:
        """Give the slot back (the socket closed, or its upgrade failed).

        Not awaited: a handler being cancelled (its client went away) must not skip
        it, so the release runs to its end in a task of its own.
        """
        self._held.pop(slot, None)
        task = asyncio.ensure_future(self._release(slot))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, slot: Slot) -> None:
        try:
            await self.limits.release(slot.user_key, slot.member)
            await self.limits.release(slot.ip_key, slot.member)
        except Exception:  # it lapses by itself within slot_ttl
            log.warning("could not release a connection slot", exc_info=True)

    async def _refresh(self) -> None:
        if self._held:
            items = [(key, s.member) for s in self._held for key in (s.user_key, s.ip_key)]
            await self.limits.refresh(items, self.settings.slot_ttl)

    def message_allowed(self, user_id: int) -> bool | Awaitable[bool]:
        """One message of the user, across all their sockets (on every host, with Redis).

        In-process counters answer at once, a plain bool; shared ones need a round
        trip, an awaitable.
        """
        s = self.settings
        key = f"msg:{user_id}"
        wait = self.limits.take_now(key, s.user_rate, s.user_burst)
        if wait is not None:
            return wait == 0
        return self._allow_shared(key)

    async def _allow_shared(self, key: str) -> bool:
        s = self.settings
        return await self.limits.take(key, s.user_rate, s.user_burst) == 0

    # ---------------------------------------------------------------- accounts and rooms

    async def check_login(self, email: str, ip: str) -> None:
        """Before the password is checked: the address's rate, then the pair's lockout."""
        s = self.settings
        wait = await self.limits.take(f"login-ip:{ip}", s.login_ip_rate / 60, s.login_ip_rate)
        if wait:
            raise _refused(
                f"Too many login attempts from this address (limit {s.login_ip_rate} a minute);"
                " try again later.",
                wait,
            )
        wait = await self.limits.locked(self._pair(email, ip), s.login_failures)
        if wait:
            raise _refused(
                "Too many failed logins for this account from this address (limit"
                f" {s.login_failures} in {s.login_window:g} s); try again later.",
                wait,
            )

    @staticmethod
    def _pair(email: str, ip: str) -> str:
        return f"login:{ip}|{email}"  # an address has no "|"; an email comes last

    async def login_failed(self, email: str, ip: str) -> None:
        await self.limits.failed(self._pair(email, ip), self.settings.login_window)

    async def login_succeeded(self, email: str, ip: str) -> None:
        await self.limits.clear(self._pair(email, ip))

    async def check_signup(self, ip: str) -> None:
        n = self.settings.signup_ip_rate
        wait = await self.limits.take(f"signup-ip:{ip}", n / 3600, n)
        if wait:
            raise _refused(f"Too many signups from this address (limit {n} an hour).", wait)

    async def check_room_create(self, user_id: int) -> None:
        n = self.settings.room_create_rate
        wait = await self.limits.take(f"room-create:{user_id}", n / 3600, n)
        if wait:
            raise _refused(f"Too many rooms created by this user (limit {n} an hour).", wait)
