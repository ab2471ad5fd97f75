"""Logging for `serve`: one line per event, as text or JSON, with tokens redacted.

Only our loggers, Tortoise's and Sanic's get handlers; the root logger is left
alone. Nothing here ever formats a password, a token or a message body.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
SECRET_PARAMS = frozenset({"jwt", "token", "password"})

access_log = logging.getLogger("chatroom_server.access")


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message"} (+ "exc" for tracebacks), one object a line;
    a record's `fields` (extra={"fields": {...}}) are added as keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return json_line(
            record.levelname,
            record.name,
            record.getMessage(),
            created=record.created,
            exc=exc,
            fields=getattr(record, "fields", None),
        )


def json_line(
    level: str,
    logger: str,
    message: str,
    *,
    created: float | None = None,
    exc: str | None = None,
    fields: dict[str, Any] | None = None,
) -> str:
    """One log line as JSON; also what the CLI prints in --log-format json mode."""
    created = time.time() if created is None else created
    entry: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created * 1000) % 1000:03d}Z",
        "level": level,
        "logger": logger,
        "message": message,
    }
    if fields:
        entry.update((k, v) for k, v in fields.items() if k not in entry)
    if exc:
        entry["exc"] = exc
    return orjson.dumps(entry).decode()


def redact_query(query: str) -> str:
    """The query string with the values of secret parameters replaced by ***."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, logger_level in (
        ("chatroom_server", level),
        ("sanic.root", level),
        ("sanic.error", level),
        ("sanic.server", level),
        ("sanic.websockets", "WARNING"),
        ("sanic.access", "WARNING"),  # it would log raw URLs; ours redacts them
        ("tortoise", "WARNING"),
        # "Task was destroyed" and the like: as lines of the chosen format, not bare text.
        ("asyncio", "WARNING"),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logger_level)
