"""Benchmarks: chatroom-server against a minimal `websockets` broadcast server, side by side.

Every scenario runs against both targets, each started fresh for it, the server
pinned to CPU 0 and the load generator (benchmarks/loadgen) to CPU 1: fanout.c, a
compiled receiver built here with `cc` when missing or stale, for throughput, latency
and growth; loadgen.mjs (Node) for rooms and idle.

- throughput: one room, 1000 receivers, one sender keeping 50 messages in flight;
- latency: one room, 1000 receivers, the sender at a fixed 20 messages/s;
- rooms: 100 rooms x 10 clients, each sending 2 messages/s;
- idle: 5000 open connections: memory per connection and connects/s;
- growth: throughput with 100, 1000 and 5000 receivers;
- storm: 5000 clients in 100 rooms, the server restarted (SIGTERM, started again on
  the same port and database) while 10 of them send; every client reconnects at once
  with its `since` cursor. Time until all are connected and caught up, connects/s,
  and a check that every client saw every message of its room once, in order.

Writes results.json (raw numbers, machine), results.md (the table, printed at the
end), fanout.png (growth) and configs.png (p99 per configuration) into --out.

    .venv/bin/python benchmarks/run.py                 # everything, 10 s windows
    .venv/bin/python benchmarks/run.py --quick         # smoke run
    .venv/bin/python benchmarks/run.py --only throughput,idle --targets chatroom
    .venv/bin/python benchmarks/run.py --config sqlite,postgres,redis,postgres+redis

`--config` runs the chatroom server on each configuration in turn, beside the same
run's baseline: `sqlite` (the default), `postgres`, `redis` (SQLite + Redis) and
`postgres+redis`. For PostgreSQL each scenario gets a database of its own, created
through --postgres-admin and dropped after; for Redis, a key prefix of its own on
--redis (127.0.0.1:6379), whose keys are deleted after. `--tiny` shrinks every
scenario (tests use it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN_DIR = HERE / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen.mjs"
FANOUT_SRC = LOADGEN_DIR / "fanout.c"
FANOUT = LOADGEN_DIR / "fanout"
FANOUT_MODES = ("throughput", "rate")  # loadgen modes run by fanout.c, the rest by loadgen.mjs
FANOUT_SCENARIOS = ("throughput", "latency", "growth")
BASELINE = HERE / "baselines" / "websockets_broadcast.py"
VENV_BIN = Path(sys.prefix) / "bin"

SERVER_CPU = "0"
LOADGEN_CPU = "1"

SCENARIOS = ("throughput", "latency", "rooms", "idle", "growth", "storm")
TARGETS = ("baseline", "chatroom")
# Where the chatroom server stores and how its processes talk: SQLite or PostgreSQL,
# with or without Redis.
CONFIGS = ("sqlite", "postgres", "redis", "postgres+redis")
CONFIG_LABELS = {
    "sqlite": "SQLite",
    "postgres": "PostgreSQL",
    "redis": "SQLite + Redis",
    "postgres+redis": "PostgreSQL + Redis",
}
WINDOW = 50
LATENCY_RATE = 20.0
ROOM_RATE = 2.0
STORM_RATE = 5.0  # messages/s of each storm sender


@dataclass(frozen=True)
class Sizes:
    receivers: int = 1000  # throughput and latency: one room
    rooms: int = 100
    clients_per_room: int = 10
    idle: int = 5000
    growth: tuple[int, ...] = (100, 1000, 5000)
    storm_clients: int = 5000
    storm_rooms: int = 100
    storm_senders: int = 10
    users: int = 50  # signed up in every chatroom server; the clients take their tokens in turn


# --tiny: every scenario small enough for a smoke test.
TINY = Sizes(
    receivers=20,
    rooms=5,
    clients_per_room=2,
    idle=100,
    growth=(10, 20, 50),
    storm_clients=200,
    storm_rooms=10,
    storm_senders=3,
    users=5,
)
SIZES = Sizes()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for pid {pid}")


def process_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks() -> int:
    """Busy time of all CPUs (user, nice, system, irq, softirq, steal), in clock ticks."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return user + nice + system + irq + softirq + steal


@dataclass
class CpuSample:
    at: float
    server: int
    machine: int

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        return cls(time.monotonic(), process_ticks(pid), machine_busy_ticks())


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (bounded) until the machine is idle: other work would skew the numbers.

    Idle means: two half-second samples in a row with less than `threshold` cores busy.
    Returns the seconds waited (max_wait if it never got quiet).
    """
    if max_wait <= 0:
        return 0.0
    started = time.monotonic()
    calm = 0
    while calm < 2:
        waited = time.monotonic() - started
        if waited >= max_wait:
            log(f"the machine is still busy after {max_wait:.0f} s: measuring anyway")
            return round(waited, 1)
        before = machine_busy_ticks()
        time.sleep(0.5)  # the sample's length, not a wait for an event
        busy = (machine_busy_ticks() - before) / CLK_TCK / 0.5
        calm = calm + 1 if busy < threshold else 0
    return round(time.monotonic() - started, 1)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------- servers


def kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class Backends:
    """What one chatroom server is started on: its database, and Redis or not."""

    config: str = "sqlite"
    database_url: str = ""
    redis_url: str | None = None
    redis_prefix: str | None = None


@dataclass
class Server:
    target: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    backends: Backends = field(default_factory=Backends)
    tokens: list[str] = field(default_factory=lambda: ["bench"])
    rooms: list[int] = field(default_factory=list)
    restarts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def workdir(self) -> Path:
        return self.log_path.parent

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.target} server exited with {code}; log {self.log_path}:\n" + self.log_tail()
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base, timeout=2) as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.05)  # polling /healthz: the server is not listening yet
        raise RuntimeError(f"{self.target} server did not answer /healthz in {timeout:.0f} s")

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL the process group if it does not exit in 30 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{self.target} server ignored SIGTERM for 30 s: killing it")
                kill_group(self.proc)
        return self.proc.returncode

    def restart(self) -> dict[str, float | int | None]:
        """SIGTERM, wait for the exit, start again on the same port, database and Redis
        prefix; wait until it answers. Returns how long each step took."""
        started = time.monotonic()
        code = self.stop()
        stopped = time.monotonic()
        self.restarts += 1
        fresh = spawn_server(
            self.target,
            self.workdir,
            self.backends,
            port=self.port,
            log_name=f"server-{self.restarts + 1}.log",
        )
        self.proc, self.log_path = fresh.proc, fresh.log_path
        self.wait_ready()
        return {
            "exit_code": code,
            "stop_s": round(stopped - started, 3),
            "start_s": round(time.monotonic() - stopped, 3),
        }


# Set from the command line: where PostgreSQL databases are created (an admin DSN) and
# the Redis the server uses with the redis configurations.
POSTGRES_ADMIN = "postgres://postgres@127.0.0.1/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def pg_admin(sql: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", POSTGRES_ADMIN, "-c", sql],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PGOPTIONS": "--client-min-messages=warning"},  # no NOTICE lines
    )


def redis_delete_prefix(prefix: str) -> int:
    """Delete every key of this prefix (`prefix:*`) from --redis; the count deleted."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


