"""Running several worker processes under Sanic's manager, safely.

Two behaviours of Sanic's WorkerManager (25.12) need help:

- A SIGTERM/SIGINT that arrives before every worker acknowledged its start makes
  WorkerManager.wait_for_ack re-queue its own stop message forever: the main
  process hangs with its workers. Workers still starting also get SIGINT as a
  KeyboardInterrupt traceback, or hang on the database thread. So until every
  server worker serves (bounded), a stop signal is only remembered; then Sanic's
  own handler runs: the usual graceful stop (websockets closed with 1001).
- WorkerManager.kill SIGKILLs each worker's process *group*, which is ours, and
  so also whatever started us (a supervisor, a test runner). We kill our
  workers by PID instead.

Both replace methods of the manager and read its undocumented state. If a release
lacks any of it (MANAGER_ATTRIBUTES), one warning names it and the manager runs
unpatched: Sanic's own behaviour, with the two faults above.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from sanic import Sanic
from sanic.log import logger

# How long a stop signal that arrives while workers start waits for them to serve.
SERVING_WAIT = 10.0
_HELD = (signal.SIGINT, signal.SIGTERM)
MANAGER_ATTRIBUTES = (
    "wait_for_ack",
    "kill",
    "shutdown_signal",
    "worker_state",
    "num_server",
    "processes",
)


def missing_in_manager(manager: Any) -> list[str]:
    missing = [f"WorkerManager.{name}" for name in MANAGER_ATTRIBUTES if not hasattr(manager, name)]
    try:
        from sanic.worker.constants import ProcessState

        ProcessState.TERMINATED  # noqa: B018
    except (ImportError, AttributeError):
        missing.append("sanic.worker.constants.ProcessState.TERMINATED")
    return missing


def serve_with_manager(app: Any, loader: Any) -> None:
    """Sanic.serve(primary=app, app_loader=loader), with the two fixes above."""
    received: list[int] = []

    def remember(signum: int, frame: Any) -> None:
        if not received:
            logger.info(
                "Received signal %s while starting; stopping once the workers serve.",
                signal.Signals(signum).name,
            )
        received.append(signum)

    previous = {signum: signal.signal(signum, remember) for signum in _HELD}

    def patch_manager(app: Any) -> None:  # main_process_ready: manager exists, no worker yet
        manager = app.manager
        missing = missing_in_manager(manager)
        if missing:
            logger.warning(
                "Sanic WorkerManager internals missing (%s): running it unpatched",
                ", ".join(missing),
            )
            if received:  # Sanic's own handlers are in place by now: let them have it
                os.kill(os.getpid(), received[0])
            return
        sanic_handlers = {signum: signal.signal(signum, remember) for signum in _HELD}
        wait_for_ack = manager.wait_for_ack

        def all_serving() -> bool:
            states = [s for s in manager.worker_state.values() if s.get("server")]
            return len(states) >= manager.num_server and all(s.get("serving") for s in states)

        def wait_until_serving() -> None:
            try:
                wait_for_ack()  # raises ServerKilled if a worker fails to start
                deadline = time.monotonic() + SERVING_WAIT
                while not all_serving() and time.monotonic() < deadline:
                    if not all(process.is_alive() for process in manager.processes):
                        break
                    time.sleep(0.05)  # the manager offers no event for "serving"
            finally:
                for signum, handler in sanic_handlers.items():
                    signal.signal(signum, handler)
            if received:
                manager.shutdown_signal(received[0], None)

        def kill() -> None:
            from sanic.exceptions import ServerKilled
            from sanic.worker.constants import ProcessState

            for process in manager.processes:
                logger.info("Killing %s [%s]", process.name, process.pid)
                with contextlib.suppress(OSError, EOFError):
                    process.set_state(ProcessState.TERMINATED, force=True)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            raise ServerKilled

        manager.wait_for_ack = wait_until_serving
        manager.kill = kill

    app.main_process_ready(patch_manager)
    try:
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
