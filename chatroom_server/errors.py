"""The one error hierarchy of chatroom-server.

Services raise these; `web.errors` turns them into HTTP responses, `web.ws` into
websocket error frames or close codes, and the CLI into one line on stderr.
Each carries a user-facing sentence that never contains a secret.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base class: `status` is the HTTP status, `code` the websocket error code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ChatError):
    """A setting or flag has an invalid value."""

    status = 500
    code = "config_error"


class BadRequest(ChatError):
    status = 400
    code = "invalid_request"


class Unauthorized(ChatError):
    status = 401
    code = "unauthorized"


class Forbidden(ChatError):
    status = 403
    code = "forbidden"


class NotFound(ChatError):
    status = 404
    code = "not_found"


class Conflict(ChatError):
    status = 409
    code = "conflict"


class RateLimited(ChatError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class ShuttingDown(ChatError):
    """The server is stopping: a websocket opened now would be closed at once."""

    status = 503
    code = "shutting_down"
    retry_after = 1


class StorageError(ChatError):
    """The database could not do what was asked (it is down, or refused)."""

    status = 503
    code = "storage_error"


class InvalidMessage(ChatError):
    """A websocket frame from a client was rejected; the connection stays open."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
