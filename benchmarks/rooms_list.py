"""Listing thousands of rooms must not stall delivery in other rooms (not run in CI).

Starts `chatroom-server serve` on a free port with a fresh SQLite database (pinned
to CPU 0 when `taskset` is there, the clients to CPU 1), creates 5,000 rooms, then
measures, for `--seconds` each:

- alone: one client sends a message every 50 ms in a room of its own and times the
  echo of each (send to its own `message` frame back);
- unpaginated: the same while a second client, in a process of its own, lists all
  5,000 rooms back to back (`GET /v1/api/chat/rooms`);
- pages of 100: the same while the lister walks the list 100 at a time
  (`?limit=100&after=ID`); skipped on a server without pagination.

It prints the echo latency (p50, p99, max) of each phase and how many lists (or
pages) per second the lister got.

With `--messages N`, every room gets N rows written straight into the database
before the phases (most of them the sender's messages; in the first quarter every
5th the lister's own; every 7th an edit row; every 11th message deleted) and the
lister a read marker halfway through each room (`--read-to-end`: at its end): what
the list's unread counts read (schema 0006; a server without them lists the same
rooms without reading any of it).
With `--postgres ADMIN_DSN` the server runs on a PostgreSQL database of its own,
created there and dropped afterwards, instead of SQLite.

    python benchmarks/rooms_list.py                     # this tree's server
    python benchmarks/rooms_list.py --source /tmp/main  # another tree's, for a before/after
    python benchmarks/rooms_list.py --rooms 1000 --messages 20 \
        --postgres postgres://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOMS_PATH = "/v1/api/chat/rooms"
SEND_EVERY = 0.05  # seconds between the sender's messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        return ["taskset", "-c", str(cpu), *command]
    return command


def pin_self(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        for _ in range(300):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not start")


async def signup(http: httpx.AsyncClient, name: str) -> tuple[int, str]:
    res = await http.post(
        "/v1/api/auth/signup",
        json={"user_name": name, "email": f"{name}@example.com", "password": "password1"},
    )
    res.raise_for_status()
    return int(res.json()["user"]["ID"]), str(res.json()["token"])


async def create_rooms(http: httpx.AsyncClient, token: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[int] = []

    async def worker(names: range) -> None:
        for n in names:
            res = await http.post(
                "/v1/api/chat/create", json={"name": f"room {n}"}, headers=headers
            )
            res.raise_for_status()
            ids.append(int(res.json()["chatRoom"]["ID"]))

    workers = 16
    await asyncio.gather(*(worker(range(w, count, workers)) for w in range(workers)))
    return sorted(ids)


# --------------------------------------------------------------------------- seeding

SEED_TIME = "2024-01-01 00:00:00.000000+00:00"


def seed_rows(
    rooms: list[int], per_room: int, sender: int, lister: int
) -> tuple[list[tuple[Any, ...]], list[tuple[int, int]]]:
    """Message rows (room, user, name, kind, deleted, seq) and each room's last seq."""
    rows: list[tuple[Any, ...]] = []
    for room in rooms:
        for seq in range(1, per_room + 1):
            # The lister's own messages come before their marker (halfway).
            mine = seq % 5 == 0 and seq <= per_room // 4
            user, name = (lister, "lister") if mine else (sender, "sender")
            kind = 1 if seq % 7 == 0 else 0
            deleted = SEED_TIME if seq % 11 == 0 and kind == 0 else None
            rows.append((room, user, name, kind, deleted, seq))
    return rows, [(per_room, room) for room in rooms]


INSERT_MESSAGE = (
    "INSERT INTO messages (room_id, user_id, user_name, text, created_at, kind, deleted_at, seq)"
    " VALUES ({p[0]}, {p[1]}, {p[2]}, 'seeded', {now}, {p[3]}, {deleted}, {p[4]})"
)
MARKERS = (
    "INSERT INTO read_markers (user_id, room_id, last_read_id, last_read_seq, updated_at)"
    " SELECT {lister}, room_id, id, seq, {now} FROM messages WHERE seq = {half}"
)


