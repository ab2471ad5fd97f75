"""The cluster broker's own connections to each master keep the URL's TLS settings."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from chatroom_server.pubsub.redis_cluster import node_tls_options


def test_a_rediss_url_gives_each_node_connection_tls_with_its_options() -> None:
    # from_url opens no connection: these are the options the broker reads.
    cluster = RedisCluster.from_url(
        "rediss://:pw@127.0.0.1:7000/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem"
    )
    options = node_tls_options(cluster.nodes_manager.connection_kwargs)
    assert options["ssl"] is True
    assert options["ssl_ca_certs"] == "/etc/ssl/ca.pem"
    assert options["ssl_cert_reqs"] == "required"
    # What the plain client builds from them is a TLS connection with the same CA.
    node = Redis(host="127.0.0.1", port=7000, **options)
    kwargs = node.connection_pool.connection_kwargs
    assert node.connection_pool.connection_class is SSLConnection
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"


def test_a_redis_url_stays_plain() -> None:
    cluster = RedisCluster.from_url("redis://127.0.0.1:7000/0")
    assert node_tls_options(cluster.nodes_manager.connection_kwargs) == {"ssl": False}
