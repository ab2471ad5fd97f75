"""Authenticated REST requests/s and websocket connects/s, for one or more source trees.

Built for the sessions change (issue 12): every REST call and websocket upgrade
now asks whether its token's session still stands, from a per-process cache.
This measures what that costs, old tree and new tree alternating in one run:

- REST: `wrk` (Debian's package), 1 thread, 50 connections, with a Bearer token,
  for --seconds: GET /v1/api/chat/rooms (one room), then GET .../presence (whose
  own work is unchanged, so the token and session check is what differs);
- connects: a Python websockets client opening --connects sockets to one room, 50 at
  a time, each closed right after its handshake; connects/s over the whole batch.

The server is pinned to CPU 0 and the load to CPU 1, on a fresh SQLite database.

    python benchmarks/auth_paths.py --tree old=/work/wt-base --tree new=. --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tree: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CHATROOM_BCRYPT_ROUNDS": "4", "CHATROOM_LOG_LEVEL": "WARNING"}
    # Limits of later versions would refuse a benchmark's flood of connects and calls.
    env.update(CHATROOM_USER_CONNECTIONS="100000", CHATROOM_IP_CONNECTIONS="100000")
    proc = subprocess.Popen(
        [
            "taskset", "-c", "0",
            str(tree / ".venv/bin/python"), "-m", "chatroom_server", "serve",
            "--port", str(port),
            "--database-url", f"sqlite://{workdir / 'bench.sqlite3'}",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{tree}: the server did not start")


def prepare(base: str) -> tuple[str, int]:
    res = httpx.post(
        f"{base}/v1/api/auth/signup",
        json={"user_name": "bench", "email": "bench@example.com", "password": "password1"},
    )
    token = res.json()["token"]
    room = httpx.post(
        f"{base}/v1/api/chat/create",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["chatRoom"]["ID"]
    return token, int(room)


def rest_rate(base: str, token: str, seconds: int, path: str = "/v1/api/chat/rooms") -> float:
    out = subprocess.run(
        [
            "taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s",
            "-H", f"Authorization: Bearer {token}", f"{base}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def connect_rate(base: str, token: str, room: int, count: int) -> float:
    url = base.replace("http://", "ws://") + f"/v1/ws?room_id={room}&jwt={token}"
    gate = asyncio.Semaphore(50)

    async def one() -> None:
        async with gate, connect(url, compression=None, open_timeout=30):
            pass

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


def measure(tree: Path, seconds: int, connects: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(tree, Path(tmp))
        try:
            token, room = prepare(base)
            rest_rate(base, token, 2)  # warm up
            rest = rest_rate(base, token, seconds)
            # An endpoint whose own work did not change: the token and session check show.
            presence = rest_rate(base, token, seconds, f"/v1/api/chat/rooms/{room}/presence")
            os.sched_setaffinity(0, {1})
            conn = asyncio.run(connect_rate(base, token, room, connects))
            return {"rest_per_s": rest, "presence_per_s": presence, "connects_per_s": conn}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="label=path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connects", type=int, default=2000)
    args = parser.parse_args()
    trees = [(label, Path(path).resolve()) for label, path in (t.split("=", 1) for t in args.tree)]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
    for round_no in range(args.rounds):
        for label, tree in trees:  # alternating: drift on a shared machine hits both
            figures = measure(tree, args.seconds, args.connects)
            results[label].append(figures)
            print(f"round {round_no + 1} {label}: {json.dumps(figures)}", flush=True)
    for label, runs in results.items():
        rest = statistics.median(r["rest_per_s"] for r in runs)
        presence = statistics.median(r["presence_per_s"] for r in runs)
        conn = statistics.median(r["connects_per_s"] for r in runs)
        print(
            f"{label}: median rooms list {rest:.0f} requests/s, presence {presence:.0f}"
            f" requests/s, connects {conn:.0f}/s"
        )


if __name__ == "__main__":
    main()
