"""A real Redis Cluster for tests: 3 masters and 3 replicas from `redis-server` on
free loopback ports, each in its own directory, killed by PID at the end.

Made with `redis-cli --cluster create ... --cluster-replicas 1`, then waited on
until every node says cluster_state:ok and agrees on who owns every slot. A test
may kill the master of a key's slot and wait for its replica's promotion.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port, service_missing

NODE_TIMEOUT_MS = 1000  # how soon a dead master is failed over
START_TIMEOUT = 30.0


class LocalCluster:
    def __init__(self, directory: Path, size: int = 6) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(size)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A URL naming one node (a live one: the first whose process runs)."""
        port = next(p for p in self.ports if self.alive(p))
        return f"redis://127.0.0.1:{port}/0"

    def alive(self, port: int) -> bool:
        proc = self.procs.get(port)
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True)
            self.procs[port] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
                + ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
                + ["--cluster-config-file", "nodes.conf", "--dir", str(node_dir)]
                + ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
                + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports:
            while self.cli(port, "PING", check=False) != "PONG":
                assert self.alive(port), f"redis-server on {port} exited at start"
                assert time.monotonic() < deadline, f"redis-server on {port} did not answer"
                time.sleep(0.02)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{port}" for port in self.ports]
            + ["--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        self.wait_ok()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def cli(self, port: int, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def masters(self, port: int) -> dict[str, tuple[int, list[tuple[int, int]]]]:
        """CLUSTER NODES as one node sees it: master ID -> (port, slot ranges), live ones."""
        found = {}
        for line in self.cli(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            ranges = []
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated
                low, _, high = part.partition("-")
                ranges.append((int(low), int(high or low)))
            found[fields[0]] = (int(fields[1].split(":")[1].split("@")[0]), ranges)
        return found

    def master_of(self, key: str) -> int:
        """The port of the master that owns `key`'s slot (CLUSTER KEYSLOT, CLUSTER NODES)."""
        port = next(p for p in self.ports if self.alive(p))
        slot = int(self.cli(port, "CLUSTER", "KEYSLOT", key))
        for master_port, ranges in self.masters(port).values():
            if any(low <= slot <= high for low, high in ranges):
                return master_port
        raise AssertionError(f"no master owns slot {slot}")

    def wait_ok(self, timeout: float = START_TIMEOUT) -> None:
        """Every live node: cluster_state:ok, replicas in sync with their master, and all
        agree on the owners of the 16384 slots."""
        deadline = time.monotonic() + timeout
        while True:
            views = []
            states = []
            for port in self.ports:
                if not self.alive(port):
                    continue
                states.append("cluster_state:ok" in self.cli(port, "CLUSTER", "INFO", check=False))
                # A replica that never synced counts its data as too old to take over.
                replication = self.cli(port, "INFO", "replication", check=False)
                states.append("role:slave" not in replication or "link_status:up" in replication)
                try:
                    views.append(sorted(self.masters(port).values()))
                except (AssertionError, IndexError, ValueError):
                    views.append([])
            covered = views and sum(h - lo + 1 for _, r in views[0] for lo, h in r) == 16384
            if all(states) and covered and all(v == views[0] for v in views):
                return
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.1)

    def kill_master_of(self, key: str) -> int:
        """SIGKILL the master of `key`'s slot, then wait until its replica is promoted."""
        port = self.master_of(key)
        self.procs[port].kill()
        self.procs[port].wait()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.master_of(key) != port:
                    break
            except AssertionError:
                pass  # the slot is uncovered while the replica is being promoted
            assert time.monotonic() < deadline, "the replica was not promoted"
            time.sleep(0.1)
        self.wait_ok()
        return port


def cluster_tools() -> None:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} (the executable), for a local Redis Cluster")


def started_cluster(directory: Path) -> Iterator[LocalCluster]:
    cluster_tools()
    cluster = LocalCluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster shared by the tests that do not kill its nodes."""
    yield from started_cluster(tmp_path_factory.mktemp("redis-cluster"))


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of the test's own, for a test that kills a master."""
    yield from started_cluster(tmp_path / "redis-cluster")
