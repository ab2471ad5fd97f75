"""One frozen Settings object: command-line flags > CHATROOM_* environment > defaults.

Nothing else in the package reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "CHATROOM_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    dev: bool = False
    database_url: str = "sqlite://chatroom.sqlite3"
    redis_url: str | None = None
    # Prefix of every Redis key and channel, so several deployments can share a Redis.
    redis_prefix: str = "chatroom"
    # None: a random secret is generated once and stored in the database.
    jwt_secret: str | None = field(default=None, repr=False)
    token_ttl: int = 86400
    bcrypt_rounds: int = 12
    cors_origins: str = "*"
    ws_origins: str = "*"
    max_frame_bytes: int = 65536
    max_message_chars: int = 4000
    ws_rate: float = 10.0
    ws_burst: int = 20
    ws_queue: int = 1000
    max_body_bytes: int = 1048576
    login_failures: int = 10
    login_window: int = 900
    ping_interval: float = 20.0
    presence_ttl: int = 30
    log_level: str = "INFO"
    log_format: str = "text"
    # How often a process looks for deleted rooms that still have open sockets.
    room_check_interval: float = 2.0
    # "auto": websockets take the fast path through Sanic's internals when they are
    # all there (web/internals); "off": Sanic's public API only, slower.
    internals: str = "auto"

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "jwt_secret" and value is not None:
                value = "***"
            elif f.name in ("database_url", "redis_url") and value:
                value = mask_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment, then apply non-None overrides (flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be greater than zero.")

        for name in (
            "port",
            "workers",
            "token_ttl",
            "max_frame_bytes",
            "max_message_chars",
            "ws_rate",
            "ws_burst",
            "ws_queue",
            "max_body_bytes",
            "login_failures",
            "login_window",
            "ping_interval",
            "presence_ttl",
            "room_check_interval",
        ):
            positive(name)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("The log level must be one of DEBUG, INFO, WARNING, ERROR.")
        if self.log_format not in ("text", "json"):
            raise ConfigError("The log format must be text or json.")
        if self.internals not in ("auto", "off"):
            raise ConfigError("CHATROOM_INTERNALS must be auto or off.")
        if not 4 <= self.bcrypt_rounds <= 31:
            raise ConfigError("CHATROOM_BCRYPT_ROUNDS must be between 4 and 31.")
        if self.port > 65535:
            raise ConfigError("The port must be between 1 and 65535.")
        scheme = self.database_url.split("://", 1)[0]
        if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg"):
            raise ConfigError(
                f"The database URL must start with sqlite:// or postgres:// (got {scheme!r})."
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError("The Redis URL must start with redis://, rediss:// or unix://.")
        if self.jwt_secret is not None and len(self.jwt_secret) < 16:
            raise ConfigError("CHATROOM_JWT_SECRET must be at least 16 characters long.")

    @property
    def ws_origin_list(self) -> tuple[str, ...]:
        return _split(self.ws_origins)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _split(self.cors_origins)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{_env_name(name)} has an invalid value: {raw!r}.") from None
    return raw


def mask_url(url: str) -> str:
    """Hide the password of a URL such as postgres://user:secret@host/db."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else url
