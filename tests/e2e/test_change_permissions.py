"""Who may edit and delete a message (SPEC 12, issue 14): one table, every cell checked.

The cast is tests/e2e/room_cast.py's: the room's owner, a moderator, a member, a
stranger (no row in the room), a user banned from the room, a muted member and a site
admin, in a public, a private and a direct room (a direct room has only "member", its
"partner", "stranger" and "admin"). Each cell is one role editing or deleting one
message, by REST (PATCH/DELETE /v1/api/chat/messages/<id>) or by a protocol v2
websocket frame, and the message is the actor's own, or the owner's, a moderator's or
a member's (in a direct room: the partner's). Every cell has a message of its own,
posted before the bans and mutes, so the cells are independent.

The rules (SPEC 12 and the lead's decisions), which `expected()` spells out:

- whoever may not read the room is answered as its read check answers: a stranger to
  a private or direct room (and a user banned from a private room, which the ban took
  them out of) gets the 404 of a message ID never used, byte for byte (the ID aside);
  a user banned from a public room gets 403 "...banned...";
- edit: the author only (403 "...author..."), and not while muted (403 "...muted...");
- delete: the author, the room's owner and moderators, and site admins (403 otherwise).

By websocket the same answers are error frames (`forbidden`, `not_found`) on a v2
socket of the room, and the socket stays. A user who cannot open the room's socket is
refused before the upgrade with the read check's status; a frame naming the room's
message from a socket of another room they can open gets `not_found`, like a message
never used. An admin's v2 socket watches the room throughout: it sees exactly the
allowed changes, in order; afterwards the history shows exactly their effect.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ..conftest import TIMEOUT, ChatServer
from .room_cast import (
    API,
    NEVER_USED,
    VISIBILITIES,
    Cast,
    Hidden,
    Person,
    Room,
    Soft,
    cast,
    error_body,
    next_non_presence,
    roles_of,
    ws_refusal,
)
from .test_permissions import read_status

__all__ = ["cast"]  # a fixture, used by name

MESSAGES = f"{API}/messages"
ACTIONS = ("edit", "delete")
TRANSPORTS = ("rest", "ws")
# Whose message a cell changes: the actor's own, or someone else's of that role.
TARGETS = ("own", "owner", "moderator", "member")
DIRECT_TARGETS = ("own", "member")
STAFF = {"owner", "moderator", "admin"}  # delete anyone's message in the room


@pytest.fixture
def server_settings() -> dict[str, Any]:
    # Every cell's message is posted in one burst per author, and one socket sends all
    # of a role's frames: the per-connection rate limit would drop some.
    return {"ws_rate": 10_000.0, "ws_burst": 10_000}


@dataclass(frozen=True)
class Outcome:
    status: int  # REST: 200 (edit), 204 (delete), 403 or 404
    words: tuple[str, ...] = ()  # a 403 says one of these (lower case)

    @property
    def allowed(self) -> bool:
        return self.status < 300


@dataclass
class Cell:
    visibility: str
    role: str
    target: str
    action: str
    transport: str
    author: str  # the label of the message's author in Room.people
    message_id: int = 0

    @property
    def label(self) -> str:
        whose = "own" if self.target == "own" else f"{self.target}'s"
        return f"{self.visibility} {self.role} {self.action}s {whose} ({self.transport})"

    @property
    def original(self) -> str:
        return f"{self.label}: original"

    @property
    def edited(self) -> str:
        return f"{self.label}: edited"


def expected(action: str, visibility: str, role: str, own: bool) -> Outcome:
    read = read_status(visibility, role)
    if read == 404:
        return Outcome(404)
    if read == 403:
        return Outcome(403, ("banned",))
    if action == "edit":
        if not own:
            # A muted non-author: either reason is right.
            return Outcome(403, ("author", "muted") if role == "muted" else ("author",))
        if role == "muted":
            return Outcome(403, ("muted",))
        return Outcome(200)
    if own or role in STAFF:
        return Outcome(204)
    return Outcome(403, ("author",))


def can_post(visibility: str, role: str) -> bool:
    """Could this role have posted in the room (before any ban or mute)?"""
    if visibility == "public":
        return True
    return role != "stranger"


def author_label(visibility: str, role: str, target: str) -> str | None:
    if target == "own":
        return role if can_post(visibility, role) else None
    if visibility == "direct":
        return "partner"
    # moderator2 and member2: nobody's "someone else's" message is their own.
    return {"owner": "owner", "moderator": "moderator2", "member": "member2"}[target]


def cells_of(visibility: str) -> list[Cell]:
    cells = []
    targets = DIRECT_TARGETS if visibility == "direct" else TARGETS
    for role in roles_of(visibility):
        for target in targets:
            author = author_label(visibility, role, target)
            if author is None or (target != "own" and author == role):
                continue  # no such message, or the owner's "owner's" is its own
            for action in ACTIONS:
                for transport in TRANSPORTS:
                    cells.append(Cell(visibility, role, target, action, transport, author))
    return cells


def outcome(cell: Cell) -> Outcome:
    return expected(cell.action, cell.visibility, cell.role, cell.target == "own")


def v2_connect(server: ChatServer, room_id: int, token: str) -> Any:
    return connect(
        server.ws_url(f"room_id={room_id}&jwt={token}&v=2"), open_timeout=TIMEOUT, max_queue=None
    )


async def post_many(server: ChatServer, room_id: int, who: Person, texts: list[str]) -> list[int]:
    """Post the texts in one burst through one socket; their IDs, in the same order."""
    ids: dict[str, int] = {}
    async with v2_connect(server, room_id, who.token) as ws:
        for i, text in enumerate(texts):
            await ws.send(json.dumps({"chatMessage": text, "clientMessageId": f"c{i}"}))
        while len(ids) < len(texts):
            frame = await next_non_presence(ws)
            assert frame["Event"] == "message", frame
            body = frame["Body"]
            if body["chatUserId"] == who.id:
                ids[body["chatMessage"]] = body["ID"]
    return [ids[t] for t in texts]


async def stage(cast: Cast, visibility: str, cells: list[Cell]) -> Room:
    """A room of this visibility with every role in place and each cell's message
    posted by its author (the banned and the muted post before their ban and mute)."""
    p = cast.people
    if visibility == "direct":
        room = await cast.room("direct")
    else:
        owner = p["owner"]
        body = await cast.ok(
            owner,
            "POST",
            f"{API}/create",
            {"name": f"{visibility} {uuid.uuid4().hex[:6]}", "visibility": visibility},
        )
        rid = int(body["chatRoom"]["ID"])
        members = f"{API}/rooms/{rid}/members"
        for role in ("moderator", "moderator2", "member", "member2", "muted", "banned"):
            if visibility == "private":
                await cast.ok(owner, "POST", members, {"userId": p[role].id})
            want = "moderator" if role.startswith("moderator") else "member"
            if visibility == "public" or want != "member":
                await cast.ok(owner, "PUT", f"{members}/{p[role].id}", {"role": want})
        room = Room(rid, visibility, dict(p))
    by_author: dict[str, list[Cell]] = {}
    for cell in cells:
        by_author.setdefault(cell.author, []).append(cell)
    for author, mine in by_author.items():
        ids = await post_many(cast.server, room.id, room.people[author], [c.original for c in mine])
        for cell, mid in zip(mine, ids, strict=True):
            cell.message_id = mid
    if visibility != "direct":
        r = f"{API}/rooms/{room.id}"
        await cast.ok(p["owner"], "POST", f"{r}/bans", {"userId": p["banned"].id})
        await cast.ok(p["owner"], "POST", f"{r}/mutes", {"userId": p["muted"].id})
    return room


@dataclass
class Unknown:
    """The answers for a message ID never used, to compare hidden messages' with."""

    rest: dict[str, Hidden] = field(default_factory=dict)  # by action
    ws_text: dict[str, str] = field(default_factory=dict)  # by action: the error's text

    def check_ws(self, frame: dict[str, Any], cell: Cell) -> None:
        check_error_frame(frame, "not_found")
        want = self.ws_text[cell.action].replace(str(NEVER_USED), str(cell.message_id))
        assert frame["Body"]["chatMessage"] == want, f"differs from a never-used ID's: {frame}"


