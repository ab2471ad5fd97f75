"""Token signing keys, picked up without a restart, and the sockets of retired keys.

`rotate-secret` (the CLI) adds a key to the database; this process then signs
new tokens with it and, once the grace period of the keys it replaced ends,
refuses their tokens (security.KeyRing checks each key's end on every verify)
and closes the sockets those tokens opened, with 1008, as an ended session's
(Revocations.close_where): a socket lives no longer than the token that opened
it, as at its expiry.

How a rotation is noticed: the key IDs are read every `every` seconds (a table
of a few rows; services/secrets.keys_version); when they changed the keys are
read again. With Redis the CLI also announces the rotation in the control room and
the keys are read at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .. import protocol
from ..security import KeyRing, TokenService
from .connection import CLOSE_POLICY
from .revocations import Revocations

log = logging.getLogger("chatroom_server.realtime")

KEY_RETIRED = "signing key retired"
# Seconds: how often a token with an unknown kid may make a process read the keys.
# Another host signs with a new key as soon as it has read it; this one would answer
# 401 until its next poll (about a second) without this.
CATCH_UP_EVERY = 1.0


class KeyWatch:
    def __init__(
        self,
        load: Callable[[], Awaitable[KeyRing]],
        version: Callable[[], Awaitable[str | None]],
        revocations: Revocations,
        every: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self._version = version
        self.revocations = revocations
        self.every = every
        self._clock = clock
        self.tokens: TokenService | None = None
        self._known: str | None = None
        self._checked_at = 0.0  # unix seconds: ends of keys before this were handled
        self._task: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        self._caught_up_at = -CATCH_UP_EVERY  # time.monotonic() of the last catch_up

    async def catch_up(self) -> bool:
        """A token names a key we do not hold: read the keys now, at most once every
        CATCH_UP_EVERY seconds (a forged kid must not become a query per request).
        True when the keys were read."""
        now = time.monotonic()
        if now - self._caught_up_at < CATCH_UP_EVERY:
            return False
        self._caught_up_at = now
        try:
            await self.refresh()
        except Exception:
            log.warning("could not read the signing keys; the next poll tries again")
            return False
        return True

    async def open(self, ttl: int) -> TokenService:
        """Read the keys once (before the server takes requests); the token service."""
        self._known = await self._version()
        self.tokens = TokenService(await self._load(), ttl)
        self._checked_at = self._clock()
        return self.tokens

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="signing-keys")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._reload) if t is not None]
        self._task = self._reload = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def hear(self, payload: str) -> None:
        """Control-room callback: a rotation was announced; read the keys now."""
        try:
            protocol.parse_key_rotation(payload)
        except ValueError:
            log.warning("ignoring a malformed key announcement")
            return
        if self._reload is None or self._reload.done():
            self._reload = asyncio.create_task(self._heard(), name="signing-keys-reload")

    async def _heard(self) -> None:
        try:
            await self.refresh(force=True)
        except Exception:
            log.warning("could not read the signing keys; the next poll tries again")

    async def refresh(self, force: bool = False) -> None:
        """Read the keys again if a rotation added one (or `force`), then close the
        sockets whose key stopped verifying since the last look."""
        assert self.tokens is not None, "open() first"
        version = await self._version()
        if force or version != self._known:
            self.tokens.use(await self._load())
            log.info("signing keys reloaded: current=%s", self.tokens.ring.current.kid)
            self._known = version
            self._checked_at = 0.0  # a key may be gone altogether: look at every socket
        self.close_retired()

    def close_retired(self) -> int:
        """Close the sockets whose key ended since the last call (one pass over the
        sockets only when some key's end was crossed)."""
        assert self.tokens is not None, "open() first"
        now = self._clock()
        crossed = any(self._checked_at <= end < now for end in self.tokens.ring.ends())
        first = self._checked_at == 0.0
        self._checked_at = now
        if not (crossed or first):
            return 0
        tokens = self.tokens
        return self.revocations.close_where(
            lambda identity: not tokens.accepts(identity, now), CLOSE_POLICY, KEY_RETIRED
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.refresh()
            except Exception:
                log.warning("could not read the signing keys", exc_info=True)
