"""Room access re-checked when a site admin's right is taken away (`set-admin --off`):
RoomEvents and Revocations over a real hub, recording transports and fake verdicts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from chatroom_server import protocol
from chatroom_server.domain import PRIVATE, Identity, Revocation, Room, RoomEvent
from chatroom_server.realtime.connection import Connection
from chatroom_server.realtime.hub import Hub
from chatroom_server.realtime.revocations import Revocations
from chatroom_server.realtime.room_events import ControlRoom, RoomEvents

from ..conftest import eventually
from .test_hub import connection, encode, recorded

NOW = datetime.now(UTC)
SECRET = Room(1, "secret", NOW, NOW, visibility=PRIVATE)
LOBBY = Room(2, "lobby", NOW, NOW)
CLUB = Room(3, "club", NOW, NOW, visibility=PRIVATE)
ADMIN, OTHER = 7, 8


@dataclass(frozen=True)
class Verdict:
    stays: bool
    reason: str = ""
    mute_deadline: float = 0.0


class Judge:
    """Fake access.verdicts: ADMIN may no longer see SECRET; everything else stays."""

    def __init__(self) -> None:
        self.asked: list[set[tuple[int, int]]] = []

    async def __call__(self, pairs: Iterable[tuple[int, int]]) -> Mapping[tuple[int, int], Verdict]:
        wanted = set(pairs)
        self.asked.append(wanted)
        return {p: Verdict(p != (SECRET.id, ADMIN), "removed") for p in wanted}


class Gate:
    """Fake session service: counts the cache clears."""

    def __init__(self) -> None:
        self.cleared = 0

    def forget(self, revocation: Revocation) -> None:
        pass

    def clear(self) -> None:
        self.cleared += 1

    async def ended_among(self, identities: Iterable[Identity]) -> set[Identity]:
        return set()


async def nobody(room_id: int, user_ids: Iterable[int]) -> set[int]:
    return set()


async def publish(payload: str) -> None:
    pass


async def no_room(room_id: int) -> Room:
    raise LookupError(room_id)


def room_events(hub: Hub, judge: Judge) -> RoomEvents:
    return RoomEvents(hub, nobody, publish, judge, no_room, lambda: True, recheck=60)


def opened(hub: Hub, room: Room, user_id: int, as_admin: bool) -> Connection:
    conn = connection(room, user_id)
    conn.opened_as_admin = as_admin
    hub.add(conn)
    return conn


async def test_admin_off_closes_only_that_users_sockets_to_rooms_they_no_longer_see() -> None:
    hub, judge = Hub(encode), Judge()
    events = room_events(hub, judge)
    secret = opened(hub, SECRET, ADMIN, True)
    lobby = opened(hub, LOBBY, ADMIN, True)
    club = opened(hub, CLUB, ADMIN, False)  # a member there
    other = opened(hub, SECRET, OTHER, True)

    # As the control room delivers it from the CLI, through the broker.
    payload = protocol.bus_room_event(RoomEvent("admin_off", 0, ADMIN))
    ControlRoom(Revocations(hub, Gate(), publish, lambda: True, 60), events).hear(payload)
    await eventually(lambda: bool(recorded(secret).aborts), "the secret socket closes")

    assert recorded(secret).aborts == [(1008, "no longer a site admin")]
    assert [recorded(c).aborts for c in (lobby, club, other)] == [[], [], []]
    # Only that user's sockets were checked.
    assert judge.asked == [{(SECRET.id, ADMIN), (LOBBY.id, ADMIN), (CLUB.id, ADMIN)}]
    await events.stop()


async def test_a_moved_mark_checks_the_sockets_opened_by_site_admins() -> None:
    hub, judge = Hub(encode), Judge()
    events = room_events(hub, judge)
    secret = opened(hub, SECRET, ADMIN, True)
    opened(hub, LOBBY, OTHER, False)
    await events.admins_changed()
    assert judge.asked == [{(SECRET.id, ADMIN)}]
    assert recorded(secret).aborts == [(1008, "no longer a site admin")]


async def test_the_sweep_says_why_by_how_the_socket_was_let_in() -> None:
    hub = Hub(encode)
    events = room_events(hub, Judge())
    as_admin = opened(hub, SECRET, ADMIN, True)
    as_member = opened(hub, SECRET, ADMIN, False)  # a member once: removed meanwhile
    await events.sweep()
    assert recorded(as_admin).aborts == [(1008, "no longer a site admin")]
    assert recorded(as_member).aborts == [(1008, "removed from the room")]


async def test_the_accounts_mark_moving_runs_on_mark_once() -> None:
    reads = 0
    moved = asyncio.Event()
    calls: list[str] = []

    async def mark() -> str | None:
        nonlocal reads
        reads += 1
        return "a" if reads < 3 else "b"

    async def on_mark() -> None:
        calls.append("moved")
        moved.set()

    gate = Gate()
    revocations = Revocations(
        Hub(encode), gate, publish, lambda: True, 60, mark=mark, mark_every=0.01, on_mark=on_mark
    )
    revocations.start()
    try:
        await asyncio.wait_for(moved.wait(), 5)
        await eventually(lambda: reads >= 5, "the mark read twice more")
    finally:
        await revocations.stop()
    assert calls == ["moved"] and gate.cleared == 1
