"""The benchmark's compiled load generator (benchmarks/loadgen/fanout.c) against the real server.

Not a timing test: it checks that the tool the benchmark results rest on connects,
authenticates, counts every frame and reports what it saw, on a small room.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REQUIRE_SERVICES, ROOT, ChatServer

SOURCE = ROOT / "benchmarks" / "loadgen" / "fanout.c"


pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


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


async def test_rate_mode_sends_at_the_rate_asked(
    fanout: Path, server: ChatServer, tmp_path: Path
) -> None:
    lines = await run_fanout(
        fanout, server, tmp_path, "--mode", "rate", "--receivers", "10", "--rate", "20"
    )
    result = check_result(lines, 10)
    assert 15 <= result["sent_msgs"] <= 25  # 20 a second for the one-second window


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
