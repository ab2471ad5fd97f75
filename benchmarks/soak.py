"""Soak test (not run in CI): many clients join, leave and send for minutes.

Starts `chatroom-server serve` on a free port with a fresh SQLite database, then
runs waves of clients that connect to random rooms, send a few messages, check
that each of their messages came back, and leave. At the end it checks that no
confirmed message is missing from the database, that the server holds no
connection any more (/metrics), and that its memory did not grow past a bound.

    python benchmarks/soak.py --minutes 3 --clients 40 --rooms 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        for _ in range(300):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise SystemExit("the server did not start")


async def client_life(base: str, port: int, token: str, room: int, sends: int) -> list[int]:
    confirmed = []
    async with connect(f"ws://127.0.0.1:{port}/v1/ws?room_id={room}&jwt={token}") as ws:
        for i in range(sends):
            cid = f"{random.getrandbits(64):x}"
            await ws.send(json.dumps({"chatMessage": f"soak {i}", "clientMessageId": cid}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["Event"] == "message" and frame["Body"].get("clientMessageId") == cid:
                    confirmed.append(frame["Body"]["ID"])
                    break
            await asyncio.sleep(random.uniform(0.05, 0.3))
    return confirmed


async def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="chatroom-soak-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHATROOM_BCRYPT_ROUNDS": "4", "CHATROOM_WS_RATE": "50"}
    # One address, many clients: lift the per-address and per-user limits.
    env.update(
        CHATROOM_SIGNUP_IP_RATE="1000000",
        CHATROOM_ROOM_CREATE_RATE="1000000",
        CHATROOM_IP_CONNECTIONS="1000000",
        CHATROOM_USER_CONNECTIONS="1000000",
    )
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before any client)
        [sys.executable, "-m", "chatroom_server", "serve", "--port", str(port),
         "--database-url", f"sqlite://{work / 'soak.sqlite3'}", "--log-level", "WARNING"],
        env=env, cwd=work,
    )  # fmt: skip
    try:
        await wait_ready(base)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            tokens = []
            for i in range(args.clients):
                res = await http.post(
                    "/v1/api/auth/signup",
                    json={
                        "user_name": f"s{i}",
                        "email": f"s{i}@example.com",
                        "password": "password1",
                    },
                )
                res.raise_for_status()
                tokens.append(res.json()["token"])
            rooms = []
            for r in range(args.rooms):
                res = await http.post(
                    "/v1/api/chat/create",
                    json={"name": f"soak {r}"},
                    headers={"Authorization": f"Bearer {tokens[0]}"},
                )
                rooms.append(res.json()["chatRoom"]["ID"])
            # Warm up until steady: Sanic keeps each closed connection's protocol object
            # until its next timeout check (up to 30 s later), so the resident set first
            # climbs to a plateau set by connections per second; measure from there.
            warm_until = time.monotonic() + args.warmup_seconds
            while time.monotonic() < warm_until:
                await asyncio.gather(
                    *(client_life(base, port, t, random.choice(rooms), 2) for t in tokens)
                )
            rss_start = rss_kib(server.pid)
            deadline = time.monotonic() + args.minutes * 60
            confirmed: list[int] = []
            waves = 0
            while time.monotonic() < deadline:
                lives = [
                    client_life(base, port, t, random.choice(rooms), random.randint(1, 5))
                    for t in tokens
                ]
                for got in await asyncio.gather(*lives):
                    confirmed.extend(got)
                waves += 1
            rss_end = rss_kib(server.pid)
            stored: set[int] = set()
            for room in rooms:
                after = 0
                while True:
                    res = await http.get(
                        f"/v1/api/chat/rooms/{room}/messages",
                        params={"after": after, "limit": 200},
                        headers={"Authorization": f"Bearer {tokens[0]}"},
                    )
                    page = res.json()
                    stored.update(m["ID"] for m in page["messages"])
                    if not page["hasMore"]:
                        break
                    after = page["messages"][-1]["ID"]
            metrics = (await http.get("/metrics")).text
            found = re.search(r"\nchatroom_connections (\S+)", metrics)
            if found is None:
                raise SystemExit("/metrics has no chatroom_connections line")
            open_conns = float(found.group(1))
        missing = set(confirmed) - stored
        growth = rss_end - rss_start
        print(f"waves={waves} clients/wave={args.clients} rooms={args.rooms}")
        print(f"confirmed messages={len(confirmed)} missing={len(missing)}")
        print(f"open connections at end={open_conns:.0f}")
        print(f"server RSS: start={rss_start} KiB end={rss_end} KiB growth={growth} KiB")
        ok = not missing and open_conns == 0 and growth <= args.max_growth_kib
        print("soak: PASS" if ok else "soak: FAIL")
        return 0 if ok else 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--rooms", type=int, default=8)
    parser.add_argument("--max-growth-kib", type=int, default=20_000)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
