"""The one adapter for framework internals: every private or undocumented part of
Sanic, websockets and Tortoise that the server uses is reached from this package.

- fast.py: the websocket road through Sanic's and websockets' internals, each use
  with what it buys; inbox.py: Sanic's frame assembler replaced.
- public.py: the same road on Sanic's documented API only, slower but correct.
- workers.py: two fixes to Sanic's WorkerManager (several worker processes).
- orm.py: Tortoise's global context fallback, for Sanic's request tasks.
- linger.py: a lingering close, so a client still sending reads the answer (a 413).
- http.py: without it, the rest of a body refused with 413 is read before answering.
- deadline.py: a real header deadline (Sanic's REQUEST_TIMEOUT restarts on every
  byte), in Sanic's connection protocol.
- launcher.py: that protocol under Sanic's own launcher (`sanic ... --factory`).

At start-up `choose_wire` checks that everything the fast path needs is there
(checks.py). If something is missing (a new release), one warning names it and
the server runs on the public API instead; CHATROOM_INTERNALS=off forces that.
`choose_protocol` does the same for the header deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ...realtime.connection import Connection, Transport
from .checks import missing_for_fast_path, missing_for_header_deadline

if TYPE_CHECKING:
    from sanic.config import Config
    from sanic.server.protocols.websocket_protocol import WebSocketProtocol
    from sanic.server.websockets.impl import WebsocketImplProtocol

log = logging.getLogger("chatroom_server.web")


class Reader(Protocol):
    async def get(self) -> str | bytes | None:
        """The next message; None once the server closed the connection.

        Raises CancelledError when the client closes, as Sanic's recv() does.
        """

    def close(self) -> None:
        """The handler is done with the socket."""

    async def closing(self) -> None:
        """Return once a close the server started has gone out and the client answered
        it, or a few seconds passed: when the handler returns, Sanic ends the TCP
        connection, and a client still sending would get a reset instead of the close
        frame (Sanic closes what is left open, with 1000)."""


class Pings(Protocol):
    def add(self, conn: Connection, ws: WebsocketImplProtocol) -> None: ...

    def discard(self, conn: Connection) -> None: ...

    def ping_all(self, round_number: int) -> None: ...


class Wire(Protocol):
    """How websockets are written, read and pinged: the fast path or the public one."""

    @property
    def name(self) -> str: ...

    @property
    def pings(self) -> Pings | None:
        """Our own shared pings; None: Sanic's per-socket keep-alive does it."""

    def encode(self, texts: Sequence[str]) -> Any: ...

    def transport(self, ws: WebsocketImplProtocol) -> Transport: ...

    def reader(
        self, ws: WebsocketImplProtocol, transport: Any, on_bad_text: Callable[[], None]
    ) -> Reader: ...

    def after_upgrade(self, ws: WebsocketImplProtocol) -> None: ...

    def configure(self, config: Config, ping_interval: float) -> None:
        """Set Sanic's websocket keep-alive for this path."""

    async def wait_closed(self) -> None:
        """At shutdown, after every socket was told to close: wait for that to be done."""


def choose_wire(internals: str, ping_interval: float = 20.0) -> Wire:
    """The fast path when allowed ("auto") and everything it needs is there."""
    if internals == "off":
        log.info("websockets use Sanic's public API (CHATROOM_INTERNALS=off)")
        return _public(ping_interval)
    missing = missing_for_fast_path()
    if missing:
        log.warning(
            "Sanic/websockets internals missing (%s): websockets use Sanic's public API "
            "instead, which is slower; pin the versions in pyproject.toml to get them back",
            ", ".join(missing),
        )
        return _public(ping_interval)
    from .fast import FastWire

    return FastWire()


def _public(ping_interval: float) -> Wire:
    from .public import PublicWire

    return PublicWire(ping_interval)


def choose_protocol(
    internals: str, config: Config, header_timeout: float
) -> type[WebSocketProtocol]:
    """The connection protocol class to serve with (`protocol=` of Sanic's prepare and
    create_server), with Sanic's REQUEST_TIMEOUT set to the header timeout.

    With the header deadline (deadline.py) the headers must be complete that long
    after their first byte and a silent new connection is dropped as long after it
    opened, without an answer. On Sanic's own protocol (CHATROOM_INTERNALS=off, or an
    internal missing) the timeout restarts on every byte read and a stalled request
    gets a 408; a silent new connection waits for KEEP_ALIVE_TIMEOUT.
    """
    config.REQUEST_TIMEOUT = header_timeout  # type: ignore[assignment]
    missing = [] if internals == "off" else missing_for_header_deadline()
    if internals == "off" or missing:
        if missing:
            log.warning(
                "Sanic internals missing (%s): the header timeout restarts on every byte "
                "read (Sanic's REQUEST_TIMEOUT), so clients that drip headers are not cut "
                "off; pin the versions in pyproject.toml to get the deadline back",
                ", ".join(missing),
            )
        from sanic.server.protocols.websocket_protocol import WebSocketProtocol

        return WebSocketProtocol
    from .deadline import HeaderDeadlineProtocol

    return HeaderDeadlineProtocol
