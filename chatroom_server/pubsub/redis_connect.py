"""How this package reaches Redis: one standalone server, or a Redis Cluster.

`--redis-cluster` says the URL names a node of a cluster; the clients are then
`RedisCluster`, which route each key (and each sharded channel) to the master of
its hash slot. The mode must match the server's: a standalone client pointed at
a cluster node works for pub/sub (PUBLISH is broadcast to every node) but its
scripts fail on keys of other nodes, and that half-working state is what
`mode_problem` refuses, at start and whenever the broker (re)connects.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from ..settings import mask_url

# The one client type the presence and limit stores need: both have the commands.
Client = Redis | RedisCluster

# What a call to Redis may raise when Redis (or a cluster's slot) is out of reach:
# redis-py's errors, its cluster errors (a slot uncovered during a failover, which
# are not RedisErrors), and the builtin TimeoutError (an OSError) on socket timeouts.
FAILURES = (RedisError, RedisClusterException, OSError)
# Connections of one client to a standalone Redis, at most.
POOL_CONNECTIONS = 100


def make_client(url: str, cluster: bool, timeout: float, **options: Any) -> Client:
    """A client for `url`: standalone, or a cluster client that follows slot owners."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": True,
        **options,
    }
    if cluster:
        # One retry: after a failover the first attempt meets the dead master, and
        # the retry follows the refreshed slot map (no backoff: callers fail fast).
        common.setdefault("retry", Retry(NoBackoff(), 1))
        return RedisCluster.from_url(url, **common)
    # A pool that makes a burst wait for a connection (at most `timeout`) rather than
    # fail: redis-py's default pool raises MaxConnectionsError past 100 connections in
    # use, which a reconnect storm's thousands of connects at once reach (each takes
    # connection slots and presence): the limits then fell back to per-process counts.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=timeout, **common
    )
    return Redis.from_pool(pool)


def mode_problem(cluster_enabled: bool, cluster: bool, url: str) -> str | None:
    """The one-line refusal when the server's mode and `--redis-cluster` disagree."""
    where = mask_url(url)
    if cluster_enabled and not cluster:
        return (
            f"The Redis at {where} is a Redis Cluster node: start with --redis-cluster "
            "(CHATROOM_REDIS_CLUSTER=1), or point --redis-url at a standalone Redis."
        )
    if cluster and not cluster_enabled:
        return (
            f"--redis-cluster is set but the Redis at {where} is not a cluster node "
            "(cluster_enabled:0): drop the flag, or point --redis-url at a cluster node."
        )
    return None


async def check_mode(url: str, cluster: bool, timeout: float = 1.5) -> str | None:
    """Ask the node at `url` whether it is a cluster node (INFO cluster); None when
    that agrees with `cluster`, else the refusal. Raises RedisError/OSError when
    the node cannot be asked."""
    client = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        info = await client.info("cluster")
    finally:
        await client.aclose()
    return mode_problem(bool(int(info.get("cluster_enabled", 0))), cluster, url)


async def refusal(url: str, cluster: bool, timeout: float = 1.5) -> str | None:
    """`check_mode` for a start-up check: None also when the node cannot be asked
    now (a server starts anyway, retries in the background and /readyz says so)."""
    try:
        return await check_mode(url, cluster, timeout)
    except FAILURES:
        return None
