"""Baseline for the benchmarks: the minimal broadcast chat server, on `websockets`.

What a developer would write in an afternoon: no accounts, no storage, no limits.
Clients connect to /ws?room_id=N&jwt=... (the token is ignored); every text frame
is decoded, turned into the chatroom-server's message frame and broadcast to the
room, sender included. GET /healthz answers 200 so a runner can wait for it.

    python benchmarks/baselines/websockets_broadcast.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import http
import itertools
import json
import signal
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

rooms: dict[int, set[ServerConnection]] = {}
message_ids = itertools.count(1)


def room_of(path: str) -> int | None:
    split = urlsplit(path)
    if split.path != "/ws":
        return None
    values = parse_qs(split.query).get("room_id")
    if not values or not values[0].isdigit():
        return None
    return int(values[0])


def plain(status: http.HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path == "/healthz":
        return plain(http.HTTPStatus.OK, "ok\n")
    if room_of(request.path) is None:
        return plain(http.HTTPStatus.BAD_REQUEST, "expected /ws?room_id=N\n")
    return None  # go on with the websocket handshake


async def handler(connection: ServerConnection) -> None:
    room_id = room_of(connection.request.path if connection.request else "")
    if room_id is None:
        return
    room_name = f"room {room_id}"
    members = rooms.setdefault(room_id, set())
    members.add(connection)
    try:
        async for data in connection:
            if not isinstance(data, str):
                continue
            try:
                incoming = json.loads(data)
                text = incoming["chatMessage"]
            except (ValueError, KeyError, TypeError):
                continue
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            frame = json.dumps(
                {
                    "Type": 1,
                    "Event": "message",
                    "Body": {
                        "ID": next(message_ids),
                        "chatRoomId": room_id,
                        "chatRoomName": room_name,
                        "chatMessage": text,
                        "chatUser": "bench",
                        "chatUserId": 1,
                        "ChatMessageTs": now,
                    },
                },
                separators=(",", ":"),
            )
            broadcast(members, frame)
    finally:
        members.discard(connection)
        if not members:
            rooms.pop(room_id, None)


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        process_request=process_request,
        compression=None,
        max_size=65536,
    ):
        await stop  # SIGTERM: leaving the block closes the server and its connections


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
