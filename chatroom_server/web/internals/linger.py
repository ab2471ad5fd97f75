"""A lingering close: the answer reaches a client that is still sending.

Sanic closes a connection as soon as it has answered, also when the request's
body was refused (413) or not read (an error before the handler) while the
client is still sending it. Closing a socket with unread bytes, or receiving
bytes after the close, makes the kernel send a reset, and a client that has not
yet read the answer then loses it (httpx.ReadError instead of the 413).

So when the server ends an HTTP connection while the client may still be sending
(the last request's body unfinished, or bytes waiting in the buffer), the answer
is flushed, the sending half is closed (FIN after the answer), and what the
client still sends is read and dropped until it closes its side, as a
well-behaved HTTP server does (Apache's lingering close, nginx's lingering_time).
Bounded: at most LINGER_BYTES read, for at most LINGER_SECONDS; then the
connection is aborted. A TLS transport cannot half-close: it is closed at once.

The transport gets a small protocol of its own for the lingering (asyncio's
`set_protocol`), so the server's protocol and its per-read path stay untouched;
it hands `connection_lost` back to Sanic's protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeGuard

# Read and drop at most this much of what a client still sends after the answer,
# for at most this long (a 2 MiB upload over a slow link fits; a client that keeps
# sending for ever does not hold the connection).
LINGER_BYTES = 8 * 1024 * 1024
LINGER_SECONDS = 5.0


def input_pending(http: Any, recv_buffer: bytes | bytearray | None) -> bool:
    """Whether the client may still be sending: the body of the request last read was
    not read to its end, or bytes are waiting unread in the buffer."""
    return bool(recv_buffer) or bool(http is not None and getattr(http, "request_body", None))


def can_linger(transport: asyncio.BaseTransport | None) -> TypeGuard[asyncio.Transport]:
    return (
        isinstance(transport, asyncio.Transport)
        and not transport.is_closing()
        and transport.can_write_eof()
    )


def linger(transport: asyncio.Transport, owner: asyncio.BaseProtocol) -> None:
    """Half-close `transport` after what it still has to write, and drop what comes in
    until the peer closes or a bound is hit; then `owner.connection_lost` runs."""
    loop = asyncio.get_running_loop()
    transport.set_protocol(_Lingerer(transport, owner, loop))
    transport.resume_reading()  # Sanic pauses reading when its buffer is full
    transport.write_eof()  # once the answer is out


class _Lingerer(asyncio.Protocol):
    def __init__(
        self,
        transport: asyncio.Transport,
        owner: asyncio.BaseProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.transport = transport
        self.owner = owner
        self.left = LINGER_BYTES
        self.timer = loop.call_later(LINGER_SECONDS, transport.abort)

    def data_received(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self.timer.cancel()
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # the client is done: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.owner.connection_lost(exc)