def scoped_name(workdir: Path) -> str:
    """A name for this run's scenario, for a database or a key prefix."""
    return f"chatroom_bench_{os.getpid()}_{re.sub(r'[^a-z0-9]+', '_', workdir.name.lower())}"


@contextlib.contextmanager
def chatroom_backends(workdir: Path, config: str) -> Iterator[Backends]:
    """The chatroom server's backends for one scenario: a SQLite file in its work
    directory or a PostgreSQL database of its own (dropped after), and with the redis
    configurations a Redis key prefix of its own (its keys deleted after)."""
    name = scoped_name(workdir)
    with contextlib.ExitStack() as stack:
        if config.startswith("postgres"):
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg_admin(f'CREATE DATABASE "{name}"')
            stack.callback(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            database_url = f"{POSTGRES_ADMIN.rsplit('/', 1)[0]}/{name}"
        else:
            database_url = f"sqlite://{workdir / 'bench.sqlite3'}"
        redis_url = prefix = None
        if config.endswith("redis"):
            redis_url, prefix = REDIS_URL, name
            redis_delete_prefix(prefix)
            stack.callback(redis_delete_prefix, prefix)
        yield Backends(config, database_url, redis_url, prefix)


def spawn_server(
    target: str,
    workdir: Path,
    backends: Backends | None = None,
    port: int | None = None,
    log_name: str = "server.log",
) -> Server:
    port = port or free_port()
    backends = backends or Backends()
    log_path = workdir / log_name
    env = dict(os.environ)
    if target == "baseline":
        command = [sys.executable, str(BASELINE), "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [
            str(VENV_BIN / "chatroom-server"), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--database-url", backends.database_url,
        ]  # fmt: skip
        if backends.redis_url is not None:
            command += ["--redis-url", backends.redis_url]
            env["CHATROOM_REDIS_PREFIX"] = str(backends.redis_prefix)
        env.update(
            CHATROOM_BCRYPT_ROUNDS="4",
            CHATROOM_WS_RATE="100000",
            CHATROOM_WS_BURST="100000",
            # The load comes from one address and a few users: lift the abuse limits.
            CHATROOM_USER_RATE="1000000",
            CHATROOM_USER_BURST="1000000",
            CHATROOM_USER_CONNECTIONS="1000000",
            CHATROOM_IP_CONNECTIONS="1000000",
            CHATROOM_SIGNUP_IP_RATE="1000000",
            CHATROOM_ROOM_CREATE_RATE="1000000",
            CHATROOM_LOGIN_IP_RATE="1000000",
        )
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group, killed whole on error
        )
    return Server(target, proc, port, log_path, backends)


def setup_chatroom(server: Server, rooms: int) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        tokens = []
        for i in range(SIZES.users):
            res = http.post(
                "/v1/api/auth/signup",
                json={
                    "user_name": f"bench{i}",
                    "email": f"bench{i}@example.com",
                    "password": "bench-password",
                },
            )
            res.raise_for_status()
            tokens.append(str(res.json()["token"]))
        ids = []
        for r in range(rooms):
            res = http.post(
                "/v1/api/chat/create",
                json={"name": f"bench room {r + 1}"},
                headers={"Authorization": f"Bearer {tokens[0]}"},
            )
            res.raise_for_status()
            ids.append(int(res.json()["chatRoom"]["ID"]))
    server.tokens = tokens
    server.rooms = ids


@contextlib.contextmanager
def running_server(
    target: str, workdir: Path, rooms: int, config: str = "sqlite"
) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    if target == "baseline":
        with _running_server(target, workdir, rooms, Backends()) as server:
            yield server
        return
    with chatroom_backends(workdir, config) as backends:
        with _running_server(target, workdir, rooms, backends) as server:
            yield server


@contextlib.contextmanager
def _running_server(target: str, workdir: Path, rooms: int, backends: Backends) -> Iterator[Server]:
    server = spawn_server(target, workdir, backends)
    try:
        server.wait_ready()
        if target == "chatroom":
            setup_chatroom(server, rooms)
        else:
            server.rooms = list(range(1, rooms + 1))
        yield server
    except BaseException:
        kill_group(server.proc)
        raise
    finally:
        server.stop()


