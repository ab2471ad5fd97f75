"""What the fast path (fast.py, inbox.py) needs of Sanic and websockets, checked at start-up.

A new release may rename or drop any of these without notice. Checked on a
websocket object made here (nothing connected), so that a missing attribute shows
at start-up as one warning, not as a failure at the first message.
"""

from __future__ import annotations

from typing import Any

# Attributes of Sanic's WebsocketImplProtocol that fast.py and inbox.py use.
WS_ATTRIBUTES = (
    "ws_proto",
    "io_proto",
    "loop",
    "assembler",
    "recv_cancel",
    "pings",
    "pause_frames",
    "resume_frames",
    "end_connection",
    "connection_lost_waiter",
)
# Attributes of Sanic's frame assembler that Inbox.install reads when it takes over.
ASSEMBLER_ATTRIBUTES = ("message_complete", "message_fetched", "chunks", "decoder", "paused")


def missing_for_fast_path() -> list[str]:
    """Names of what is missing; empty when the fast path can run."""
    missing: list[str] = []
    try:
        from sanic.server.protocols.http_protocol import HttpProtocol
        from sanic.server.websockets.impl import WebsocketImplProtocol
        from websockets.frames import Frame, Opcode
        from websockets.protocol import OPEN, Protocol
        from websockets.server import ServerProtocol
    except ImportError as exc:
        return [f"import {exc.name}"]
    state = Protocol.__dict__.get("state")
    if not (isinstance(state, property) and state.fset is not None):
        missing.append("websockets Protocol.state setter")
    if not hasattr(Frame, "serialize") or not hasattr(Opcode, "PING"):
        missing.append("websockets Frame.serialize")
    if not hasattr(HttpProtocol, "_callback_check_timeouts"):
        missing.append("HttpProtocol._callback_check_timeouts")
    try:
        proto = ServerProtocol()
        ws: Any = WebsocketImplProtocol(proto)
    except Exception as exc:  # a changed constructor
        return [*missing, f"WebsocketImplProtocol() ({type(exc).__name__})"]
    if getattr(proto, "_state", None) is not OPEN and "_state" not in vars(proto):
        missing.append("ServerProtocol._state")
    missing += [f"WebsocketImplProtocol.{name}" for name in WS_ATTRIBUTES if not hasattr(ws, name)]
    assembler = getattr(ws, "assembler", None)
    missing += [
        f"WebsocketFrameAssembler.{name}"
        for name in ASSEMBLER_ATTRIBUTES
        if assembler is not None and not hasattr(assembler, name)
    ]
    return missing


# What deadline.py's protocol uses of Sanic's HTTP/1 protocol and its Http object.
PROTOCOL_SLOTS = (
    "_http",
    "_task",
    "_callback_check_timeouts",
    "request_handler",
    "request_timeout",
    "websocket",
    "loop",
    "recv_buffer",
    "transport",
)
PROTOCOL_METHODS = ("_setup", "check_timeouts", "data_received", "close", "connection_lost")
STAGES = ("IDLE", "REQUEST", "FAILED")


def missing_for_header_deadline() -> list[str]:
    """Names of what the header deadline (deadline.py) lacks; empty when it can run."""
    try:
        from sanic.http import Http
        from sanic.http.constants import Stage
        from sanic.server.protocols.websocket_protocol import WebSocketProtocol
    except ImportError as exc:
        return [f"import {exc.name}"]
    slots = {
        name for klass in WebSocketProtocol.__mro__ for name in getattr(klass, "__slots__", ())
    }
    missing = [f"HttpProtocol.{name}" for name in PROTOCOL_SLOTS if name not in slots]
    missing += [
        f"HttpProtocol.{name}()"
        for name in PROTOCOL_METHODS
        if not callable(getattr(WebSocketProtocol, name, None))
    ]
    if "stage" not in getattr(Http, "__slots__", ()):
        missing.append("Http.stage")
    if "request_body" not in getattr(Http, "__slots__", ()):
        missing.append("Http.request_body")
    missing += [f"Stage.{name}" for name in STAGES if not hasattr(Stage, name)]
    return missing
