"""Reading in one tab updates the others, on every host (SPEC 12).

Two real `serve` processes (the second with two workers) share PostgreSQL and Redis.
A user's marker moved through host A reaches their v2 sockets on host B (in any
room) as a `read` frame, once; their v1 socket on B and another user's socket hear
nothing; the marker and unread count are the same whichever host is asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from ..conftest import TIMEOUT, auth, recv_event, recv_json
from .conftest import ServeProcess
from .test_scaleout import create_room, pg_url, redis_url, signup, start_hosts, ws

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

V2 = "&v=2"


async def call(host: ServeProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        res = await http.request(method, f"/v1/api/chat{path}", json=body, headers=auth(token))
        assert res.status_code == 200, res.text
        return res.json()


async def echoed(sock: ClientConnection, text: str) -> list[dict[str, Any]]:
    """Send `text` (the sentinel); the `read` bodies that came before its echo."""
    await sock.send(json.dumps({"chatMessage": text}))
    reads: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(sock)
        if frame["Event"] == "message" and frame["Body"]["chatMessage"] == text:
            return reads
        if frame["Event"] == "read":
            reads.append(frame["Body"])


async def test_a_read_on_one_host_reaches_the_users_v2_sockets_on_another(
    tmp_path: Path, processes: list[ServeProcess], pg_url: str, redis_url: str
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), ("--workers", "2"))
    _, token = await signup(a.base, "reader")
    _, other_token = await signup(a.base, "writer")
    lobby = await create_room(a.base, other_token)
    side = await create_room(a.base, other_token)
    async with ws(a, lobby, other_token) as writer:
        await recv_event(writer, "join")
        for n in range(3):
            await writer.send(json.dumps({"chatMessage": f"news {n}"}))
        ids = [(await recv_event(writer, "message"))["Body"]["ID"] for _ in range(3)]
    rooms = {r["ID"]: r for r in (await call(b, token, "GET", "/rooms"))["chatRooms"]}
    assert (rooms[lobby]["unread"], rooms[lobby]["lastReadId"]) == (3, None)

    async with (
        ws(b, side, token, V2) as other_tab,
        ws(b, lobby, token, V2) as same_room,
        ws(b, lobby, other_token, V2) as stranger,
    ):
        # The user's first socket in each room, and the writer's: joined on B.
        for sock in (other_tab, same_room, stranger):
            await recv_event(sock, "join")
        async with ws(b, side, token) as legacy:
            # A second socket of the user in `side`: no join; its echo says it is in.
            assert await echoed(legacy, "v1 is here") == []

            body = await call(a, token, "POST", f"/rooms/{lobby}/read", {"lastReadId": ids[1]})
            assert body == {"chatRoomId": lobby, "lastReadId": ids[1], "unread": 1}
            want = {"chatRoomId": lobby, "lastReadId": ids[1]}
            for sock in (other_tab, same_room):
                assert (await recv_event(sock, "read"))["Body"] == want
            for sock in (other_tab, same_room):
                assert await echoed(sock, "once") == []
            # B applied the payload to all its sockets at once: these had it by now.
            assert await echoed(legacy, "nothing for v1") == []
            assert await echoed(stranger, "nothing for another user") == []

    # Every host (and both of B's workers) tells the same marker and count.
    for host in (a, b, b):
        rooms = {r["ID"]: r for r in (await call(host, token, "GET", "/rooms"))["chatRooms"]}
        got = await call(host, token, "GET", f"/rooms/{lobby}")
        assert got["chatRoom"] == rooms[lobby]
        # After the reader's own sentinel, only the writer's last one is unread.
        assert (rooms[lobby]["unread"], rooms[lobby]["lastReadId"]) == (1, ids[1])
