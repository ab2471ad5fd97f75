"""Fixtures of the process layer: `chatroom-server serve` as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import free_port


class ServeProcess:
    def __init__(
        self, database_url: str, cwd: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CHATROOM_BCRYPT_ROUNDS": "4", **(env or {})}
        env.pop("CHATROOM_JWT_SECRET", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatroom_server",
                "serve",
                "--port",
                str(self.port),
                "--database-url",
                database_url,
                *extra,
            ],
            cwd=cwd,
            env=env,
            # Its own process group, so that cleanup can take its workers down with it.
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    async def ready(self) -> None:
        """Wait until /healthz answers (or the process dies)."""
        async with httpx.AsyncClient(base_url=self.base, timeout=1) as client:
            for _ in range(200):
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited early:\n{self.output()}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # nothing to wait on but the port opening
        raise AssertionError("serve did not become ready")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not stop on SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL the server and every process it started (workers, helpers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        if self.proc.poll() is None:
            self.kill()
        assert self.proc.stdout is not None
        return self.proc.stdout.read()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Serve processes a test started (append them): killed, with their workers, at the end."""
    started: list[ServeProcess] = []
    yield started
    for p in started:
        p.kill()
