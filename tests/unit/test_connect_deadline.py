"""The start-up connect's time-box (db.connect): fixed, or cut to the CLI's deadline."""

from __future__ import annotations

import time

from chatroom_server import db
from chatroom_server.cli_support import START_BUDGET, _process_started, start_up_deadline


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
