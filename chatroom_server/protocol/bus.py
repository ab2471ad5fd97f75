"""What processes send each other through the broker."""

from __future__ import annotations

from ..domain import (
    Change,
    Message,
    Revocation,
    RoomEvent,
)

# --------------------------------------------------------------------------- the bus
#
# What processes send each other through the broker: a header line, then the
# client frame exactly as every connection will receive it (encoded once).
#   "m <seq> <id>\n<frame>"   a stored message, with its room sequence and ID
#   "c <seq> <id>\n<frame>"   an edit or delete (protocol v2 only), sequenced like them
#   "p\n<frame>"              a presence line (join / leave), not sequenced
#   "t <user ID>\n<frame>"    someone typing (protocol v2 only), not sequenced


class BusItem:
    __slots__ = ("seq", "message_id", "frame", "v2_only", "typist")

    def __init__(
        self,
        seq: int | None,
        message_id: int | None,
        frame: str,
        v2_only: bool = False,
        typist: int = 0,
    ) -> None:
        self.seq = seq
        self.message_id = message_id
        self.frame = frame
        self.v2_only = v2_only
        self.typist = typist  # a typing frame's user


def bus_message(message: Message, frame: str) -> str:
    return f"m {message.seq} {message.id}\n{frame}"


def bus_change(change: Change, frame: str) -> str:
    return f"c {change.seq} {change.id}\n{frame}"


def bus_presence(frame: str) -> str:
    return f"p\n{frame}"


def bus_typing(user_id: int, frame: str) -> str:
    return f"t {user_id}\n{frame}"


def parse_bus(payload: str) -> BusItem:
    """Decode a bus payload; raise ValueError if it is not one of ours."""
    header, sep, frame = payload.partition("\n")
    if not sep:
        raise ValueError("no header")
    if header == "p":
        return BusItem(None, None, frame)
    if header[:2] == "t ":
        return BusItem(None, None, frame, True, int(header[2:]))
    kind, seq, message_id = header.split(" ")
    if kind not in ("m", "c"):
        raise ValueError(f"unknown kind {kind!r}")
    return BusItem(int(seq), int(message_id), frame, kind == "c")


# The control room (pubsub.CONTROL_ROOM) carries revocations, one per payload:
#   "r <user ID> <session ID or -> <session kept or ->"   sessions ended
#   "l <user ID> - -"                                       tokens without a session ended


def bus_revocation(revocation: Revocation) -> str:
    kind = "l" if revocation.legacy_only else "r"
    return f"{kind} {revocation.user_id} {revocation.session_id or '-'} {revocation.keep or '-'}"


# ... and room events (services/members.py, the admin CLI -> realtime/room_events.py):
#   "e <kind> <room ID> <user ID> <until>"                 (room ID 0: every room)


def bus_room_event(event: RoomEvent) -> str:
    return f"e {event.kind} {event.room_id} {event.user_id} {event.until!r}"


def parse_room_event(payload: str) -> RoomEvent:
    """Decode a room event; raise ValueError if it is not one."""
    tag, kind, room_id, user_id, until = payload.split(" ")
    if tag != "e":
        raise ValueError(f"not a room event: {tag!r}")
    return RoomEvent(kind, int(room_id), int(user_id), float(until))


def parse_revocation(payload: str) -> Revocation:
    """Decode a control payload; raise ValueError if it is not a revocation."""
    kind, user_id, session_id, keep = payload.split(" ")
    if kind not in ("r", "l"):
        raise ValueError(f"unknown kind {kind!r}")
    return Revocation(
        int(user_id),
        None if session_id == "-" else session_id,
        None if keep == "-" else keep,
        legacy_only=kind == "l",
    )


# ... and signing key rotations (the CLI's rotate-secret -> realtime/keys.py):
#   "k <new key ID>"   every process reads the keys from the database again


def bus_key_rotation(kid: str) -> str:
    return f"k {kid}"


def parse_key_rotation(payload: str) -> str:
    """The new key's ID; raise ValueError if the payload is not a rotation."""
    tag, kid = payload.split(" ")
    if tag != "k" or not kid:
        raise ValueError(f"not a key rotation: {tag!r}")
    return kid


# ... and read markers that moved (realtime/reads.py), for the user's other connections:
#   "u <user ID> <room ID> <last read ID> <process> <connection or ->"
# `process` names the process whose connection `connection` (a token of that process's
# own) moved it, or that moved it over REST (connection "-").


class BusRead:
    __slots__ = ("user_id", "room_id", "last_read_id", "process", "connection")

    def __init__(
        self, user_id: int, room_id: int, last_read_id: int, process: str, connection: str | None
    ) -> None:
        self.user_id = user_id
        self.room_id = room_id
        self.last_read_id = last_read_id
        self.process = process
        self.connection = connection


def bus_read(read: BusRead) -> str:
    return (
        f"u {read.user_id} {read.room_id} {read.last_read_id} {read.process}"
        f" {read.connection or '-'}"
    )


def parse_read(payload: str) -> BusRead:
    """Decode a moved read marker; raise ValueError if it is not one."""
    tag, user_id, room_id, last_read_id, process, connection = payload.split(" ")
    if tag != "u" or not process:
        raise ValueError(f"not a read marker: {tag!r}")
    return BusRead(
        int(user_id),
        int(room_id),
        int(last_read_id),
        process,
        None if connection == "-" else connection,
    )
