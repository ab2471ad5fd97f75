"""Prometheus metrics, defined once. No web framework here.

With several workers, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before any worker starts, and /metrics aggregates every worker's
figures (prometheus-client's multiprocess mode): gauges are summed over live
workers. Labelled children used on the hot path are bound here, once.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS = Gauge(
    "chatroom_connections", "Open websocket connections.", multiprocess_mode="livesum"
)
ROOMS = Gauge(
    "chatroom_rooms_local",
    "Rooms with at least one connection in this process.",
    multiprocess_mode="livesum",
)
MESSAGES_RECEIVED = Counter("chatroom_messages_received", "Client messages stored and published.")
MESSAGES_DELIVERED = Counter("chatroom_messages_delivered", "Message frames queued to connections.")
_DROPPED = Counter("chatroom_messages_dropped", "Client frames not stored, by reason.", ["reason"])
DROPPED_RATE_LIMITED = _DROPPED.labels("rate_limited")
DROPPED_MUTED = _DROPPED.labels("muted")
DROPPED_INVALID = _DROPPED.labels("invalid")
DROPPED_STORE_FAILED = _DROPPED.labels("store_failed")
SLOW_CONSUMER_DISCONNECTS = Counter(
    "chatroom_slow_consumer_disconnects", "Connections closed because their queue overflowed."
)
BROADCAST_LATENCY = Histogram(
    "chatroom_broadcast_latency_seconds",
    "From a client frame's arrival to its message being stored and published.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COMMIT_BATCH = Histogram(
    "chatroom_message_commit_batch_size",
    "Messages stored per database commit (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
HEADER_TIMEOUTS = Counter(
    "chatroom_http_header_timeouts",
    "Connections dropped because their request headers missed CHATROOM_HEADER_TIMEOUT.",
)
HTTP_REQUESTS = Counter(
    "chatroom_http_requests", "HTTP requests by route and status.", ["route", "status"]
)


def registry() -> CollectorRegistry:
    """What /metrics shows: every worker's figures in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)  # type: ignore[no-untyped-call]
        return aggregated
    return DEFAULT_REGISTRY


def render() -> tuple[bytes, str]:
    """The exposition text, aggregated over workers in multiprocess mode."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def token_allows(authorization: str | None, token: str | None) -> bool:
    """Whether an Authorization header value carries `token` as Bearer (always, when
    no token is configured). Compared in constant time: no timing hints about it."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
