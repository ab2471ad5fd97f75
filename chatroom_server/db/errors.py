"""Turning ORM and driver failures into domain errors, in one place for every store and service."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from tortoise.exceptions import BaseORMException, IntegrityError

from ..errors import StorageError

log = logging.getLogger("chatroom_server.storage")

UNAVAILABLE = "The database is unavailable; please try again."


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise database failures as StorageError; IntegrityError is left to the caller."""
    try:
        yield
    except IntegrityError:
        raise
    except (BaseORMException, OSError, ConnectionError) as exc:
        log.error("database error: %s", type(exc).__name__)
        raise StorageError(UNAVAILABLE) from exc