def frame_for(cell: Cell, message_id: int | None = None) -> dict[str, Any]:
    mid = cell.message_id if message_id is None else message_id
    if cell.action == "edit":
        return {"type": "edit", "id": mid, "chatMessage": cell.edited}
    return {"type": "delete", "id": mid}


async def rest_call(cast: Cast, who: Person, cell: Cell, message_id: int) -> httpx.Response:
    if cell.action == "edit":
        return await cast.call(who, "PATCH", f"{MESSAGES}/{message_id}", {"chatMessage": "x"})
    return await cast.call(who, "DELETE", f"{MESSAGES}/{message_id}")


async def unknown_answers(cast: Cast, lobby: int) -> Unknown:
    """What a never-used message ID gets, by REST and by a v2 socket (of the lobby)."""
    found = Unknown()
    stranger = cast.people["stranger"]
    probe = Cell("public", "stranger", "own", "edit", "rest", "stranger")
    async with v2_connect(cast.server, lobby, stranger.token) as ws:
        for action in ACTIONS:
            probe.action = action
            found.rest[action] = Hidden(await rest_call(cast, stranger, probe, NEVER_USED))
            await ws.send(json.dumps(frame_for(probe, NEVER_USED)))
            frame = await next_non_presence(ws)
            check_error_frame(frame, "not_found")
            found.ws_text[action] = frame["Body"]["chatMessage"]
    return found


