"""A header deadline: Sanic's HTTP/1 connection protocol with a real REQUEST_TIMEOUT.

Sanic measures REQUEST_TIMEOUT from the last byte read (`_time`, set on every
read), so a client that drips one header byte every few seconds holds its
connection, and a worker's memory, for ever (slowloris). Here the headers of
each request (or websocket handshake) must be complete REQUEST_TIMEOUT seconds
after that request's first byte, and a new connection must send its first byte
within REQUEST_TIMEOUT of opening; past that the connection is closed without an
answer (a 408 would only tell the attacker when to come back).

Everything else is Sanic's: the keep-alive idle between requests
(KEEP_ALIVE_TIMEOUT), RESPONSE_TIMEOUT, and websockets, whose timeouts Sanic
disables after the upgrade. This reads and writes the protocol's undocumented
`_http` (its `stage`), `_task`, `_callback_check_timeouts` and `request_handler`,
and overrides `check_timeouts`; checks.missing_for_header_deadline names what a
release lacks, and then Sanic's own protocol runs (REQUEST_TIMEOUT = the header
timeout, restarted by every byte). The same protocol closes with a linger when
the client may still be sending (linger.py; it reads `recv_buffer` too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from sanic.http.constants import Stage
from sanic.server.protocols.websocket_protocol import WebSocketProtocol

from ... import metrics
from .linger import can_linger, input_pending, linger

# Stages in which the next request's headers are awaited or being read.
_HEAD_STAGES = (Stage.IDLE, Stage.REQUEST)
# The timer may fire up to the clock's resolution early: check just after the deadline.
_LATE = 0.005


class HeaderDeadlineProtocol(WebSocketProtocol):
    """WebSocketProtocol (what Sanic runs for an app with websocket routes) with the
    header deadline above."""

    __slots__ = ("_head_started", "_handle", "_served")

    # The handler of a 413 need not read the rest of the body first (web/errors.py).
    LINGERS = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # When the headers now awaited started (the connection's opening, then each
        # request's first byte); None between a request's headers and the next byte.
        self._head_started: float | None = monotonic()
        # Sanic's Http of this connection once a request reached the handler: at the
        # close, whether its body was read to the end (linger.py).
        self._served: Any = None
        super().__init__(*args, **kwargs)

    def _setup(self) -> None:
        super()._setup()  # type: ignore[no-untyped-call]
        # Called by Sanic's Http the moment a request's headers are parsed.
        self._handle: Callable[[Any], Awaitable[Any]] = self.request_handler
        self.request_handler = self._headers_done

    def _headers_done(self, request: Any) -> Awaitable[Any]:
        self._head_started = None
        self._served = self._http
        return self._handle(request)  # the same coroutine, no extra frame

    def close(self, timeout: float | None = None) -> None:
        """Sanic's close, but lingering (linger.py) when the client may still be sending
        after an answer; a connection dropped at the header deadline got no answer."""
        served, self._served = self._served, None
        transport = self.transport
        if (
            served is not None
            and self.websocket is None
            and can_linger(transport)
            and input_pending(served, self.recv_buffer)
        ):
            timer = self._callback_check_timeouts
            if timer is not None:
                timer.cancel()
            linger(transport, self)
            return
        super().close(timeout)

    def data_received(self, data: bytes) -> None:
        ws = self.websocket
        if ws is not None:
            # An upgraded socket's bytes, straight to it as WebSocketProtocol does: this
            # runs for every read of every websocket (through super(): 500 ns a call
            # instead of Sanic's 225; this way 180 against 157).
            ws.data_received(data)  # type: ignore[no-untyped-call]
            return
        if self._head_started is None:
            http = self._http
            if http is None or http.stage in _HEAD_STAGES:
                self._head_started = monotonic()
        super().data_received(data)  # type: ignore[no-untyped-call]

    def check_timeouts(self) -> None:
        http = self._http
        if self._task is None or http is None:
            return
        stage = http.stage
        if stage is Stage.REQUEST and self._head_started is None:
            # A pipelined request: its bytes came in with the one before.
            self._head_started = monotonic()
        started = self._head_started
        if started is None or stage not in _HEAD_STAGES:
            super().check_timeouts()  # type: ignore[no-untyped-call]  # Sanic's own
            return
        left = started + self.request_timeout - monotonic()
        if left > 0:
            self._callback_check_timeouts = self.loop.call_later(left + _LATE, self.check_timeouts)
            return
        metrics.HEADER_TIMEOUTS.inc()
        # Sanic's Http answers an error in the REQUEST stage; FAILED makes it silent
        # ("from request and handler states we can respond, otherwise be silent").
        http.stage = Stage.FAILED
        self._task.cancel()
