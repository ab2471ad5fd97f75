"""Our connection protocol (the header deadline) under Sanic's own launcher.

`chatroom-server serve` hands Sanic its protocol class (`protocol=` of prepare).
`sanic chatroom_server.app:create_app --factory` calls prepare itself, without
one, so Sanic would serve on its own WebSocketProtocol. Sanic keeps what prepare
was given in `app.state.server_info[*].settings` (undocumented) and hands it to
every worker after the main_process_start listeners ran: set the protocol there.
If that state is not there (a new release), or the launcher runs a single
process (`--single-process` starts no main_process_start listener), Sanic's own
protocol serves: the header timeout then restarts on every byte read.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("chatroom_server.web")


def several_processes(args: object) -> bool:
    """Whether Sanic's launcher was asked for more than one worker: `--workers N` or
    `--fast` in the argument namespace it hands the factory (not a documented API)."""
    return (getattr(args, "workers", 1) or 1) > 1 or bool(getattr(args, "fast", False))


def serve_protocol_under_launcher(app: Any, protocol: type) -> None:
    """Register a main_process_start listener that makes `protocol` the one served."""

    def use_protocol(app: Any) -> None:
        infos = getattr(getattr(app, "state", None), "server_info", None)
        found = [getattr(info, "settings", None) for info in infos or ()]
        settings = [s for s in found if isinstance(s, dict) and "protocol" in s]
        if not settings or len(settings) != len(found):
            log.warning(
                "Sanic's server settings are not where they were: Sanic's own connection "
                "protocol serves, and the header timeout restarts on every byte read"
            )
            return
        for entry in settings:
            if entry["protocol"] is None or issubclass(protocol, entry["protocol"]):
                entry["protocol"] = protocol

    app.main_process_start(use_protocol)