def chatroom_connections(server: Server) -> float | None:
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    found = re.search(r"^chatroom_connections (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_registered(server: Server, connected: int, timeout: float = 30.0) -> float | None:
    """The hub registers a socket just after its handshake: wait until all are in.
    Returns the count the server reports (None for the baseline, which has none)."""
    if server.target != "chatroom":
        return None
    settled = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settled = chatroom_connections(server)
        if settled is not None and settled >= connected:
            break
        time.sleep(0.05)  # polling /metrics
    return settled


# --------------------------------------------------------------------------- the load generator


Handler = Callable[[dict[str, Any], IO[str]], dict[str, Any]]


@dataclass
class LoadgenRun:
    result: dict[str, Any]
    start: CpuSample | None = None
    end: CpuSample | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_fanout() -> None:
    """Compile fanout.c into benchmarks/loadgen/fanout if it is missing or older."""
    if FANOUT.exists() and FANOUT.stat().st_mtime >= FANOUT_SRC.stat().st_mtime:
        return
    cc = shutil.which("cc")
    if cc is None:
        raise SystemExit(
            f"no C compiler: `cc` is not on PATH, and {FANOUT_SRC.name} must be built for the "
            "throughput, latency and growth scenarios (install gcc or clang, or pass "
            "--only rooms,idle)"
        )
    partial = FANOUT.with_name(f".{FANOUT.name}.{os.getpid()}")
    command = [cc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(FANOUT_SRC)]
    log(f"building {FANOUT}: {' '.join(command)}")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"building {FANOUT_SRC} failed:\n{done.stdout}{done.stderr}")
    partial.replace(FANOUT)


def loadgen_tool(mode: str) -> str:
    return FANOUT_SRC.name if mode in FANOUT_MODES else LOADGEN.name


def fanout_command(config: dict[str, Any], server: Server) -> list[str]:
    """fanout's flags for a loadgen.mjs config (throughput and rate modes)."""
    url = urlsplit(str(config["url"]))
    tokens = server.workdir / "loadgen-tokens.txt"
    tokens.write_text("".join(f"{token}\n" for token in config["tokens"]))
    rooms = config.get("rooms") or [1]
    flags: dict[str, Any] = {
        "mode": config["mode"],
        "host": url.hostname or "127.0.0.1",
        "port": url.port,
        "path": url.path or "/",
        "room": rooms[0],
        "receivers": config["receivers"],
        "warmup": config["warmup"],
        "duration": config["duration"],
        "drain-timeout": config["drain_timeout"],
        "close-timeout": config.get("close_timeout", 10),
        "connect-concurrency": config["connect_concurrency"],
        "tokens-file": tokens,
    }
    if config["mode"] == "throughput":
        flags["window"] = config["window"]
    else:
        flags["rate"] = config["rate"]
    return [str(FANOUT), *(arg for k, v in flags.items() for arg in (f"--{k}", str(v)))]


