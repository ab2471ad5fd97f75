"""benchmarks/store_cost.py runs, on SQLite and the shared Redis, and sees what it measures.

Not a timing test: it checks that the tool behind the README's per-message figures
still stores every message and that the publishing process, on this tree, gets
none of its own payloads back from Redis (the script asserts both as it goes).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ..conftest import ROOT, SHARED_REDIS, redis_answers, service_missing

SCRIPT = ROOT / "benchmarks" / "store_cost.py"


async def test_store_cost_measures_the_store_and_the_publish_path(tmp_path: Path) -> None:
    if not await redis_answers(SHARED_REDIS):
        service_missing(f"Redis at {SHARED_REDIS}")
    out = tmp_path / "cost.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--redis", SHARED_REDIS, "--messages", "64",
        "--json", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    results = json.loads(out.read_text())
    assert Path(results["code"]) == ROOT
    assert results["hiredis"] is True  # a dependency: replies are parsed in C
    broker = results["broker, redis"]
    assert broker["road"] == "deliver here, skip the echo"
    store = results["store, sqlite"]
    for row in ("batch 1", "batch 64", "batch 16, client IDs"):
        assert store[row]["messages"] >= 64 and store[row]["cpu_us_per_msg"] > 0
    for row in ("batch 1", "batch 16", "batch 64"):
        assert broker[row]["messages"] >= 64
    assert "broker, redis (deliver here, skip the echo)" in stdout.decode()
