"""Reading the rest of a request body refused with 413, through Sanic's Http object.

Sanic answers 413 once a body passes REQUEST_MAX_SIZE, then closes the socket
at once. A client still sending (a chunked upload, or one that writes its whole
request before reading) then gets a connection reset instead of the answer:
the unread bytes make the kernel send RST. Reading and dropping the rest, up to
a bound and a deadline, lets the answer through. Sanic's limit lives on its
undocumented Http object (`request.stream.request_max_size` and
`request_bytes`); without them the body is not drained (Sanic's own behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# Read at most this many more bytes, for at most this long, before giving up.
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 5.0


async def drain_refused_body(request: Any) -> None:
    stream: Any = getattr(request, "stream", None)
    if not all(
        hasattr(stream, name) for name in ("request_body", "request_bytes", "request_max_size")
    ):
        return
    if not stream.request_body:
        return  # all read already
    stream.request_max_size = stream.request_bytes + DRAIN_BYTES
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in stream:
                pass
