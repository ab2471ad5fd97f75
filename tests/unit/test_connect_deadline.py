"""The start-up connect's time-box (db.connect): fixed, or cut to the CLI's deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chatroom_server import db
from chatroom_server.cli_support import START_BUDGET, _process_started, start_up_deadline


@pytest.fixture(autouse=True)
def nothing_answered_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other tests in this process may have connected already.
    monkeypatch.setattr(db, "_answered", False)


def test_without_a_deadline_the_time_box_is_fixed() -> None:
    assert db._connect_timeout() == db.CONNECT_TIMEOUT


def test_a_deadline_cuts_it_but_never_below_the_minimum() -> None:
    with db.connect_deadline(time.monotonic() + 60):
        assert db._connect_timeout() == db.CONNECT_TIMEOUT
    with db.connect_deadline(time.monotonic() - 60):
        assert db._connect_timeout() == db.MIN_CONNECT_TIMEOUT
    with db.connect_deadline(time.monotonic() + 2.0):
        assert db.MIN_CONNECT_TIMEOUT < db._connect_timeout() <= 2.0
    assert db._connect_timeout() == db.CONNECT_TIMEOUT  # left as it was


def test_the_cli_deadline_counts_from_the_process_start() -> None:
    started = _process_started()
    assert started <= time.monotonic()
    with start_up_deadline():
        deadline = db._deadline.get()
        assert deadline is not None
        assert abs(deadline - (started + START_BUDGET)) < 0.1  # /proc counts in ticks
    assert db._deadline.get() is None


async def test_once_a_database_answered_later_connects_get_the_whole_time_box(
    tmp_path: Path,
) -> None:
    # The deadline is for failing fast at start: a second database (copy-data's target,
    # say) must not be left with what remains of it.
    with db.connect_deadline(time.monotonic() - 60):
        assert db._connect_timeout() == db.MIN_CONNECT_TIMEOUT
        await db.connect(f"sqlite://{tmp_path / 'a.sqlite3'}")
        try:
            assert db._connect_timeout() == db.CONNECT_TIMEOUT
        finally:
            await db.close_database()