def check_error_frame(frame: dict[str, Any], code: str) -> None:
    assert frame["Event"] == "error", frame
    body = frame["Body"]
    assert set(body) == {"chatUserId", "chatMessage", "code"}, frame
    assert body["chatUserId"] == -1 and body["chatMessage"].strip(), frame
    assert body["code"] == code, f"expected code {code}: {frame}"


def check_words(text: str, want: Outcome) -> None:
    assert any(w in text.lower() for w in want.words), f"says none of {want.words}: {text!r}"


async def run_rest(cast: Cast, room: Room, cell: Cell, unknown: Unknown) -> None:
    want = outcome(cell)
    actor = room.people[cell.role]
    if cell.action == "edit":
        path, body = f"{MESSAGES}/{cell.message_id}", {"chatMessage": cell.edited}
        res = await cast.call(actor, "PATCH", path, body)
    else:
        res = await cast.call(actor, "DELETE", f"{MESSAGES}/{cell.message_id}")
    assert res.status_code == want.status, (
        f"expected {want.status}, got {res.status_code}: {res.text[:300]}"
    )
    if want.status == 404:
        unknown.rest[cell.action].check(res, cell.message_id)
    elif want.status == 403:
        check_words(error_body(res, 403)["message"], want)
    elif cell.action == "edit":
        got = res.json()["message"]
        assert got["ID"] == cell.message_id and got["chatMessage"] == cell.edited, got
        assert got["chatRoomId"] == room.id and got["EditedAt"], got
        assert got["chatUserId"] == room.people[cell.author].id, got
    else:
        assert res.content == b"", res.text


def check_ws_answer(frame: dict[str, Any], room: Room, cell: Cell, unknown: Unknown) -> None:
    want = outcome(cell)
    if want.status == 404:
        unknown.check_ws(frame, cell)
        return
    if want.status == 403:
        check_error_frame(frame, "forbidden")
        check_words(frame["Body"]["chatMessage"], want)
        return
    assert frame["Event"] == cell.action, f"expected the {cell.action} event: {frame}"
    body = frame["Body"]
    assert body["ID"] == cell.message_id and body["chatRoomId"] == room.id, frame
    assert body["eventId"] > cell.message_id, frame
    if cell.action == "edit":
        assert body["chatMessage"] == cell.edited and body["EditedAt"], frame
    else:
        assert body["DeletedAt"], frame