def run_loadgen(
    config: dict[str, Any],
    server: Server,
    timeout: float,
    on_connected: Handler | None = None,
    handlers: dict[str, Handler] | None = None,
) -> LoadgenRun:
    """Run the load generator pinned to CPU 1; sample the server's CPU at its window's edges.

    fanout (compiled) for the throughput and rate modes, loadgen.mjs for the others.
    `handlers` answer the load generator's other events (it waits for a line on its
    stdin); what they return goes into the record.
    """
    handlers = dict(handlers or {})
    if on_connected is not None:
        handlers["connected"] = on_connected
    if config["mode"] in FANOUT_MODES:
        command = fanout_command(config, server)
    else:
        command = ["node", str(LOADGEN), json.dumps(config)]
    proc = subprocess.Popen(
        ["taskset", "-c", LOADGEN_CPU, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=LOADGEN_DIR,
        start_new_session=True,
    )
    watchdog = threading.Timer(timeout, kill_group, (proc,))
    watchdog.start()
    run = LoadgenRun({})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            message = json.loads(line)
            event = message.get("event")
            if event == "measure_start":
                run.start = CpuSample.take(server.pid)
            elif event == "measure_end":
                run.end = CpuSample.take(server.pid)
            elif event in handlers:
                run.extra.update(handlers[event](message, proc.stdin))
            elif event == "result":
                run.result = message
        code = proc.wait()
    finally:
        watchdog.cancel()
        kill_group(proc)
    if not run.result:
        raise RuntimeError(f"the load generator failed (exit {code}), see its stderr above")
    return run


def loadgen_timeout(config: dict[str, Any], connections: int) -> float:
    phases = sum(float(config.get(k, 0)) for k in ("warmup", "duration", "drain_timeout"))
    return 120.0 + connections / 20 + phases + float(config.get("close_timeout", 10))


# --------------------------------------------------------------------------- scenarios


@dataclass
class Options:
    duration: float
    warmup: float
    drain: float
    workdir: Path
    quiet_wait: float


def loadgen_config(mode: str, server: Server, opts: Options, **extra: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "url": server.ws_url,
        "tokens": server.tokens,
        "warmup": opts.warmup,
        "duration": opts.duration,
        "drain_timeout": opts.drain,
        "connect_concurrency": 200,
        **extra,
    }


def summarize(server: Server, run: LoadgenRun, config: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "config": {k: v for k, v in config.items() if k not in ("tokens", "url")},
        "loadgen_tool": loadgen_tool(str(config["mode"])),
        "loadgen": run.result,
    }
    if run.start is not None and run.end is not None:
        wall = run.end.at - run.start.at
        server_cpu = (run.end.server - run.start.server) / CLK_TCK / wall
        machine = (run.end.machine - run.start.machine) / CLK_TCK / wall
        loadgen_cpu = float(run.result.get("loadgen_cpu") or 0.0)
        record.update(
            server_cpu=round(server_cpu, 3),
            machine_cpu=round(machine, 3),
            # Busy CPU outside the server and the load generator: noise from other work.
            other_cpu=round(max(0.0, machine - server_cpu - loadgen_cpu), 3),
        )
    record.update(run.extra)
    return record


def room_history(server: Server) -> dict[str, list[int]]:
    """Every message ID of every benchmark room, oldest first, through the history API."""
    truth: dict[str, list[int]] = {}
    headers = {"Authorization": f"Bearer {server.tokens[0]}"}
    with httpx.Client(base_url=server.base, timeout=30, headers=headers) as http:
        for room in server.rooms:
            ids: list[int] = []
            while True:
                res = http.get(
                    f"/v1/api/chat/rooms/{room}/messages",
                    params={"after": ids[-1] if ids else 0, "limit": 200},
                )
                res.raise_for_status()
                page = res.json()
                ids += [int(m["ID"]) for m in page["messages"]]
                if not page["hasMore"] or not page["messages"]:
                    break
            truth[str(room)] = ids
    return truth


def storm_run(target: str, config: str, opts: Options) -> dict[str, Any]:
    """The reconnect storm: all clients connected, senders sending, then the server
    restarted; every client reconnects at once with `since` = the last ID it saw.

    The load generator reports when all are back and caught up (their `recovered`
    frame) and, once the senders stopped, compares what each client received with
    its room's history read through the REST API: every message once, in order.
    The baseline has no history: it is measured for the reconnects only.
    """
    workdir = run_dir(opts, "storm", target, config)
    waited = wait_quiet(opts.quiet_wait)
    before = opts.warmup + 1.0  # seconds of traffic before the restart
    after = min(opts.duration, 3.0)  # and after everyone is back
    verify = target == "chatroom"
    with running_server(target, workdir, SIZES.storm_rooms, config) as server:
        config_js = loadgen_config(
            "storm", server, opts,
            rooms=server.rooms, connections=SIZES.storm_clients,
            senders=SIZES.storm_senders, rate=STORM_RATE, after=after, recovery=verify,
        )  # fmt: skip

        def connected(message: dict[str, Any], stdin: IO[str]) -> dict[str, Any]:
            settled = wait_registered(server, int(message["connected"]))
            stdin.write("go\n")
            stdin.flush()
            time.sleep(before)  # the length of the traffic phase, not a wait for an event
            server.check_alive()
            log(f"storm / {run_key(target, config)}: restarting the server (SIGTERM)")
            steps = server.restart()
            stdin.write("up\n")
            stdin.flush()
            log(f"storm: stopped in {steps['stop_s']} s, up again in {steps['start_s']} s")
            return {
                "server_connections_reported": settled,
                "restart": steps,
                "before_restart_s": before,
            }

        def sent_done(message: dict[str, Any], stdin: IO[str]) -> dict[str, Any]:
            truth = room_history(server) if verify else {}
            stdin.write(json.dumps({"truth": truth}) + "\n")
            stdin.flush()
            return {"stored_messages": sum(map(len, truth.values())) if verify else None}

        timeout = loadgen_timeout(config_js, SIZES.storm_clients) + before + after + 120
        run = run_loadgen(
            config_js, server, timeout, handlers={"connected": connected, "sent_done": sent_done}
        )
        server.check_alive()
        record = summarize(server, run, config_js)
        record["server_peak_rss_kib"] = proc_status_kib(server.pid, "VmHWM")
    record.update(server_epilogue(server), quiet_wait_s=waited)
    return record


def run_key(target: str, config: str) -> str:
    """The key of a run in the results: baseline, chatroom (SQLite) or chatroom:CONFIG."""
    return target if target == "baseline" or config == "sqlite" else f"chatroom:{config}"


def run_dir(opts: Options, name: str, target: str, config: str) -> Path:
    return opts.workdir / f"{name}-{re.sub(r'[^a-z0-9]+', '-', run_key(target, config))}"


def traffic_run(
    target: str, config: str, name: str, mode: str, rooms: int, opts: Options, **extra: Any
) -> dict[str, Any]:
    workdir = run_dir(opts, name, target, config)
    waited = wait_quiet(opts.quiet_wait)
    with running_server(target, workdir, rooms, config) as server:
        if mode == "rooms":
            extra["rooms"] = server.rooms
        else:
            extra["rooms"] = server.rooms[:1]
        lg_config = loadgen_config(mode, server, opts, **extra)
        connections = int(extra.get("receivers", 0)) + rooms * int(extra.get("clients_per_room", 0))
        run = run_loadgen(lg_config, server, loadgen_timeout(lg_config, connections))
        server.check_alive()
        record = summarize(server, run, lg_config)
        record["server_peak_rss_kib"] = proc_status_kib(server.pid, "VmHWM")
    record.update(server_epilogue(server), quiet_wait_s=waited)
    return record


def server_epilogue(server: Server) -> dict[str, Any]:
    """After the stop: exit code, log location, and how many worrying lines it has."""
    text = server.log_path.read_text(errors="replace")
    worrying = [
        line
        for line in text.splitlines()
        if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line)
    ]
    return {
        "server_exit_code": server.proc.returncode,
        "server_log": str(server.log_path),
        "server_log_warnings": len(worrying),
        "server_log_warning_sample": worrying[:5],
    }


