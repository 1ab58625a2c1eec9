"""Private redis-server processes for the production-Redis tests: TLS with a test CA, an ACL
user, a primary with two replicas and three sentinels. Each on free ports in its own tmp dir; the
shared Redis on 6379 is never touched."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from fake_hubspot.control import free_port

READY = b"Ready to accept connections"


@dataclass
class RedisServer:
    """One redis-server (or sentinel) process; `args` are its command-line options."""

    workdir: Path
    port: int
    args: list[str]
    name: str = "redis"
    ready: bytes = READY  # the log line that says it serves
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, ready_timeout_s: float = 10) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", *self.args, "--logfile", str(self.log), "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.log.exists() and self.ready in self.log.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        self.stop()
        pytest.fail(f"{self.name} did not start on port {self.port}:\n{text[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def replicas_online(primary: redis.Redis) -> int:
    """Return how many replicas of the primary are linked and in sync."""
    info = primary.info("replication")
    return sum(
        1
        for k, v in info.items()
        if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
    )


def plain_server(workdir: Path, *extra: str, name: str = "redis") -> RedisServer:
    """Return (not started) a redis-server on a free loopback port, no persistence."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--repl-diskless-sync-delay", "0"]  # a replica links at once, not after 5 s
    return RedisServer(workdir / name, port, [*args, *extra], name)


@dataclass(frozen=True)
class CertFiles:
    """A CA and the certificates it signed: the server's (for 127.0.0.1) and a client's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_test_ca(workdir: Path) -> CertFiles:
    """Return a fresh CA with a server certificate for 127.0.0.1/localhost and a client one."""
    workdir.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=eventq test CA")  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out",
            f"{who}.csr", "-subj", f"/CN=eventq test {who}")  # fmt: skip
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
            "-extfile", "san.ext")  # fmt: skip
    return CertFiles(
        workdir / "ca.pem",
        workdir / "server.pem",
        workdir / "server.key",
        workdir / "client.pem",
        workdir / "client.key",
    )


def tls_supported() -> bool:
    """Return True when this redis-server was built with TLS: it then refuses `--tls-port`
    without a key file, rather than the option itself."""
    found = subprocess.run(
        ["redis-server", "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "tls-key-file" in found.stdout + found.stderr


@dataclass
class SentinelSet:
    """A primary, two replicas and three sentinels (quorum 2) watching them as `mymaster`.

    Two replicas, so that after the primary dies and one replica is promoted, the other
    replicates from it and durable writes (`WAIT 1`) can be confirmed again; three sentinels, so
    that a failover needs two of them to agree, as in production.
    """

    primary: RedisServer
    replicas: list[RedisServer]
    sentinels_running: list[RedisServer]
    master: str = "mymaster"

    @property
    def sentinels(self) -> str:
        """The EVENTQ_REDIS_SENTINELS value."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels_running)

    def primary_port(self) -> int:
        """Return the port the first sentinel names as primary now."""
        client = redis.Redis(port=self.sentinels_running[0].port, socket_timeout=2)
        host_port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        client.close()
        return int(host_port[1])

    def stop(self) -> None:
        for server in (*self.sentinels_running, *self.replicas, self.primary):
            server.stop()


def start_sentinel_set(workdir: Path, *, down_after_ms: int = 1500) -> SentinelSet:
    """Start a primary, two replicas (linked before returning) and three sentinels that know
    them all."""
    started: list[RedisServer] = []
    try:
        return _start_sentinel_set(workdir, down_after_ms, started)
    except BaseException:
        for server in started:
            server.stop()
        raise


def _start_sentinel_set(
    workdir: Path, down_after_ms: int, started: list[RedisServer]
) -> SentinelSet:
    primary = plain_server(workdir, name="primary")
    started.append(primary)
    primary.start()
    replicas = []
    for name in ("replica1", "replica2"):
        replica = plain_server(workdir, "--replicaof", "127.0.0.1", str(primary.port), name=name)
        started.append(replica)
        replicas.append(replica.start())
    client = redis.Redis(port=primary.port)
    deadline = time.monotonic() + 10
    while replicas_online(client) < len(replicas):
        if time.monotonic() > deadline:
            pytest.fail("the replica did not link to the primary within 10 s")
        time.sleep(0.05)
    client.close()
    sentinels = []
    for n in range(1, 4):
        port = free_port()
        conf = workdir / f"sentinel{n}" / "sentinel.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\n"
            f"sentinel monitor mymaster 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        sentinel = RedisServer(
            conf.parent, port, [str(conf), "--sentinel"], "sentinel", b"+monitor master"
        )
        started.append(sentinel)
        sentinels.append(sentinel.start())
    deadline = time.monotonic() + 15
    for sentinel in sentinels:
        watcher = redis.Redis(port=sentinel.port, socket_timeout=2)
        while not _knows_all(watcher, len(replicas), len(sentinels) - 1):
            if time.monotonic() > deadline:
                pytest.fail("the sentinels did not discover the replicas and each other in 15 s")
            time.sleep(0.1)
        watcher.close()
    return SentinelSet(primary, replicas, sentinels)


def _knows_all(watcher: redis.Redis, replicas: int, other_sentinels: int) -> bool:
    """Return True once a sentinel has found every replica and every other sentinel."""
    found_replicas = watcher.execute_command("SENTINEL", "REPLICAS", "mymaster")
    found_sentinels = watcher.execute_command("SENTINEL", "SENTINELS", "mymaster")
    return len(found_replicas) >= replicas and len(found_sentinels) >= other_sentinels