async def run_ws_role(
    cast: Cast, room: Room, role: str, cells: list[Cell], unknown: Unknown, lobby: int, soft: Soft
) -> None:
    """A role's websocket cells: through one v2 socket of the room, or, for a role the
    room refuses, the refusal before the upgrade and then frames from another room."""
    actor = room.people[role]
    read = read_status(room.visibility, role)
    if read == 200:
        async with v2_connect(cast.server, room.id, actor.token) as ws:
            for cell in cells:
                with soft.cell(cell.label):
                    await ws.send(json.dumps(frame_for(cell)))
                    check_ws_answer(await next_non_presence(ws), room, cell, unknown)
            with soft.cell(f"{room.visibility} {role}: the socket stays open"):
                pong = await ws.ping()
                await asyncio.wait_for(pong, TIMEOUT)
        return
    with soft.cell(f"{room.visibility} {role}: websocket refused before the upgrade"):
        refusal = await ws_refusal(cast.server, room.id, actor.token)
        assert refusal is not None, "the room's websocket opened"
        body = error_body(refusal, read)
        if read == 403:
            assert "banned" in body["message"].lower(), body
        else:
            never = await ws_refusal(cast.server, NEVER_USED, actor.token)
            assert never is not None
            Hidden(never).check(refusal, room.id)
    async with v2_connect(cast.server, lobby, actor.token) as ws:
        for cell in cells:
            with soft.cell(f"{cell.label}, from another room's socket"):
                await ws.send(json.dumps(frame_for(cell)))
                unknown.check_ws(await next_non_presence(ws), cell)


def allowed_events(cell: Cell) -> bool:
    """Does the cell change the message (and show the change to the room)? Over a socket
    from another room, nothing does."""
    if cell.transport == "ws" and read_status(cell.visibility, cell.role) != 200:
        return False
    return outcome(cell).allowed


async def watched_changes(watcher: ClientConnection) -> list[tuple[str, int]]:
    """(event, message ID) of every edit and delete the watcher saw, up to a sentinel."""
    sentinel = f"sentinel {uuid.uuid4().hex[:8]}"
    await watcher.send(json.dumps({"chatMessage": sentinel}))
    seen: list[tuple[str, int]] = []
    while True:
        frame = await next_non_presence(watcher)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == sentinel:
            return seen
        if frame["Event"] in ("edit", "delete"):
            seen.append((frame["Event"], frame["Body"]["ID"]))


async def check_history(cast: Cast, room: Room, cells: list[Cell], soft: Soft) -> None:
    res = await cast.call(cast.people["admin"], "GET", f"{API}/rooms/{room.id}/messages?limit=200")
    assert res.status_code == 200, res.text
    assert res.json()["hasMore"] is False
    shown = {m["ID"]: m for m in res.json()["messages"]}
    for cell in cells:
        with soft.cell(f"{cell.label}: the history"):
            got = shown.get(cell.message_id)
            changed = allowed_events(cell)
            if changed and cell.action == "delete":
                assert got is None, f"deleted, yet in the history: {got}"
                continue
            assert got is not None, "missing from the history"
            if changed:
                assert got["chatMessage"] == cell.edited and got.get("EditedAt"), got
            else:
                assert got["chatMessage"] == cell.original and "EditedAt" not in got, got


@pytest.mark.parametrize("visibility", VISIBILITIES)
async def test_edit_and_delete_by_role(cast: Cast, visibility: str) -> None:
    soft = Soft()
    cells = cells_of(visibility)
    # Every cell exists, once: roles x targets x actions x transports, minus those
    # without a message (a stranger's own in a private or direct room, an owner's
    # "owner's" message, which is their own).
    labels = Counter(c.label for c in cells)
    assert max(labels.values()) == 1, labels
    assert len(cells) == {"public": 108, "private": 104, "direct": 20}[visibility]
    room = await stage(cast, visibility, cells)
    admin = cast.people["admin"]
    lobby_body = await cast.ok(admin, "POST", f"{API}/create", {"name": "lobby"})
    lobby = int(lobby_body["chatRoom"]["ID"])
    unknown = await unknown_answers(cast, lobby)
    async with v2_connect(cast.server, room.id, admin.token) as watcher:
        for cell in cells:
            if cell.transport == "rest":
                with soft.cell(cell.label):
                    await run_rest(cast, room, cell, unknown)
        for role in roles_of(visibility):
            mine = [c for c in cells if c.transport == "ws" and c.role == role]
            await run_ws_role(cast, room, role, mine, unknown, lobby, soft)
        with soft.cell(f"{visibility}: the room saw exactly the allowed changes, in order"):
            # In the order they ran: the REST cells, then the websocket ones.
            ran = sorted(cells, key=lambda c: c.transport != "rest")
            want = [(c.action, c.message_id) for c in ran if allowed_events(c)]
            assert await watched_changes(watcher) == want
    await check_history(cast, room, cells, soft)
    soft.done()