def idle_run(target: str, config: str, opts: Options) -> dict[str, Any]:
    workdir = run_dir(opts, "idle", target, config)
    waited = wait_quiet(opts.quiet_wait)
    with running_server(target, workdir, 1, config) as server:
        rss_before = proc_status_kib(server.pid, "VmRSS")
        lg_config = loadgen_config("idle", server, opts, rooms=server.rooms, connections=SIZES.idle)

        def connected(message: dict[str, Any], stdin: IO[str]) -> dict[str, Any]:
            settled = wait_registered(server, int(message["connected"]))
            server.check_alive()
            rss_after = proc_status_kib(server.pid, "VmRSS")
            stdin.write("release\n")
            stdin.flush()
            n = max(1, int(message["connected"]))
            return {
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "kib_per_connection": round((rss_after - rss_before) / n, 2),
                "server_connections_reported": settled,
            }

        run = run_loadgen(
            lg_config, server, loadgen_timeout(lg_config, SIZES.idle), on_connected=connected
        )
        server.check_alive()
        record = summarize(server, run, lg_config)
        record["server_peak_rss_kib"] = proc_status_kib(server.pid, "VmHWM")
    record.update(server_epilogue(server), quiet_wait_s=waited)
    return record


def run_scenario(
    name: str, target: str, config: str, opts: Options, results: dict[str, Any]
) -> None:
    key = run_key(target, config)
    log(f"--- {name} / {key}")
    try:
        if name == "throughput":
            record = traffic_run(
                target, config, name, "throughput", 1, opts,
                receivers=SIZES.receivers, window=WINDOW,
            )  # fmt: skip
        elif name == "latency":
            record = traffic_run(
                target, config, name, "rate", 1, opts,
                receivers=SIZES.receivers, rate=LATENCY_RATE,
            )  # fmt: skip
        elif name == "rooms":
            record = traffic_run(
                target, config, name, "rooms", SIZES.rooms, opts,
                clients_per_room=SIZES.clients_per_room, rate=ROOM_RATE,
            )  # fmt: skip
        elif name == "idle":
            record = idle_run(target, config, opts)
        elif name == "storm":
            record = storm_run(target, config, opts)
        elif name == "growth":
            record = {}
            for receivers in SIZES.growth:
                reuse = results.get("throughput", {}).get(key)
                if receivers == SIZES.receivers and reuse and "error" not in reuse:
                    record[str(receivers)] = {**reuse, "reused_from": "throughput"}
                    continue
                log(f"growth / {key}: {receivers} receivers")
                try:
                    record[str(receivers)] = traffic_run(
                        target, config, f"growth{receivers}", "throughput", 1, opts,
                        receivers=receivers, window=WINDOW,
                    )  # fmt: skip
                except Exception as exc:
                    log(f"growth / {key} / {receivers} failed: {exc}")
                    record[str(receivers)] = {"error": str(exc)}
        else:
            raise ValueError(name)
    except Exception as exc:
        log(f"{name} / {key} failed: {exc}")
        record = {"error": str(exc)}
    results.setdefault(name, {})[key] = record
    if name != "growth":
        log(f"{name} / {key}: {brief(record)}")


def brief(record: dict[str, Any]) -> str:
    if "error" in record:
        return "ERROR " + str(record["error"]).splitlines()[0]
    lg = record.get("loadgen", {})
    lat = lg.get("latency_ms", {})
    if lg.get("mode") == "storm":
        return (
            f"{lg.get('reconnected')} back in {lg.get('all_connected_s')} s, caught up in "
            f"{lg.get('all_caught_up_s')} s, {lg.get('connects_per_s')} connects/s, "
            f"lost {lg.get('lost')}, duplicated {lg.get('duplicated')}, "
            f"out of order {lg.get('out_of_order')}"
        )
    if lg.get("mode") == "idle":
        return (
            f"{record.get('kib_per_connection')} KiB/conn, "
            f"{lg.get('connects_per_s')} connects/s, failures {lg.get('connect_failures')}"
        )
    return (
        f"{lg.get('delivered_frames_per_s')} frames/s, p50 {lat.get('p50')} ms, "
        f"p99 {lat.get('p99')} ms, lost {lg.get('lost_frames')}, "
        f"server cpu {record.get('server_cpu')}, loadgen cpu {lg.get('loadgen_cpu')}"
    )


# --------------------------------------------------------------------------- machine