async def seed(
    database: str,
    rooms: list[int],
    per_room: int,
    sender: int,
    lister: int,
    read_to_end: bool = False,
) -> None:
    rows, last = seed_rows(rooms, per_room, sender, lister)
    half = per_room if read_to_end else max(1, per_room // 2)
    if database.startswith("sqlite://"):
        import sqlite3

        conn = sqlite3.connect(database.removeprefix("sqlite://"), timeout=30)
        try:
            p = ["?"] * 5
            sql = INSERT_MESSAGE.format(p=p, now="?", deleted="?")
            conn.executemany(sql, [(r, u, n, SEED_TIME, k, d, s) for r, u, n, k, d, s in rows])
            conn.executemany("UPDATE rooms SET last_seq = ? WHERE id = ?", last)
            conn.execute(MARKERS.format(lister=lister, now=f"'{SEED_TIME}'", half=half))
            conn.commit()
            conn.execute("ANALYZE")
        finally:
            conn.close()
        return
    pg = await _asyncpg().connect(database)
    try:
        sql = INSERT_MESSAGE.format(
            p=["$1", "$2", "$3", "$4", "$6"], now="now()", deleted="$5::timestamptz"
        )
        await pg.executemany(
            sql,
            [(r, u, n, k, None if d is None else time_of(d), s) for r, u, n, k, d, s in rows],
        )
        await pg.executemany("UPDATE rooms SET last_seq = $1 WHERE id = $2", last)
        await pg.execute(MARKERS.format(lister=lister, now="now()", half=half))
        await pg.execute("ANALYZE")
    finally:
        await pg.close()


def _asyncpg() -> Any:
    import asyncpg  # type: ignore[import-untyped]  # only with --postgres

    return asyncpg


def time_of(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


async def pg_admin(dsn: str, sql: str) -> None:
    conn = await _asyncpg().connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def probe_room(res: httpx.Response) -> str:
    room = res.json()["chatRooms"][0]
    if "unread" not in room:
        return "no unread count (a server before read markers)"
    return f"unread {room['unread']}, lastReadId {room['lastReadId']}"


# --------------------------------------------------------------------------- the lister


def lister_main(base: str, token: str, mode: str, seconds: float, out: Any) -> None:
    """In a process of its own, so that reading 5,000 rooms costs the sender nothing."""
    pin_self(1)
    out.send(asyncio.run(_list_loop(base, token, mode, seconds)))


async def _list_loop(base: str, token: str, mode: str, seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    times: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        deadline = time.monotonic() + seconds
        after: int | None = None
        while time.monotonic() < deadline:
            params = {} if mode == "all" else {"limit": 100, **({"after": after} if after else {})}
            start = time.perf_counter()
            res = await http.get(ROOMS_PATH, params=params)
            times.append(time.perf_counter() - start)
            res.raise_for_status()
            if mode == "pages":
                after = res.json()["nextAfter"]  # None at the end: start over
    return {"requests": len(times), "request_p50_ms": 1000 * statistics.median(times)}


# --------------------------------------------------------------------------- the sender


async def echo_latencies(port: int, token: str, room: int, seconds: float) -> list[float]:
    url = f"ws://127.0.0.1:{port}/v1/ws?room_id={room}&jwt={token}"
    sent: dict[str, float] = {}
    latencies: list[float] = []
    async with connect(url, max_size=None) as ws:

        async def receive() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                cid = frame["Body"].get("clientMessageId") if frame["Event"] == "message" else None
                if cid in sent:
                    latencies.append(time.perf_counter() - sent.pop(cid))

        reader = asyncio.create_task(receive())
        deadline = time.monotonic() + seconds
        n = 0
        next_send = time.perf_counter()
        while time.monotonic() < deadline:
            cid = f"m{n}"
            sent[cid] = time.perf_counter()
            await ws.send(json.dumps({"chatMessage": f"tick {n}", "clientMessageId": cid}))
            n += 1
            next_send += SEND_EVERY
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
        for _ in range(100):  # the last echoes: up to 5 s
            if not sent:
                break
            await asyncio.sleep(0.05)
        reader.cancel()
    if sent:
        print(f"  warning: {len(sent)} of {n} messages never came back")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    name: str, base: str, port: int, tokens: dict[str, str], room: int, seconds: float
) -> dict[str, Any]:
    lister = None
    receiver = None
    if name != "alone":
        receiver, sender_end = multiprocessing.Pipe(duplex=False)
        mode = "all" if name == "unpaginated" else "pages"
        lister = multiprocessing.get_context("spawn").Process(
            target=lister_main, args=(base, tokens["lister"], mode, seconds + 1, sender_end)
        )
        lister.start()
        await asyncio.sleep(1.0)  # the lister is up and listing before the clock starts
    latencies = await echo_latencies(port, tokens["sender"], room, seconds)
    result: dict[str, Any] = {
        "phase": name,
        "messages": len(latencies),
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
    }
    if lister is not None and receiver is not None:
        lister.join(timeout=60)
        result.update(receiver.recv())
        result["requests_per_s"] = result["requests"] / (seconds + 1)
    return result


async def main(args: argparse.Namespace) -> int:
    pin_self(1)
    work = Path(tempfile.mkdtemp(prefix="chatroom-rooms-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CHATROOM_BCRYPT_ROUNDS": "4",
        "CHATROOM_WS_RATE": "1000",
        "CHATROOM_WS_BURST": "1000",
        # Limits a later version has; unknown variables are ignored by older ones.
        "CHATROOM_ROOM_CREATE_RATE": "1000000",
        "CHATROOM_SIGNUP_IP_RATE": "1000000",
    }
    if args.source:
        env["PYTHONPATH"] = str(args.source.resolve())
    database = f"sqlite://{work / 'rooms.sqlite3'}"
    pg_name = None
    if args.postgres:
        pg_name = f"chatroom_bench_{uuid.uuid4().hex[:10]}"
        await pg_admin(args.postgres, f'CREATE DATABASE "{pg_name}"')
        database = f"{args.postgres.rsplit('/', 1)[0]}/{pg_name}"
    command = [sys.executable, "-m", "chatroom_server", "serve", "--port", str(port),
               "--database-url", database, "--log-level", "WARNING"]  # fmt: skip
    server = subprocess.Popen(pinned(0, command), env=env, cwd=work)  # noqa: ASYNC220
    try:
        await wait_ready(base)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            users = {name: await signup(http, name) for name in ("sender", "lister")}
            tokens = {name: token for name, (_, token) in users.items()}
            started = time.monotonic()
            rooms = await create_rooms(http, tokens["lister"], args.rooms)
            print(f"{len(rooms)} rooms created in {time.monotonic() - started:.1f} s")
            if args.messages:
                await seed(
                    database,
                    rooms,
                    args.messages,
                    users["sender"][0],
                    users["lister"][0],
                    args.read_to_end,
                )
                print(f"{args.messages} rows a room and a marker for the lister, written")
            first = probe_room(
                await http.get(
                    ROOMS_PATH,
                    params={"limit": 1},
                    headers={"Authorization": f"Bearer {tokens['lister']}"},
                )
            )
            print(f"the lister's first room: {first}")
            probe = await http.get(
                ROOMS_PATH,
                params={"limit": 100},
                headers={"Authorization": f"Bearer {tokens['lister']}"},
            )
            paginated = "nextAfter" in probe.json()
        phases = ["alone", "unpaginated", "alone"] + (["pages"] if paginated else [])
        if not paginated:
            print("this server has no pagination: the pages phase is skipped")
        results = []
        for name in phases:
            result = await phase(name, base, port, tokens, rooms[0], args.seconds)
            results.append(result)
            extra = ""
            if "requests" in result:
                extra = (
                    f", lister {result['requests_per_s']:.1f} req/s"
                    f" (p50 {result['request_p50_ms']:.1f} ms each)"
                )
            print(
                f"{name:12} echo p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms,"
                f" max {result['max_ms']:.1f} ms over {result['messages']} messages{extra}"
            )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        if pg_name is not None:
            await pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--source", type=Path, help="run the server from this source tree")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--messages", type=int, default=0, help="rows written into every room (and a marker)"
    )
    parser.add_argument(
        "--read-to-end",
        action="store_true",
        help="with --messages: the lister's markers at each room's end, not halfway",
    )
    parser.add_argument(
        "--postgres", metavar="ADMIN_DSN", help="serve from a new PostgreSQL database there"
    )
    raise SystemExit(asyncio.run(main(parser.parse_args())))
