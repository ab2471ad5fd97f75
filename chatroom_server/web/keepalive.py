"""Pings and token expiry for every websocket of this process, from one task.

Sanic would give each socket a keep-alive task of its own (with its timer and
futures, about 1 KiB per idle connection), and a per-socket timer would close
it when its token expires. One task visiting every socket does both: on the
fast path it sends the same encoded ping frame to all of them (internals/fast.py);
on the public path Sanic's own keep-alive pings, and this task only closes
sockets whose token expired (1008).
"""

from __future__ import annotations

import logging
import time

from sanic import Websocket

from ..periodic import Periodic
from ..realtime.connection import CLOSE_POLICY, Connection
from .internals import Pings

log = logging.getLogger("chatroom_server.web")


class Keepalive:
    def __init__(self, ping_interval: float, pings: Pings | None) -> None:
        self.ping_interval = ping_interval
        self.pings = pings
        # Expiry is checked this often (a token lives no longer than about this).
        self.tick = min(1.0, ping_interval)
        self._conns: dict[Connection, None] = {}
        self.rounds = 0  # ping intervals passed (pings sent, on the fast path)
        self._next_ping = time.monotonic() + ping_interval
        self._periodic = Periodic("websocket-keepalive", self.tick, self._round, log)

    def add(self, conn: Connection, ws: Websocket) -> None:
        self._conns[conn] = None
        if self.pings is not None:
            self.pings.add(conn, ws)

    def discard(self, conn: Connection) -> None:
        self._conns.pop(conn, None)
        if self.pings is not None:
            self.pings.discard(conn)

    def start(self) -> None:
        self._next_ping = time.monotonic() + self.ping_interval
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _round(self) -> None:
        self.close_expired(time.time())
        if time.monotonic() >= self._next_ping:
            self._next_ping = time.monotonic() + self.ping_interval
            self.rounds = (self.rounds + 1) % 2**32
            if self.pings is not None:
                self.pings.ping_all(self.rounds)

    def close_expired(self, now: float) -> None:
        for conn in [c for c in self._conns if c.identity.expires_at <= now]:
            conn.close(CLOSE_POLICY, "token expired")