def command_output(*command: str) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return done.stdout.strip() or None


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    ws_version = None
    with contextlib.suppress(OSError, ValueError):
        ws_package = LOADGEN_DIR / "node_modules" / "ws" / "package.json"
        ws_version = json.loads(ws_package.read_text())["version"]
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": command_output("node", "--version"),
        "cc": (command_output("cc", "--version") or "").split("\n")[0] or None,
        "ws": ws_version,
        "websockets": package_version("websockets"),
        "sanic": package_version("sanic"),
        "chatroom_server": package_version("chatroom-server"),
        "redis_server": command_output("redis-server", "--version"),
        "postgresql": command_output("psql", "--version"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- report


def get(record: dict[str, Any] | None, *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(chat: Any, base: Any) -> str:
    if not isinstance(chat, int | float) or not isinstance(base, int | float) or base == 0:
        return "–"
    return f"{chat / base:.2f}×"


# (label, path in the record) per scenario; the first row is the headline.
TRAFFIC_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("delivered frames/s", ("loadgen", "delivered_frames_per_s")),
    ("messages/s sent", ("loadgen", "sent_msgs_per_s")),
    ("latency p50 ms", ("loadgen", "latency_ms", "p50")),
    ("latency p99 ms", ("loadgen", "latency_ms", "p99")),
    ("latency max ms", ("loadgen", "latency_ms", "max")),
    ("lost frames", ("loadgen", "lost_frames")),
    ("error frames", ("loadgen", "error_frames")),
    ("closed unexpectedly", ("loadgen", "closed_unexpectedly", "count")),
    ("server CPU (cores)", ("server_cpu",)),
    ("loadgen CPU (cores)", ("loadgen", "loadgen_cpu")),
    ("other CPU (cores)", ("other_cpu",)),
]
LATENCY_ROWS = [TRAFFIC_ROWS[3], TRAFFIC_ROWS[2], *TRAFFIC_ROWS[4:], *TRAFFIC_ROWS[:2]]
IDLE_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("KiB per connection", ("kib_per_connection",)),
    ("connects/s", ("loadgen", "connects_per_s")),
    ("connected", ("loadgen", "connected")),
    ("connect failures", ("loadgen", "connect_failures")),
    ("closed unexpectedly", ("loadgen", "closed_unexpectedly", "count")),
    ("server RSS before KiB", ("rss_before_kib",)),
    ("server RSS with all open KiB", ("rss_after_kib",)),
]
STORM_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("all caught up, s after up", ("loadgen", "all_caught_up_s")),
    ("all connected, s after up", ("loadgen", "all_connected_s")),
    ("reconnects/s", ("loadgen", "connects_per_s")),
    ("caught up p50 ms", ("loadgen", "latency_ms", "p50")),
    ("caught up p99 ms", ("loadgen", "latency_ms", "p99")),
    ("reconnected", ("loadgen", "reconnected")),
    ("failed attempts (all)", ("loadgen", "failed_attempts")),
    ("failed attempts (server up)", ("loadgen", "failed_after_up")),
    ("replayed frames", ("loadgen", "replayed_frames")),
    ("incomplete recoveries", ("loadgen", "incomplete_recoveries")),
    ("messages sent", ("loadgen", "sent_msgs")),
    ("messages stored", ("stored_messages",)),
    ("frames expected", ("loadgen", "expected_frames")),
    ("lost frames", ("loadgen", "lost")),
    ("duplicated frames", ("loadgen", "duplicated")),
    ("out of order", ("loadgen", "out_of_order")),
    ("clients with a wrong sequence", ("loadgen", "clients_wrong")),
    ("server stop s (SIGTERM to exit)", ("restart", "stop_s")),
    ("server start s (to /healthz)", ("restart", "start_s")),
    ("server CPU (cores)", ("server_cpu",)),
    ("loadgen CPU (cores)", ("loadgen", "loadgen_cpu")),
]


def scenario_title(name: str, sizes: Sizes) -> str:
    return {
        "throughput": f"throughput (1 room, {sizes.receivers} receivers, {WINDOW} in flight)",
        "latency": f"latency (1 room, {sizes.receivers} receivers, {LATENCY_RATE:g} msg/s)",
        "rooms": f"rooms ({sizes.rooms} × {sizes.clients_per_room}, {ROOM_RATE:g} msg/s each)",
        "idle": f"idle ({sizes.idle} connections)",
        "growth": "growth (throughput mode)",
        "storm": (
            f"storm ({sizes.storm_clients} clients in {sizes.storm_rooms} rooms, "
            f"server restarted, {sizes.storm_senders} sending {STORM_RATE:g} msg/s)"
        ),
    }[name]


