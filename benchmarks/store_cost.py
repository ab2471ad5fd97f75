"""CPU per message of the message store and of the broker's publish path, in isolation.

No server and no sockets: this process opens the database the way the server
does and calls the store's `store_batch` directly, then connects a broker and
publishes. It reports this process's CPU time (`time.process_time()`, every
thread) and the wall time per message, for batches of several sizes:

- store: `store_batch` of B messages spread over the rooms (as the writer's group
  commit hands them), with and without client message IDs (the web client sends
  them; the load generators do not). SQLite, and PostgreSQL with `--postgres`.
  PostgreSQL's own CPU is not in the figure (it is another process); the wall
  time shows the round trips.
- broker: what the publishing process spends on a batch of B stored messages:
  encode each envelope, publish them in one pipeline, and get them to its own
  connections: through the broker's echo, parsed back, on a tree whose
  `publish_many` has no `echo` flag; delivered at publish time, the echo skipped
  when it comes back, on one that has it. Redis with `--redis`.

Not run in CI. A before/after on one machine: run it on each tree, same run.

    python benchmarks/store_cost.py --postgres postgres://postgres@127.0.0.1/postgres \\
        --redis redis://127.0.0.1:6379/0
    python benchmarks/store_cost.py --source /tmp/before ...   # another tree's code
    python benchmarks/store_cost.py --no-hiredis ...           # redis-py's Python parser
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BATCHES = (1, 16, 64)
ROOMS, USERS = 100, 20
TEXT = "a chat message of an ordinary length, about sixty characters"


def pg_admin(admin_dsn: str, sql: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin_dsn, "-c", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextmanager
def database(kind: str, admin_dsn: str | None) -> Iterator[str]:
    """A fresh database URL: a SQLite file in a temporary directory, or a PostgreSQL
    database of its own, dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="store-cost-") as tmp:
            yield f"sqlite://{Path(tmp) / 'cost.sqlite3'}"
        return
    assert admin_dsn is not None
    name = f"chatroom_store_cost_{os.getpid()}"
    pg_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        pg_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measured(messages: int, cpu: float, wall: float) -> dict[str, float]:
    return {
        "messages": messages,
        "cpu_us_per_msg": round(cpu / messages * 1e6, 1),
        "wall_us_per_msg": round(wall / messages * 1e6, 1),
    }


