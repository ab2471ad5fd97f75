"""Reading the rest of a request body refused with 413, through Sanic's Http object:
the fallback for when our connection protocol (deadline.py) does not serve.

Sanic answers 413 once a body passes REQUEST_MAX_SIZE, then closes the socket
at once. A client still sending (a chunked upload, or one that writes its whole
request before reading) then gets a connection reset instead of the answer:
the unread bytes make the kernel send RST. Our protocol closes such a connection
with a linger (linger.py): it answers at once and drops what still comes. On
Sanic's own protocol (CHATROOM_INTERNALS=off, an internal missing, or Sanic's
launcher with --single-process) the handler instead reads and drops the rest
before answering, up to a bound and a deadline. Sanic's limit lives on its
undocumented Http object (`request.stream.request_max_size`, `request_bytes`,
`request_bytes_left`); without them the body is not drained (Sanic's own
behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# Read at most this many more bytes, for at most this long, before giving up.
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 5.0


def lingers(request: Any) -> bool:
    """Whether this request's connection closes with a linger (linger.py)."""
    transport = getattr(request, "transport", None)
    get_protocol = getattr(transport, "get_protocol", None)
    return get_protocol is not None and bool(getattr(get_protocol(), "LINGERS", False))


async def drain_refused_body(request: Any) -> None:
    stream: Any = getattr(request, "stream", None)
    names = ("request_body", "request_bytes", "request_bytes_left", "request_max_size")
    if not all(hasattr(stream, name) for name in names):
        return
    if not stream.request_body:
        return  # all read already
    if stream.request_body is True and stream.request_bytes_left > DRAIN_BYTES:
        return  # a Content-Length past the bound: it cannot be read to its end anyway
    # request_bytes: announced (Content-Length) or seen so far (chunked).
    stream.request_max_size = stream.request_bytes + DRAIN_BYTES
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in stream:
                pass
