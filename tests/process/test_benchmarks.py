"""The benchmark's load generators and runner against the real server.

Not timing tests: they check that the tools the benchmark results rest on connect,
authenticate, count every frame and report what they saw, on small rooms:
benchmarks/loadgen/fanout.c alone, and benchmarks/run.py end to end (`--tiny`) on
PostgreSQL + Redis and through the reconnect storm.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import (
    PG_ADMIN_DSN,
    REQUIRE_SERVICES,
    ROOT,
    SHARED_REDIS,
    ChatServer,
    redis_answers,
    service_missing,
)

SOURCE = ROOT / "benchmarks" / "loadgen" / "fanout.c"
RUN_PY = ROOT / "benchmarks" / "run.py"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    return {"ws_rate": 100000.0, "ws_burst": 100000}


@pytest.fixture
async def fanout(tmp_path: Path) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        if REQUIRE_SERVICES:
            pytest.fail("no C compiler (cc) to build benchmarks/loadgen/fanout.c")
        pytest.skip("no C compiler (cc) on this machine to build the load generator")
    binary = tmp_path / "fanout"
    build = await asyncio.create_subprocess_exec(
        cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await build.communicate()
    assert build.returncode == 0, err.decode()
    return binary


async def run_fanout(binary: Path, server: ChatServer, tmp_path: Path, *flags: str) -> list[Any]:
    _, token = await server.signup()
    room = (await server.create_room(token))["ID"]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{token}\n")
    proc = await asyncio.create_subprocess_exec(
        str(binary), "--port", str(server.port), "--path", "/ws", "--room", str(room),
        "--tokens-file", str(tokens), "--warmup", "0.3", "--duration", "1",
        "--drain-timeout", "5", "--close-timeout", "5", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def check_result(lines: list[Any], receivers: int) -> dict[str, Any]:
    assert [line["event"] for line in lines] == ["measure_start", "measure_end", "result"]
    result: dict[str, Any] = lines[-1]
    assert result["connected"] == receivers and result["connect_failures"] == 0
    assert result["sent_msgs"] > 0
    # Every receiver got every measured message, once.
    assert result["expected_frames"] == result["sent_msgs"] * receivers
    assert result["received_measured_frames"] == result["expected_frames"]
    assert result["lost_frames"] == 0 and result["duplicate_frames"] == 0
    assert result["drain_complete"] is True
    assert result["latency_ms"]["count"] == result["expected_frames"]
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["error_frames"] == 0 and result["closed_unexpectedly"]["count"] == 0
    assert result["loadgen_cpu"] >= 0
    return result


@sqlite_only
async def test_throughput_mode_counts_every_frame(
    fanout: Path, server: ChatServer, tmp_path: Path
) -> None:
    lines = await run_fanout(
        fanout, server, tmp_path, "--mode", "throughput", "--receivers", "20", "--window", "5"
    )
    result = check_result(lines, 20)
    assert result["mode"] == "throughput" and result["window"] == 5
    # Frames that arrived in the window, whatever their message: the throughput figure.
    assert result["delivered_frames"] > 0 and result["delivered_frames_per_s"] > 0


@sqlite_only
async def test_rate_mode_sends_at_the_rate_asked(
    fanout: Path, server: ChatServer, tmp_path: Path
) -> None:
    lines = await run_fanout(
        fanout, server, tmp_path, "--mode", "rate", "--receivers", "10", "--rate", "20"
    )
    result = check_result(lines, 10)
    assert 15 <= result["sent_msgs"] <= 25  # 20 a second for the one-second window


@sqlite_only
async def test_a_refused_token_is_a_counted_connect_failure(
    fanout: Path, server: ChatServer, tmp_path: Path
) -> None:
    tokens = tmp_path / "bad.txt"
    tokens.write_text("not-a-token\n")
    proc = await asyncio.create_subprocess_exec(
        str(fanout), "--port", str(server.port), "--path", "/ws", "--room", "1",
        "--tokens-file", str(tokens), "--receivers", "3", "--duration", "0.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0  # the sender could not connect either
    assert b"401" in err


# ----------------------------------------------------------------------- run.py, --tiny


def node_ready() -> None:
    if shutil.which("node") is None or not (ROOT / "benchmarks/loadgen/node_modules/ws").is_dir():
        if REQUIRE_SERVICES:
            pytest.fail("node and benchmarks/loadgen/node_modules (npm ci) are needed")
        pytest.skip("node or benchmarks/loadgen/node_modules (npm ci) missing")


def run_bench(tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str]:
    """run.py with tiny sizes and short windows; its results.json and results.md."""
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, str(RUN_PY), "--tiny", "--quick", "--duration", "1",
            "--quiet-wait", "0", "--out", str(out), *flags,
        ],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()
    assert table.strip() in done.stdout  # the table is printed too
    return results, table


def pg_databases(prefix: str) -> list[str]:
    done = subprocess.run(
        ["psql", "-X", "-At", PG_ADMIN_DSN, "-c",
         f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout.split()


async def test_run_py_on_postgres_and_redis_beside_the_baseline(tmp_path: Path) -> None:
    node_ready()
    if shutil.which("psql") is None:
        service_missing("psql (PostgreSQL's client)")
    try:
        pg_databases("chatroom_bench_")
    except (subprocess.CalledProcessError, OSError):
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN}")
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    results, table = await asyncio.to_thread(
        run_bench, tmp_path,
        "--config", "postgres+redis", "--only", "rooms",
        "--postgres-admin", PG_ADMIN_DSN, "--redis", SHARED_REDIS,
    )  # fmt: skip
    key = "chatroom:postgres+redis"
    assert results["options"]["configs"] == ["postgres+redis"]
    assert results["options"]["columns"] == [["baseline", "baseline"], [key, "PostgreSQL + Redis"]]
    for name in ("rooms",):
        runs = results["scenarios"][name]
        assert set(runs) == {"baseline", key}
        for record in runs.values():
            assert "error" not in record, record
            lg = record["loadgen"]
            assert lg["sent_msgs"] > 0 and lg["lost_frames"] == 0, lg
            assert lg["received_measured_frames"] == lg["expected_frames"] > 0
            assert lg["latency_ms"]["p99"] > 0
        assert runs[key]["server_exit_code"] == 0
    assert "| scenario | metric | baseline | PostgreSQL + Redis | ÷ baseline |" in table
    p99 = next(line for line in table.splitlines() if "latency p99 ms" in line)
    assert p99.rstrip(" |").endswith("×")  # a ratio to the baseline
    assert (tmp_path / "results" / "configs.png").stat().st_size > 0
    # Cleaned up after: its databases dropped, its Redis keys deleted.
    scope = results["options"]["scope"]
    assert await asyncio.to_thread(pg_databases, scope) == []
    from redis.asyncio import Redis

    client = Redis.from_url(SHARED_REDIS)
    try:
        assert [k async for k in client.scan_iter(match=f"{scope}*")] == []
    finally:
        await client.aclose()


async def test_run_py_storm_every_client_back_with_every_message_once(tmp_path: Path) -> None:
    node_ready()
    results, table = await asyncio.to_thread(
        run_bench, tmp_path, "--only", "storm", "--targets", "chatroom"
    )
    record = results["scenarios"]["storm"]["chatroom"]
    assert "error" not in record, record
    lg = record["loadgen"]
    sizes = results["options"]["sizes"]
    assert lg["initial"]["connected"] == sizes["storm_clients"] == 200
    # The server really went away and came back: every client was closed and reconnected.
    assert record["restart"]["exit_code"] == 0
    assert sum(lg["close_codes"].values()) >= sizes["storm_clients"]
    assert lg["storm_complete"] is True and lg["reconnected"] == sizes["storm_clients"]
    assert 0 < lg["all_connected_s"] <= lg["all_caught_up_s"]
    assert lg["connects_per_s"] > 0 and lg["latency_ms"]["count"] == sizes["storm_clients"]
    assert lg["incomplete_recoveries"] == 0
    # Every client got every stored message of its room once, in order.
    assert lg["sent_msgs"] > 0 and record["stored_messages"] > 0
    assert lg["expected_frames"] > 0 and lg["drain_complete"] is True
    assert lg["lost"] == 0 and lg["duplicated"] == 0 and lg["out_of_order"] == 0
    assert lg["unexpected"] == 0 and lg["clients_wrong"] == 0
    assert lg["error_frames"] == 0
    assert "**storm (200 clients in 10 rooms" in table and "| lost frames | 0 |" in table
