"""Embedded PostgreSQL and Redis: real servers that start, keep their data, and never outlive us."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from services.common.embedded import (
    POSTGRES_SYSTEM_USER,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    find_free_port,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's base folder is private to root, and PostgreSQL runs as another user.
    with tempfile.TemporaryDirectory(prefix="ringfence-embedded-") as folder:
        yield Path(folder)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it waits only for its parent to read its status.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


async def test_postgres_serves_its_database_and_keeps_data_across_restarts(server_dir):
    with EmbeddedPostgres(server_dir) as server:
        port = server.port
        assert server.url == f"postgresql://postgres@127.0.0.1:{port}/ringfence"
        connection = await asyncpg.connect(server.url)
        try:
            assert await connection.fetchval("SELECT current_database()") == "ringfence"
            await connection.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        finally:
            await connection.close()
    assert not listening(port)
    assert not server.running

    with EmbeddedPostgres(server_dir) as again:
        connection = await asyncpg.connect(again.url)
        try:
            assert await connection.fetchval("SELECT x FROM kept") == 42
        finally:
            await connection.close()


def test_postgres_does_not_run_as_root(server_dir):
    with EmbeddedPostgres(server_dir) as server:
        owner = Path(f"/proc/{server.pid}").stat().st_uid
    if os.geteuid() == 0:
        assert owner == pwd.getpwnam(POSTGRES_SYSTEM_USER).pw_uid != 0
    else:
        assert owner == os.geteuid()


@pytest.mark.parametrize(("persistent", "after_restart"), [(True, b"kept"), (False, None)])
async def test_redis_keeps_data_across_restarts_when_persistent(server_dir, persistent, after_restart):
    with EmbeddedRedis(server_dir, persistent=persistent) as server:
        client = Redis.from_url(server.url)
        await client.set("key", "kept")
        await client.aclose()
    with EmbeddedRedis(server_dir, persistent=persistent) as server:
        client = Redis.from_url(server.url)
        assert await client.get("key") == after_restart
        await client.aclose()


def test_a_requested_port_is_used_and_a_taken_one_is_reported(server_dir):
    port = find_free_port()
    with EmbeddedRedis(server_dir, port=port, persistent=False) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert listening(port)
        with pytest.raises(EmbeddedServerError, match=f"did not start on port {port}"):
            EmbeddedRedis(server_dir / "second", port=port, persistent=False).start()


def test_stop_is_idempotent_and_start_twice_is_one_server(server_dir):
    server = EmbeddedRedis(server_dir, persistent=False)
    server.start()
    pid = server.pid
    assert server.start().pid == pid
    server.stop()
    server.stop()
    assert pid is not None
    assert not alive(pid)
    with pytest.raises(EmbeddedServerError, match="not running"):
        _ = server.url


def test_a_non_empty_folder_that_is_no_cluster_is_refused(server_dir):
    (server_dir / "postgres").mkdir()
    (server_dir / "postgres" / "precious.txt").write_text("not a database")
    with pytest.raises(EmbeddedServerError, match="holds no PostgreSQL cluster"):
        EmbeddedPostgres(server_dir).start()
    assert (server_dir / "postgres" / "precious.txt").read_text() == "not a database"


def test_servers_die_with_a_killed_parent(server_dir):
    script = textwrap.dedent(
        f"""
        import time
        from services.common.embedded import EmbeddedPostgres, EmbeddedRedis
        pg = EmbeddedPostgres({str(server_dir)!r}).start()
        redis = EmbeddedRedis({str(server_dir)!r}).start()
        print(pg.pid, redis.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
        assert all(alive(pid) for pid in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert wait_until(lambda: not any(alive(pid) for pid in pids)), "a server outlived its parent"
