"""The architecture's seams, checked on the source: who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import chatroom_server

PACKAGE = Path(chatroom_server.__file__).parent
FRAMEWORKS = {"sanic", "sanic_ext", "websockets", "tortoise", "redis", "asyncpg", "aiosqlite"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def modules(under: str) -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def test_realtime_imports_no_framework_broker_or_database_driver() -> None:
    found = {p.name: imported_roots(p) & (FRAMEWORKS | {"sqlite3"}) for p in modules("realtime")}
    assert {name: roots for name, roots in found.items() if roots} == {}


def test_redis_is_imported_only_under_pubsub() -> None:
    users = [p for p in PACKAGE.rglob("*.py") if "redis" in imported_roots(p)]
    assert users and all(p.parent.name == "pubsub" for p in users), users


def test_the_orm_is_touched_only_in_db_services_and_the_internals_adapter() -> None:
    allowed = {PACKAGE / "db", PACKAGE / "services", PACKAGE / "web" / "internals"}
    users = [p for p in PACKAGE.rglob("*.py") if "tortoise" in imported_roots(p)]
    outside = [p for p in users if not any(p.is_relative_to(a) for a in allowed)]
    assert outside == []


def test_sql_text_lives_in_the_stores_not_in_services() -> None:
    for path in modules("services"):
        text = path.read_text()
        for keyword in ("SELECT ", "INSERT INTO", "UPDATE rooms"):
            assert keyword not in text, f"{path.name} has SQL ({keyword.strip()})"


def test_private_framework_attributes_are_used_only_in_the_internals_adapter() -> None:
    adapter = PACKAGE / "web" / "internals"
    private = (
        "_callback_check_timeouts",
        "_enable_global_fallback",
        "recv_cancel",
        "assembler",
        "ws.pings",
        "._state",
        "wait_for_ack",
        "request_max_size",
    )
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(adapter):
            continue
        text = path.read_text()
        assert not [name for name in private if name in text], path


def test_importing_the_real_time_layer_loads_no_framework_or_driver() -> None:
    """Not directly, and not through what it imports either (the db package, say)."""
    import subprocess
    import sys

    probe = (
        "import sys, chatroom_server.realtime.relay, chatroom_server.realtime.session;"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(ast.literal_eval(result.stdout))
    assert loaded & FRAMEWORKS == set()
