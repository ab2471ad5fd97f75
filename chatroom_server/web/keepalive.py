"""Pings and token expiry for every websocket of this process, from one task.

Sanic would give each socket a keep-alive task of its own (with its timer and
futures, about 1 KiB per idle connection), and a per-socket timer would close
it when its token expires. One task visiting every socket does both, and sends
the same encoded ping frame to all of them.

A socket that has not answered the previous ping when the next one is due is
closed (1011), as Sanic does; one whose token has expired is closed with 1008.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode

from ..periodic import Periodic
from ..realtime.connection import CLOSE_INTERNAL, CLOSE_POLICY, Connection

log = logging.getLogger("chatroom_server.web")


class _Socket:
    __slots__ = ("ws", "pong")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        self.pong: asyncio.Future[None] | None = None  # the answer to the last ping


class Keepalive:
    def __init__(self, ping_interval: float) -> None:
        self.ping_interval = ping_interval
        # Expiry is checked this often (a token lives no longer than about this).
        self.tick = min(1.0, ping_interval)
        self._sockets: dict[Connection, _Socket] = {}
        self.rounds = 0  # pings sent to every socket so far
        self._next_ping = time.monotonic() + ping_interval
        self._periodic = Periodic("websocket-keepalive", self.tick, self._round, log)

    def add(self, conn: Connection, ws: WebsocketImplProtocol) -> None:
        self._sockets[conn] = _Socket(ws)

    def discard(self, conn: Connection) -> None:
        self._sockets.pop(conn, None)

    def start(self) -> None:
        self._next_ping = time.monotonic() + self.ping_interval
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _round(self) -> None:
        self.close_expired(time.time())
        if time.monotonic() >= self._next_ping:
            self._next_ping = time.monotonic() + self.ping_interval
            self.ping_all()

    def close_expired(self, now: float) -> None:
        for conn in [c for c in self._sockets if c.identity.expires_at <= now]:
            conn.close(CLOSE_POLICY, "token expired")

    def ping_all(self) -> None:
        self.rounds = (self.rounds + 1) % 2**32
        payload = self.rounds.to_bytes(4, "big")
        frame = Frame(Opcode.PING, payload).serialize(mask=False)
        loop = asyncio.get_running_loop()
        for conn, sock in list(self._sockets.items()):
            if sock.pong is not None and not sock.pong.done():
                log.info("closing websocket that did not answer a ping: room=%s", conn.room.id)
                conn.close(CLOSE_INTERNAL, "keepalive ping timeout")
                continue
            try:
                conn.transport.write(frame)
            except ConnectionError:
                continue
            # Sanic resolves the futures in `pings` when the matching pong arrives.
            sock.pong = loop.create_future()
            sock.ws.pings[payload] = sock.pong