async def store_cost(url: str, messages: int) -> dict[str, Any]:
    from chatroom_server.db import apply_migrations, close_database
    from chatroom_server.db.store import Draft, make_store
    from chatroom_server.domain import Identity
    from chatroom_server.services import rooms as room_service
    from chatroom_server.services.messages import plan_batch
    from chatroom_server.services.users import UserService
    from chatroom_server.web.internals import orm

    await apply_migrations(url)
    await orm.open_database(url)
    store = make_store(url, plan_batch)
    await store.open()
    results: dict[str, Any] = {}
    try:
        users_service = UserService(bcrypt_rounds=4)
        users = []
        for i in range(USERS):
            user = await users_service.signup(f"cost{i}", f"cost{i}@example.com", "password1")
            users.append(Identity(user.id, user.user_name, user.email, 2**31))
        rooms = [await room_service.create_room(f"cost room {r}") for r in range(ROOMS)]
        sent = 0

        async def run(batch: int, batches: int, client_ids: bool) -> None:
            nonlocal sent
            for _ in range(batches):
                drafts = []
                for _ in range(batch):
                    cid = uuid.uuid4().hex if client_ids else None
                    who = users[sent % USERS]
                    drafts.append(Draft(rooms[sent % ROOMS], who, TEXT, cid))
                    sent += 1
                for outcome in await store.store_batch(drafts):
                    assert isinstance(outcome, tuple) and not outcome[1], outcome

        for client_ids in (False, True):
            for batch in BATCHES:
                batches = max(messages // batch, 5)
                await run(batch, max(batches // 10, 2), client_ids)  # warm-up
                cpu, wall = time.process_time(), time.perf_counter()
                await run(batch, batches, client_ids)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                key = f"batch {batch}{', client IDs' if client_ids else ''}"
                results[key] = measured(batch * batches, cpu, wall)
    finally:
        await store.close()
        await close_database()
    return results


async def broker_cost(url: str, messages: int) -> dict[str, Any]:
    from chatroom_server import protocol
    from chatroom_server.domain import Message
    from chatroom_server.pubsub import make_broker

    heard = 0
    sentinel: asyncio.Future[None] | None = None
    token = ""

    def deliver(room_id: int, payload: str) -> None:
        # What the relay does with a payload: parse the envelope (then sequence it).
        nonlocal heard
        if payload == token and sentinel is not None and not sentinel.done():
            sentinel.set_result(None)
            return
        protocol.parse_bus(payload)
        heard += 1

    broker = make_broker(url, deliver, None, f"store-cost-{uuid.uuid4().hex}")
    await broker.connect()
    new_road = "echo" in inspect.signature(broker.publish_many).parameters
    results: dict[str, Any] = {"road": "deliver here, skip the echo" if new_road else "echo"}
    try:
        for room in range(1, ROOMS + 1):
            await broker.subscribe(room)
        now = datetime.now(UTC)
        next_id = 0

        async def run(batch: int, batches: int) -> None:
            nonlocal next_id, sentinel, token
            for _ in range(batches):
                items = []
                for _ in range(batch):
                    next_id += 1
                    room = next_id % ROOMS + 1
                    m = Message(next_id, room, "room", TEXT, 1, "someone", now, None, next_id)
                    frame = protocol.message_frame(m)
                    items.append((room, protocol.bus_message(m, frame)))
                if new_road:
                    await broker.publish_many(items, echo=False)
                else:
                    await broker.publish_many(items)
            # Everything published has come back (Redis keeps one connection's order).
            sentinel = asyncio.get_running_loop().create_future()
            token = f"sentinel {uuid.uuid4().hex}"
            await broker.publish(1, token)
            await asyncio.wait_for(sentinel, 30)

        for batch in BATCHES:
            batches = max(messages // batch, 5)
            await run(batch, max(batches // 10, 2))
            expected = heard + (0 if new_road else batch * batches)
            cpu, wall = time.process_time(), time.perf_counter()
            await run(batch, batches)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            assert heard == expected, (heard, expected)
            results[f"batch {batch}"] = measured(batch * batches, cpu, wall)
    finally:
        await broker.disconnect()
    return results


def hiredis_in_use() -> bool:
    from redis.utils import HIREDIS_AVAILABLE

    return bool(HIREDIS_AVAILABLE)


def without_hiredis(directory: Path) -> None:
    """A `hiredis` that fails to import, first on the path: redis-py parses in Python."""
    (directory / "hiredis.py").write_text("raise ImportError('hidden by store_cost.py')\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", metavar="ADMIN_DSN", help="also PostgreSQL, from here")
    parser.add_argument("--redis", metavar="URL", help="also the Redis broker, at this URL")
    parser.add_argument("--messages", type=int, default=3000, help="per measurement")
    parser.add_argument("--source", type=Path, help="measure the chatroom_server of this tree")
    parser.add_argument("--no-hiredis", action="store_true", help="redis-py's Python parser")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.source is not None or (args.no_hiredis and "STORE_COST_CHILD" not in os.environ):
        # Again, in a process whose path starts with the other tree (and the hidden hiredis).
        with tempfile.TemporaryDirectory(prefix="store-cost-path-") as tmp:
            paths = []
            if args.no_hiredis:
                without_hiredis(Path(tmp))
                paths.append(tmp)
            if args.source is not None:
                paths.append(str(args.source.resolve()))
            env = dict(os.environ, STORE_COST_CHILD="1")
            env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
            rest = [a for a in sys.argv[1:] if a != "--source" and a != str(args.source)]
            return subprocess.run([sys.executable, __file__, *rest], env=env).returncode

    import chatroom_server

    results: dict[str, Any] = {"code": str(Path(chatroom_server.__file__).parent.parent)}
    for kind in ("sqlite", "postgres"):
        if kind == "postgres" and not args.postgres:
            continue
        with database(kind, args.postgres) as url:
            results[f"store, {kind}"] = asyncio.run(store_cost(url, args.messages))
    if args.redis:
        results["hiredis"] = hiredis_in_use()
        results["broker, redis"] = asyncio.run(broker_cost(args.redis, args.messages))
    print(f"code: {results['code']}" + (f"  hiredis: {results['hiredis']}" if args.redis else ""))
    for section, figures in results.items():
        if not isinstance(figures, dict):
            continue
        print(f"{section}" + (f" ({figures['road']})" if "road" in figures else ""))
        for label, row in figures.items():
            if isinstance(row, dict):
                print(
                    f"  {label:24} {row['cpu_us_per_msg']:8.1f} us CPU/msg"
                    f"  {row['wall_us_per_msg']:8.1f} us wall/msg"
                )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