def columns_of(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(results key, header) of every run, in order: the baseline, then each configuration."""
    cols: list[tuple[str, str]] = []
    if "baseline" in args.targets:
        cols.append(("baseline", "baseline"))
    if "chatroom" in args.targets:
        cols += [(run_key("chatroom", c), CONFIG_LABELS[c]) for c in args.config]
    return cols


def table_rows(
    results: dict[str, Any], columns: list[tuple[str, str]], sizes: Sizes
) -> list[list[str]]:
    """One row per metric: each run's value and, beside each chatroom run, its ratio to
    the baseline of the same run."""
    keys = [k for k, _ in columns]
    with_ratio = "baseline" in keys and len(keys) > 1
    width = 2 + len(keys) + (len(keys) - 1 if with_ratio else 0)
    rows: list[list[str]] = []

    def add(scenario: str, label: str, values: dict[str, Any]) -> None:
        row = [scenario, label]
        for key in keys:
            row.append(fmt(values.get(key)))
            if with_ratio and key != "baseline":
                row.append(ratio(values.get(key), values.get("baseline")))
        rows.append(row)

    for name in SCENARIOS:
        if name not in results:
            continue
        per = results[name]
        title = scenario_title(name, sizes)
        for key in keys:
            if "error" in per.get(key, {}):
                message = str(per[key]["error"]).splitlines()[0]
                rows.append([title, f"{key}: ERROR", message, *[""] * (width - 3)])
        if name == "growth":
            growth_rows: list[tuple[str, tuple[str, ...]]] = [
                ("delivered frames/s", ("loadgen", "delivered_frames_per_s")),
                ("latency p99 ms", ("loadgen", "latency_ms", "p99")),
                ("lost frames", ("loadgen", "lost_frames")),
                ("server CPU (cores)", ("server_cpu",)),
                ("loadgen CPU (cores)", ("loadgen", "loadgen_cpu")),
            ]
            for label, path in growth_rows:
                for n in sizes.growth:
                    add(title, f"{label} @ {n}", {k: get(per.get(k), str(n), *path) for k in keys})
            continue
        spec = {"latency": LATENCY_ROWS, "idle": IDLE_ROWS, "storm": STORM_ROWS}.get(
            name, TRAFFIC_ROWS
        )
        for label, path in spec:
            add(title, label, {k: get(per.get(k), *path) for k in keys})
    return rows


def markdown(results: dict[str, Any], machine: dict[str, Any], args: argparse.Namespace) -> str:
    columns = columns_of(args)
    header = ["scenario", "metric"]
    for key, label in columns:
        header.append(label)
        if key != "baseline" and columns[0][0] == "baseline" and len(columns) > 1:
            header.append("÷ baseline")
    rows = table_rows(results["scenarios"], columns, SIZES)
    configs = ", ".join(CONFIG_LABELS[c] for c in args.config)
    lines = [
        "# chatroom-server benchmarks",
        "",
        f"{machine['date']}: {machine['cpu_model']}, {machine['cores']} cores, "
        f"Linux {machine['kernel']}, Python {machine['python']}, Node {machine['node']}, "
        f"ws {machine['ws']}, websockets {machine['websockets']}, sanic {machine['sanic']}; "
        f"load average at the start {' '.join(machine['loadavg_at_start'])}.",
        f"Measured window {results['options']['duration']} s after a "
        f"{results['options']['warmup']} s warm-up; server on CPU {SERVER_CPU}, "
        f"load generator on CPU {LOADGEN_CPU}. baseline = benchmarks/baselines/"
        f"websockets_broadcast.py; chatroom = `chatroom-server serve` on {configs} "
        "(PostgreSQL and Redis on this machine, a database and a key prefix of their own "
        "per scenario); ratios are to the baseline of the same run.",
        f"Load generator: {FANOUT_SRC.name} (C, built with {machine.get('cc')}) for "
        f"throughput, latency and growth; {LOADGEN.name} for rooms, idle and storm.",
        *(
            [
                f"Each figure is the median of {results['options']['repeat']} rounds; every "
                "round runs every scenario on every target (raw rounds in results.json)."
            ]
            if results["options"].get("repeat", 1) > 1
            else []
        ),
        *(["Tiny sizes (`--tiny`): a smoke run, not a measurement."] if args.tiny else []),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    previous = None
    for row in rows:
        shown = ["" if row[0] == previous else f"**{row[0]}**", *row[1:]]
        previous = row[0]
        lines.append("| " + " | ".join(shown) + " |")
    lines.append("")
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (with a line) without the bench extra."""
    try:
        import matplotlib
    except ImportError:
        log("no plot: matplotlib is not installed (pip install -e '.[bench]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fanout(results: dict[str, Any], columns: list[tuple[str, str]], path: Path) -> bool:
    growth = results.get("growth")
    if not growth:
        return False
    plt = pyplot()
    if plt is None:
        return False

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in columns:
        xs, frames, p99 = [], [], []
        for n in SIZES.growth:
            fps = get(growth.get(key), str(n), "loadgen", "delivered_frames_per_s")
            lat = get(growth.get(key), str(n), "loadgen", "latency_ms", "p99")
            if fps is None or lat is None:
                continue
            xs.append(n)
            frames.append(fps)
            p99.append(lat)
        if xs:
            left.plot(xs, frames, marker="o", label=label)
            right.plot(xs, p99, marker="o", label=label)
    for ax, title, ylabel in (
        (left, "Delivered frames/s", "frames/s"),
        (right, "p99 latency, send → each receiver", "ms (log)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("receivers in the room")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_xticks(list(SIZES.growth), [str(n) for n in SIZES.growth])
        ax.grid(True, alpha=0.3)
        ax.legend()
    left.set_ylim(bottom=0)
    right.set_yscale("log")
    fig.suptitle(f"One room, one sender, {WINDOW} messages in flight")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# The p99 figures of the configurations plot: (scenario, label, path in the record).
P99_PLOTTED: list[tuple[str, str, tuple[str, ...]]] = [
    ("latency", "latency\n20,000 deliveries/s", ("loadgen", "latency_ms", "p99")),
    ("rooms", "many rooms\n2,000 stored/s", ("loadgen", "latency_ms", "p99")),
    ("throughput", "throughput\n50 in flight", ("loadgen", "latency_ms", "p99")),
    ("storm", "storm: up →\ncaught up", ("loadgen", "latency_ms", "p99")),
]


def plot_configs(results: dict[str, Any], columns: list[tuple[str, str]], path: Path) -> bool:
    """Grouped bars: the p99 of each scenario for the baseline and every configuration."""
    groups = [(n, label, p) for n, label, p in P99_PLOTTED if n in results]
    if not groups or len(columns) < 2:
        return False
    plt = pyplot()
    if plt is None:
        return False

    fig, ax = plt.subplots(figsize=(max(7.0, 2.6 * len(groups)), 4.6))
    width = 0.8 / len(columns)
    for i, (key, label) in enumerate(columns):
        xs, ys = [], []
        for g, (name, _, path_) in enumerate(groups):
            value = get(results[name].get(key), *path_)
            if isinstance(value, int | float) and value > 0:
                xs.append(g - 0.4 + width * (i + 0.5))
                ys.append(float(value))
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, [fmt(y) for y in ys], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(groups)), [label for _, label, _ in groups])
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the bars' labels
    ax.set_ylabel("p99, ms (log)")
    ax.set_title("p99 per configuration (same run; lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def median_of(rounds: list[Any]) -> Any:
    """Merge the records of several rounds: the median of every number, else the first."""
    first = rounds[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in rounds)]
        merged = {k: median_of([r[k] for r in rounds]) for k in keys}
        # A key some rounds lack (an error in one of them) is kept from the first round.
        merged.update({k: v for k, v in first.items() if k not in merged})
        return merged
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in rounds):
        return statistics.median(rounds)
    return first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--targets", default=",".join(TARGETS), help="baseline,chatroom")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every scenario on both targets; the report shows medians (1)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each run, wait up to this many seconds for an idle machine (0: never)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="the chatroom server's configurations, comma-separated, from "
        f"{', '.join(CONFIGS)} (sqlite; with --postgres alone: postgres)",
    )
    parser.add_argument(
        "--postgres-admin",
        "--postgres",
        dest="postgres_admin",
        metavar="ADMIN_DSN",
        help="where the postgres configurations' databases are created, one per scenario "
        f"({POSTGRES_ADMIN})",
    )
    parser.add_argument(
        "--redis",
        default=REDIS_URL,
        metavar="URL",
        help=f"the Redis of the redis configurations, a key prefix per scenario ({REDIS_URL})",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny sizes in every scenario: a smoke test"
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.config is None:  # `--postgres DSN` alone kept its old meaning
        args.config = "postgres" if args.postgres_admin else "sqlite"
    args.config = [c.strip() for c in args.config.split(",") if c.strip()]
    for config in args.config:
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r} (choose from {', '.join(CONFIGS)})")
    args.config = [c for c in CONFIGS if c in args.config]  # SQLite first, then the others
    for name in args.only:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    for target in args.targets:
        if target not in TARGETS:
            parser.error(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    return args


def preflight(scenarios: list[str], configs: list[str]) -> None:
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is not on PATH")
    if any(c.startswith("postgres") for c in configs):
        if shutil.which("psql") is None:
            raise SystemExit("psql is not on PATH (needed for the postgres configurations)")
        try:
            pg_admin("SELECT 1")
        except subprocess.CalledProcessError:
            raise SystemExit(f"cannot reach PostgreSQL at {mask(POSTGRES_ADMIN)}") from None
    if any(c.endswith("redis") for c in configs):
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
        except redis.RedisError as exc:
            raise SystemExit(f"cannot reach Redis at {mask(REDIS_URL)}: {exc}") from None
    if any(s not in FANOUT_SCENARIOS for s in scenarios):  # rooms and idle: loadgen.mjs
        if shutil.which("node") is None:
            raise SystemExit("node is not on PATH")
        if not (LOADGEN_DIR / "node_modules" / "ws").is_dir():
            raise SystemExit(f"run `npm ci` in {LOADGEN_DIR} first")
    if any(s in FANOUT_SCENARIOS for s in scenarios):
        build_fanout()
    if not (VENV_BIN / "chatroom-server").exists():
        raise SystemExit(f"{VENV_BIN / 'chatroom-server'} not found: run with the dev venv")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs at least 2 CPUs (server on CPU 0, load generator on CPU 1)")


def mask(url: str) -> str:
    """A URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def main(argv: list[str] | None = None) -> int:
    global POSTGRES_ADMIN, REDIS_URL, SIZES
    args = parse_args(argv)
    POSTGRES_ADMIN = args.postgres_admin or POSTGRES_ADMIN
    REDIS_URL = args.redis
    SIZES = TINY if args.tiny else Sizes()
    preflight(args.only, args.config)
    nofile = raise_nofile()
    if args.quick:
        opts_duration, warmup, drain = min(args.duration, 2.0), 1.0, 5.0
    else:
        opts_duration, warmup, drain = args.duration, 2.0, 10.0
    workdir = Path(tempfile.mkdtemp(prefix="chatroom-bench-"))
    opts = Options(opts_duration, warmup, drain, workdir, args.quiet_wait)
    log(f"work directory (server logs, databases): {workdir}; RLIMIT_NOFILE {nofile}")
    machine = machine_info()
    order = [s for s in SCENARIOS if s in args.only]
    if "growth" in order and "throughput" not in order:
        log(
            f"growth without throughput: its {SIZES.receivers}-receiver point is measured in growth"
        )
    runs = [("baseline", "sqlite")] if "baseline" in args.targets else []
    if "chatroom" in args.targets:
        runs += [("chatroom", config) for config in args.config]
    started = time.monotonic()
    rounds: list[dict[str, Any]] = []
    for number in range(1, max(1, args.repeat) + 1):
        if args.repeat > 1:
            log(f"=== round {number} of {args.repeat}")
        this_round: dict[str, Any] = {}
        # Every round starts from empty databases of its own.
        round_opts = opts if args.repeat <= 1 else replace(opts, workdir=workdir / f"round{number}")
        for name in order:
            for target, config in runs:
                run_scenario(name, target, config, round_opts, this_round)
        rounds.append(this_round)
    scenarios = rounds[0] if len(rounds) == 1 else median_of(rounds)
    results = {
        "machine": machine,
        "options": {
            "duration": opts.duration,
            "warmup": opts.warmup,
            "drain_timeout": opts.drain,
            "quick": args.quick,
            "quiet_wait": args.quiet_wait,
            "targets": args.targets,
            "configs": args.config,
            "columns": columns_of(args),
            "tiny": args.tiny,
            "sizes": dataclasses.asdict(SIZES),
            # What this run's databases and Redis key prefixes are named from.
            "scope": scoped_name(Path("")).rstrip("_") + "_",
            "postgres_admin": mask(POSTGRES_ADMIN),
            "redis": mask(REDIS_URL),
            "scenarios": order,
            "workdir": str(workdir),
            "elapsed_s": round(time.monotonic() - started, 1),
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        },
        "scenarios": scenarios,
    }
    if len(rounds) > 1:
        results["options"]["repeat"] = len(rounds)
        results["rounds"] = rounds
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results, machine, args)
    (args.out / "results.md").write_text(table)
    for plot, png in ((plot_fanout, "fanout.png"), (plot_configs, "configs.png")):
        if plot(scenarios, columns_of(args), args.out / png):
            log(f"wrote {args.out / png}")
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    print(table)
    failed = any(
        "error" in rec or any(isinstance(v, dict) and "error" in v for v in rec.values())
        for one in rounds
        for per in one.values()
        for rec in per.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
