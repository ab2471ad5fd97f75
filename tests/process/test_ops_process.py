"""`serve` with --metrics-port and the header deadline, in one worker and in two."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import SHARED_REDIS, TIMEOUT, auth, free_port, redis_answers, service_missing
from .conftest import ServeProcess

TOKEN = "metrics-token-0123456789"
HEADER_TIMEOUT = 1.0


def healthz_count(text: str) -> float:
    """chatroom_http_requests for /healthz answered 200, summed over the lines shown."""
    pattern = r'^chatroom_http_requests_total\{route="/?healthz",status="200"\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


async def dropped_unanswered(port: int) -> float:
    """Open a connection, send nothing: seconds until the server closes it, unanswered."""
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(5 * HEADER_TIMEOUT):
            assert await reader.read() == b""
        return time.monotonic() - opened
    finally:
        writer.close()


async def start(tmp_path: Path, processes: list[ServeProcess], *extra: str) -> ServeProcess:
    env = {"CHATROOM_METRICS_TOKEN": TOKEN, "CHATROOM_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    proc = ServeProcess(f"sqlite://{tmp_path / 'ops.sqlite3'}", tmp_path, *extra, env=env)
    processes.append(proc)
    await proc.ready()
    return proc


async def check_metrics_port(proc: ServeProcess, metrics_port: int, requests: int) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        for _ in range(requests):
            assert (await http.get(f"{proc.base}/healthz")).status_code == 200
        public = await http.get(f"{proc.base}/metrics", headers=auth(TOKEN))
        assert public.status_code == 404
        url = f"http://127.0.0.1:{metrics_port}"
        refused = await http.get(f"{url}/metrics")
        assert refused.status_code == 401 and refused.json()["status"] == 401
        assert (await http.get(f"{url}/metrics", headers=auth("x" * 24))).status_code == 401
        assert (await http.get(f"{url}/other", headers=auth(TOKEN))).status_code == 404
        res = await http.get(f"{url}/metrics", headers=auth(TOKEN))
        assert res.status_code == 200
        # Every worker's requests, whichever answered them (ready() asked too).
        assert healthz_count(res.text) >= requests


async def test_metrics_port_and_header_deadline_with_one_worker(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    metrics_port = free_port()
    proc = await start(tmp_path, processes, "--metrics-port", str(metrics_port))
    await check_metrics_port(proc, metrics_port, 5)
    assert HEADER_TIMEOUT - 0.1 <= await dropped_unanswered(proc.port) <= 3 * HEADER_TIMEOUT
    assert await asyncio.to_thread(proc.terminate) == 0  # the metrics thread holds nothing up
    output = proc.output()
    assert TOKEN not in output
    assert "Traceback" not in output and "ERROR" not in output, output


async def test_metrics_port_and_header_deadline_with_two_workers(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    metrics_port = free_port()
    proc = await start(
        tmp_path,
        processes,
        "--workers",
        "2",
        "--redis-url",
        SHARED_REDIS,
        "--metrics-port",
        str(metrics_port),
    )
    await check_metrics_port(proc, metrics_port, 20)
    # Each connection lands on either worker: both run the deadline.
    for elapsed in await asyncio.gather(*(dropped_unanswered(proc.port) for _ in range(6))):
        assert HEADER_TIMEOUT - 0.1 <= elapsed <= 3 * HEADER_TIMEOUT
    assert await asyncio.to_thread(proc.terminate) == 0  # the metrics thread holds nothing up
    output = proc.output()
    assert TOKEN not in output
    assert "Traceback" not in output and "ERROR" not in output, output


def test_a_taken_metrics_port_is_one_clear_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "chatroom_server", "serve", "--port", str(free_port())]
            + ["--database-url", f"sqlite://{tmp_path / 'm.sqlite3'}", "--metrics-port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"Error: Cannot listen on 127.0.0.1:{port}: Address already in use"
    )


@pytest.fixture(autouse=True)
def _no_metrics_token_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATROOM_METRICS_TOKEN", raising=False)
