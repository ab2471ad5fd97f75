"""Ended sessions, heard from every process: forget the cached answer, close the sockets.

A session ended anywhere (logout, logout-all, a password change, a deactivated
account) is announced in the broker's control room; every process, this one
included, forgets what its session cache believed and closes the matching local
sockets with 1008. While the broker is unhealthy announcements may be lost, so
the open sockets are checked against the database every `recheck` seconds until
it is back, and once more right after it resubscribed; announcements that could
not be sent are sent again when it is back; and every `sweep_every` seconds the
open sockets are checked anyway, for a loss nobody noticed.

The admin CLI is no server: without Redis nobody hears it. Whatever ends tokens
there also moves the accounts mark (services/admin.py), which every process
reads every `mark_every` seconds: one primary-key read; when the mark moved, the
cache is cleared and the open sockets are checked at once (a deactivated user's
sockets close within about `mark_every` seconds, with or without Redis), and so
is whatever else `on_mark` checks (the room access of sockets opened by site
admins: `set-admin --off` moves the mark too).

A signing key that retires (rotate-secret's grace ended: realtime/keys.py) ends
its tokens the same way: `close_where` closes the sockets they opened, with 1008.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from .. import protocol
from ..domain import Identity, Revocation
from .connection import CLOSE_POLICY
from .hub import Hub

log = logging.getLogger("chatroom_server.realtime")

SESSION_ENDED = "session ended"


class Gate(Protocol):
    """What the revocations need of the session service (services/sessions.py)."""

    def forget(self, revocation: Revocation) -> None: ...

    def clear(self) -> None: ...

    async def ended_among(self, identities: Iterable[Identity]) -> set[Identity]: ...


class Revocations:
    def __init__(
        self,
        hub: Hub,
        gate: Gate,
        publish: Callable[[str], Awaitable[None]],
        healthy: Callable[[], bool],
        recheck: float,
        sweep_every: float = 60.0,
        mark: Callable[[], Awaitable[str | None]] | None = None,
        mark_every: float = 1.0,
        on_mark: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.hub = hub
        self.gate = gate
        self._publish = publish
        self._healthy = healthy
        self.recheck = recheck
        # However healthy the broker looks, open sockets are checked this often: an
        # announcement lost without the broker noticing ends up here.
        self.sweep_every = sweep_every
        self._mark = mark
        self.mark_every = mark_every
        self._on_mark = on_mark
        self._unsent: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def announce(self, revocation: Revocation) -> None:
        """Tell every process (this one at once, whatever the broker does)."""
        self.apply(revocation)
        payload = protocol.bus_revocation(revocation)
        try:
            await self._publish(payload)
        except Exception:
            log.warning("could not announce an ended session to other hosts yet; retrying")
            self._unsent.append(payload)  # idempotent: sent again once the broker takes it
            del self._unsent[:-1000]

    def hear(self, payload: str) -> None:
        """Broker callback for the control room."""
        try:
            revocation = protocol.parse_revocation(payload)
        except ValueError:
            log.warning("ignoring a malformed control payload")
            return
        self.apply(revocation)

    def apply(self, revocation: Revocation) -> None:
        self.gate.forget(revocation)
        for conn in self.hub.all_connections():
            identity = conn.identity
            if revocation.ends(identity.user_id, identity.session_id):
                conn.close(CLOSE_POLICY, SESSION_ENDED)

    def close_where(self, ended: Callable[[Identity], bool], code: int, reason: str) -> int:
        """Close this process's sockets whose token `ended` says no longer stands (its
        signing key retired: realtime/keys.py); how many closed."""
        closing = [conn for conn in self.hub.all_connections() if ended(conn.identity)]
        for conn in closing:
            conn.close(code, reason)
        return len(closing)

    async def resynced(self) -> None:
        """The broker was away and is back: what it did not carry, the database says."""
        self.gate.clear()
        await self.sweep()
        if self._unsent:
            await self._resend()

    async def sweep(self) -> None:
        conns = self.hub.all_connections()
        if not conns:
            return
        ended = await self.gate.ended_among(c.identity for c in conns)
        for identity in ended:
            self.gate.forget(Revocation(identity.user_id, identity.session_id))
        for conn in conns:
            if conn.identity in ended:
                conn.close(CLOSE_POLICY, SESSION_ENDED)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(), name="session-recheck")]
        if self._mark is not None:
            self._tasks.append(
                asyncio.create_task(self._watch_mark(self._mark), name="accounts-mark")
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_every
        while True:
            await asyncio.sleep(self.recheck)
            try:
                if self._unsent and self._healthy():
                    await self._resend()
                if not self._healthy() or loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_every
                    await self.sweep()
            except Exception:
                log.warning("could not re-check open sessions", exc_info=True)

    async def _resend(self) -> None:
        while self._unsent:
            await self._publish(self._unsent[0])
            self._unsent.pop(0)

    async def _watch_mark(self, read: Callable[[], Awaitable[str | None]]) -> None:
        known: str | None = None
        first = True
        while True:
            try:
                mark = await read()
                if not first and mark != known:
                    # Which user changed is not said: forget every cached answer (they
                    # are read again once) and check every open socket.
                    self.gate.clear()
                    await self.sweep()
                    if self._on_mark is not None:
                        await self._on_mark()
                known, first = mark, False
            except Exception:
                log.warning("could not read the accounts mark", exc_info=True)
                first = False  # what changed meanwhile is unknown: the next read decides
            await asyncio.sleep(self.mark_every)
