"""``ringfence ingest`` (files, standard input; direct and over HTTP) and ``ringfence collector``'s HTTP side."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import flowdb
import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from flowdb import SAMPLE_TIME, sample_lines

from services.collector.cli import collector_command, ingest_command
from services.collector.http import IngestEndpoint, create_app
from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import FlowWriter
from services.common.db import create_pool
from services.common.embedded import find_free_port

# The shared fixtures (tests/services/flowdb.py), made visible to pytest in this module.
flow_template = flowdb.flow_template
flow_db_url = flowdb.flow_db_url


def counts(url: str) -> tuple[int, int]:
    async def query() -> tuple[int, int]:
        connection = await asyncpg.connect(url)
        try:
            flows = await connection.fetchval("SELECT count(*) FROM flows")
            rejects = await connection.fetchval("SELECT count(*) FROM flow_rejects")
            return flows, rejects
        finally:
            await connection.close()

    return asyncio.run(query())


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    calico = tmp_path / "flows.log"
    calico.write_bytes(b"\n".join(sample_lines("calico-flows.log")) + b"\n")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\n".join([*sample_lines("hubble.jsonl"), b"{broken", *sample_lines("goldmane.jsonl")]))
    return calico, mixed


def environment(url: str) -> dict[str, str]:
    # Sample records are from June 2024: a long retention keeps them.
    return {"RINGFENCE_DATABASE_URL": url, "RINGFENCE_RETENTION_DAYS": "100000", "RINGFENCE_INGEST_BATCH_SIZE": "7"}


def test_ingest_direct_stores_files_and_prints_the_counts(flow_db_url: str, inputs: tuple[Path, Path]) -> None:
    calico, mixed = inputs
    runner = CliRunner()
    result = runner.invoke(ingest_command, ["--direct", str(calico), str(mixed)], env=environment(flow_db_url))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "accepted 43, rejected 1"
    assert "line 12: not JSON" in result.stderr  # numbered within its file
    assert counts(flow_db_url) == (43, 1)
    again = runner.invoke(ingest_command, ["--direct", str(calico)], env=environment(flow_db_url))
    assert again.exit_code == 0, again.output
    assert "already stored" in again.stdout
    assert counts(flow_db_url) == (43, 1)


def test_ingest_direct_reads_standard_input(flow_db_url: str) -> None:
    data = b"\n".join(sample_lines("goldmane.jsonl")) + b"\n"
    result = CliRunner().invoke(ingest_command, ["--direct", "-"], input=data, env=environment(flow_db_url))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "accepted 11, rejected 0"
    assert counts(flow_db_url) == (11, 0)


def test_ingest_direct_without_a_database_is_a_usage_error(inputs: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(ingest_command, ["--direct", str(inputs[0])], env={"RINGFENCE_DATABASE_URL": ""})
    assert result.exit_code == 2
    assert "RINGFENCE_DATABASE_URL" in result.output


@contextlib.contextmanager
def collector_server(database_url: str) -> Iterator[str]:
    """The collector's HTTP app served by uvicorn in a thread of its own (own event loop)."""
    port = find_free_port()
    started = threading.Event()
    server: uvicorn.Server | None = None

    async def serve() -> None:
        nonlocal server
        pool = await create_pool(database_url, min_size=1, max_size=2)
        writer = FlowWriter(pool, clock=lambda: SAMPLE_TIME)
        pipeline = Pipeline(writer, Parser(ParseMode.INLINE), clock=lambda: SAMPLE_TIME, retention_days=30)
        app = create_app(IngestEndpoint(pipeline, max_body_size=1 << 20))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
        started.set()
        try:
            await server.serve()
        finally:
            await pool.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    started.wait(10)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        time.sleep(0.05)
    try:
        yield url
    finally:
        assert server is not None
        server.should_exit = True
        thread.join(10)


def test_ingest_over_http_sends_batches_to_the_collector(flow_db_url: str, inputs: tuple[Path, Path]) -> None:
    calico, mixed = inputs
    with collector_server(flow_db_url) as url:
        env = {**environment(flow_db_url), "RINGFENCE_URL": url, "RINGFENCE_DATABASE_URL": ""}
        result = CliRunner().invoke(ingest_command, [str(calico), str(mixed)], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == "accepted 43, rejected 1"
        assert "line 12: not JSON" in result.stderr
        again = CliRunner().invoke(ingest_command, [str(calico)], env=env)
        assert "already stored" in again.stdout
    assert counts(flow_db_url) == (43, 1)


def test_ingest_over_http_reports_an_unreachable_collector(inputs: tuple[Path, Path]) -> None:
    env = {"RINGFENCE_URL": f"http://127.0.0.1:{find_free_port()}", "RINGFENCE_DATABASE_URL": ""}
    result = CliRunner().invoke(ingest_command, ["--attempts", "1", str(inputs[0])], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_the_collector_needs_something_to_do(flow_db_url: str) -> None:
    result = CliRunner().invoke(collector_command, ["--no-listen"], env=environment(flow_db_url))
    assert result.exit_code == 2
    assert "nothing to do" in result.output
