"""Benchmarks: chatroom-server against a minimal `websockets` broadcast server, side by side.

Every scenario runs against both targets, each started fresh for it, the server
pinned to CPU 0 and the load generator (benchmarks/loadgen) to CPU 1: fanout.c, a
compiled receiver built here with `cc` when missing or stale, for throughput, latency
and growth; loadgen.mjs (Node) for rooms and idle.

- throughput: one room, 1000 receivers, one sender keeping 50 messages in flight;
- latency: one room, 1000 receivers, the sender at a fixed 20 messages/s;
- rooms: 100 rooms x 10 clients, each sending 2 messages/s;
- idle: 5000 open connections: memory per connection and connects/s;
- growth: throughput with 100, 1000 and 5000 receivers.

Writes results.json (raw numbers, machine), results.md (the table, printed at the
end) and fanout.png into --out.

    .venv/bin/python benchmarks/run.py                 # everything, 10 s windows
    .venv/bin/python benchmarks/run.py --quick         # smoke run
    .venv/bin/python benchmarks/run.py --only throughput,idle --targets chatroom
    .venv/bin/python benchmarks/run.py --postgres postgres://postgres@127.0.0.1/postgres

With `--postgres ADMIN_DSN` the chatroom server stores on PostgreSQL instead of
SQLite: each scenario gets a database of its own, created there and dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
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

SCENARIOS = ("throughput", "latency", "rooms", "idle", "growth")
TARGETS = ("baseline", "chatroom")
GROWTH_RECEIVERS = (100, 1000, 5000)
THROUGHPUT_RECEIVERS = 1000
WINDOW = 50
LATENCY_RATE = 20.0
ROOMS, CLIENTS_PER_ROOM, ROOM_RATE = 100, 10, 2.0
IDLE_CONNECTIONS = 5000
USERS = 50
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


@dataclass
class Server:
    target: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tokens: list[str] = field(default_factory=lambda: ["bench"])
    rooms: list[int] = field(default_factory=list)

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


# Set by --postgres: where the chatroom server's databases are created (an admin DSN).
POSTGRES_ADMIN: str | None = None


def pg_admin(sql: str) -> None:
    assert POSTGRES_ADMIN is not None
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", POSTGRES_ADMIN, "-c", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def chatroom_database(workdir: Path) -> Iterator[str]:
    """The chatroom server's database URL for one scenario: a SQLite file in its work
    directory, or (with --postgres) a PostgreSQL database of its own, dropped after."""
    if POSTGRES_ADMIN is None:
        yield f"sqlite://{workdir / 'bench.sqlite3'}"
        return
    name = f"chatroom_bench_{os.getpid()}_{workdir.name.replace('-', '_')}"
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def spawn_server(target: str, workdir: Path, database_url: str = "") -> Server:
    port = free_port()
    log_path = workdir / "server.log"
    env = dict(os.environ)
    if target == "baseline":
        command = [sys.executable, str(BASELINE), "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [
            str(VENV_BIN / "chatroom-server"), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--database-url", database_url,
        ]  # fmt: skip
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
    return Server(target, proc, port, log_path)


def setup_chatroom(server: Server, rooms: int) -> None:
    with httpx.Client(base_url=server.base, timeout=30) as http:
        tokens = []
        for i in range(USERS):
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
def running_server(target: str, workdir: Path, rooms: int) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    with chatroom_database(workdir) as database_url:
        with _running_server(target, workdir, rooms, database_url) as server:
            yield server


@contextlib.contextmanager
def _running_server(target: str, workdir: Path, rooms: int, database_url: str) -> Iterator[Server]:
    server = spawn_server(target, workdir, database_url)
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


# --------------------------------------------------------------------------- the load generator


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
    on_connected: Callable[[dict[str, Any], IO[str]], dict[str, Any]] | None = None,
) -> LoadgenRun:
    """Run the load generator pinned to CPU 1; sample the server's CPU at its window's edges.

    fanout (compiled) for the throughput and rate modes, loadgen.mjs for the others.
    """
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
            elif event == "connected" and on_connected is not None:
                run.extra = on_connected(message, proc.stdin)
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


def traffic_run(
    target: str, name: str, mode: str, rooms: int, opts: Options, **extra: Any
) -> dict[str, Any]:
    workdir = opts.workdir / f"{name}-{target}"
    waited = wait_quiet(opts.quiet_wait)
    with running_server(target, workdir, rooms) as server:
        if mode == "rooms":
            extra["rooms"] = server.rooms
        else:
            extra["rooms"] = server.rooms[:1]
        config = loadgen_config(mode, server, opts, **extra)
        connections = int(extra.get("receivers", 0)) + rooms * int(extra.get("clients_per_room", 0))
        run = run_loadgen(config, server, loadgen_timeout(config, connections))
        server.check_alive()
        record = summarize(server, run, config)
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


def idle_run(target: str, opts: Options) -> dict[str, Any]:
    workdir = opts.workdir / f"idle-{target}"
    waited = wait_quiet(opts.quiet_wait)
    with running_server(target, workdir, 1) as server:
        rss_before = proc_status_kib(server.pid, "VmRSS")
        config = loadgen_config(
            "idle", server, opts, rooms=server.rooms, connections=IDLE_CONNECTIONS
        )

        def connected(message: dict[str, Any], stdin: IO[str]) -> dict[str, Any]:
            settled = None
            if target == "chatroom":
                # The hub registers a socket just after its handshake: wait until all are in.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    settled = chatroom_connections(server)
                    if settled is not None and settled >= message["connected"]:
                        break
                    time.sleep(0.05)  # polling /metrics
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
            config, server, loadgen_timeout(config, IDLE_CONNECTIONS), on_connected=connected
        )
        server.check_alive()
        record = summarize(server, run, config)
        record["server_peak_rss_kib"] = proc_status_kib(server.pid, "VmHWM")
    record.update(server_epilogue(server), quiet_wait_s=waited)
    return record


def run_scenario(name: str, target: str, opts: Options, results: dict[str, Any]) -> None:
    log(f"--- {name} / {target}")
    try:
        if name == "throughput":
            record = traffic_run(
                target, name, "throughput", 1, opts, receivers=THROUGHPUT_RECEIVERS, window=WINDOW
            )
        elif name == "latency":
            record = traffic_run(
                target, name, "rate", 1, opts, receivers=THROUGHPUT_RECEIVERS, rate=LATENCY_RATE
            )
        elif name == "rooms":
            record = traffic_run(
                target,
                name,
                "rooms",
                ROOMS,
                opts,
                clients_per_room=CLIENTS_PER_ROOM,
                rate=ROOM_RATE,
            )
        elif name == "idle":
            record = idle_run(target, opts)
        elif name == "growth":
            record = {}
            for receivers in GROWTH_RECEIVERS:
                reuse = results.get("throughput", {}).get(target)
                if receivers == THROUGHPUT_RECEIVERS and reuse and "error" not in reuse:
                    record[str(receivers)] = {**reuse, "reused_from": "throughput"}
                    continue
                log(f"growth / {target}: {receivers} receivers")
                try:
                    record[str(receivers)] = traffic_run(
                        target,
                        f"growth{receivers}",
                        "throughput",
                        1,
                        opts,
                        receivers=receivers,
                        window=WINDOW,
                    )
                except Exception as exc:
                    log(f"growth / {target} / {receivers} failed: {exc}")
                    record[str(receivers)] = {"error": str(exc)}
        else:
            raise ValueError(name)
    except Exception as exc:
        log(f"{name} / {target} failed: {exc}")
        record = {"error": str(exc)}
    results.setdefault(name, {})[target] = record
    if name != "growth":
        log(f"{name} / {target}: {brief(record)}")


def brief(record: dict[str, Any]) -> str:
    if "error" in record:
        return "ERROR " + str(record["error"]).splitlines()[0]
    lg = record.get("loadgen", {})
    lat = lg.get("latency_ms", {})
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
        "chatroom_database": "postgresql" if POSTGRES_ADMIN else "sqlite",
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
SCENARIO_TITLES = {
    "throughput": f"throughput (1 room, {THROUGHPUT_RECEIVERS} receivers, {WINDOW} in flight)",
    "latency": f"latency (1 room, {THROUGHPUT_RECEIVERS} receivers, {LATENCY_RATE:g} msg/s)",
    "rooms": f"rooms ({ROOMS} × {CLIENTS_PER_ROOM}, {ROOM_RATE:g} msg/s each)",
    "idle": f"idle ({IDLE_CONNECTIONS} connections)",
    "growth": "growth (throughput mode)",
}


def table_rows(results: dict[str, Any], targets: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []

    def add(scenario: str, label: str, base: Any, chat: Any) -> None:
        values = {"baseline": base, "chatroom": chat}
        row = [scenario, label] + [fmt(values[t]) for t in targets]
        if len(targets) == 2:
            row.append(ratio(chat, base))
        rows.append(row)

    for name in SCENARIOS:
        if name not in results:
            continue
        per = results[name]
        title = SCENARIO_TITLES[name]
        errors = [t for t in targets if "error" in per.get(t, {})]
        for t in errors:
            message = str(per[t]["error"]).splitlines()[0]
            blanks = len(targets) - 1 + (len(targets) == 2)
            rows.append([title, f"{t}: ERROR", message, *[""] * blanks])
        if name == "growth":
            growth_rows: list[tuple[str, tuple[str, ...]]] = [
                ("delivered frames/s", ("loadgen", "delivered_frames_per_s")),
                ("latency p99 ms", ("loadgen", "latency_ms", "p99")),
                ("lost frames", ("loadgen", "lost_frames")),
                ("server CPU (cores)", ("server_cpu",)),
                ("loadgen CPU (cores)", ("loadgen", "loadgen_cpu")),
            ]
            for label, path in growth_rows:
                for n in GROWTH_RECEIVERS:
                    base = get(per.get("baseline"), str(n), *path)
                    chat = get(per.get("chatroom"), str(n), *path)
                    add(title, f"{label} @ {n}", base, chat)
            continue
        spec = {"latency": LATENCY_ROWS, "idle": IDLE_ROWS}.get(name, TRAFFIC_ROWS)
        for label, path in spec:
            add(title, label, get(per.get("baseline"), *path), get(per.get("chatroom"), *path))
    return rows


def markdown(results: dict[str, Any], machine: dict[str, Any], args: argparse.Namespace) -> str:
    targets = args.targets
    header = ["scenario", "metric", *targets]
    if len(targets) == 2:
        header.append("chatroom / baseline")
    rows = table_rows(results["scenarios"], targets)
    lines = [
        "# chatroom-server benchmarks",
        "",
        f"{machine['date']}: {machine['cpu_model']}, {machine['cores']} cores, "
        f"Linux {machine['kernel']}, Python {machine['python']}, Node {machine['node']}, "
        f"ws {machine['ws']}, websockets {machine['websockets']}, sanic {machine['sanic']}.",
        f"Measured window {results['options']['duration']} s after a "
        f"{results['options']['warmup']} s warm-up; server on CPU {SERVER_CPU}, "
        f"load generator on CPU {LOADGEN_CPU}. baseline = benchmarks/baselines/"
        "websockets_broadcast.py; chatroom = `chatroom-server serve` "
        f"({'PostgreSQL' if machine.get('chatroom_database') == 'postgresql' else 'SQLite'}).",
        f"Load generator: {FANOUT_SRC.name} (C, built with {machine.get('cc')}) for "
        f"throughput, latency and growth; {LOADGEN.name} for rooms and idle.",
        *(
            [
                f"Each figure is the median of {results['options']['repeat']} rounds; every "
                "round runs every scenario on both targets (raw rounds in results.json)."
            ]
            if results["options"].get("repeat", 1) > 1
            else []
        ),
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


def plot_fanout(results: dict[str, Any], targets: list[str], path: Path) -> bool:
    growth = results.get("growth")
    if not growth:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target in targets:
        xs, frames, p99 = [], [], []
        for n in GROWTH_RECEIVERS:
            fps = get(growth.get(target), str(n), "loadgen", "delivered_frames_per_s")
            lat = get(growth.get(target), str(n), "loadgen", "latency_ms", "p99")
            if fps is None or lat is None:
                continue
            xs.append(n)
            frames.append(fps)
            p99.append(lat)
        if xs:
            left.plot(xs, frames, marker="o", label=target)
            right.plot(xs, p99, marker="o", label=target)
    for ax, title, ylabel in (
        (left, "Delivered frames/s", "frames/s"),
        (right, "p99 latency, send → each receiver", "ms (log)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("receivers in the room")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_xticks(list(GROWTH_RECEIVERS), [str(n) for n in GROWTH_RECEIVERS])
        ax.grid(True, alpha=0.3)
        ax.legend()
    left.set_ylim(bottom=0)
    right.set_yscale("log")
    fig.suptitle(f"One room, one sender, {WINDOW} messages in flight")
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
        "--postgres",
        metavar="ADMIN_DSN",
        help="store on PostgreSQL: a database of its own per scenario, created there",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for name in args.only:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    for target in args.targets:
        if target not in TARGETS:
            parser.error(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    return args


def preflight(scenarios: list[str]) -> None:
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is not on PATH")
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


def main(argv: list[str] | None = None) -> int:
    global POSTGRES_ADMIN
    args = parse_args(argv)
    POSTGRES_ADMIN = args.postgres
    preflight(args.only)
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
        log("growth without throughput: its 1000-receiver point is measured in growth")
    started = time.monotonic()
    rounds: list[dict[str, Any]] = []
    for number in range(1, max(1, args.repeat) + 1):
        if args.repeat > 1:
            log(f"=== round {number} of {args.repeat}")
        this_round: dict[str, Any] = {}
        # Every round starts from empty databases of its own.
        round_opts = opts if args.repeat <= 1 else replace(opts, workdir=workdir / f"round{number}")
        for name in order:
            for target in args.targets:
                run_scenario(name, target, round_opts, this_round)
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
            "scenarios": order,
            "workdir": str(workdir),
            "elapsed_s": round(time.monotonic() - started, 1),
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
    if plot_fanout(scenarios, args.targets, args.out / "fanout.png"):
        log(f"wrote {args.out / 'fanout.png'}")
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
