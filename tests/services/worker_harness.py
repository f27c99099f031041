"""Helpers of the worker tests: flow-log records, ingestion through the collector, a real worker process.

The worker runs as a subprocess (``services.worker.cli.run_worker``, prefork with one child) against the
test PostgreSQL and Redis, on a queue of its own, so that several test sessions can share servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from support.storefront import NAMESPACES, documents, public_ips

from ringfence.demo import tiers_manifest, twilio_integration_manifest
from ringfence.manifests import load_manifests, resource_to_dict
from ringfence.model import resource_key
from services.collector.lines import RawBatch
from services.collector.pipeline import ParseMode, Parser, Pipeline
from services.collector.store import FlowWriter
from services.common.db import jobs
from services.common.db import resources as resource_store
from services.common.pubsub import subscribe
from services.common.settings import Settings
from services.worker.celery_app import WorkerOptions, create_app

REPO = Path(__file__).resolve().parents[2]

STOREFRONT_NAMESPACE = "storefront"
WORKLOADS = {
    "frontend": "frontend-864f4fcdfd-*",
    "microservice1": "microservice1-7c9d8f6b5d-*",
    "microservice2": "microservice2-5f6c7d8b9b-*",
    "backend": "backend-6cfbdd589f-*",
    "logging": "logging-77d9c6b8f4-*",
}
KUBE_DNS = ("kube-system", "coredns-5d78c9869d-*", ["k8s-app=kube-dns", "pod-template-hash=5d78c9869d"])

STOREFRONT_RESOURCES = documents(
    NAMESPACES,
    tiers_manifest(),
    public_ips(["1.0.0.0/8", "8.0.0.0/7", "52.0.0.0/8", "54.0.0.0/8"]),
    twilio_integration_manifest(order=10),
)


def recent_start(minutes_ago: int = 30) -> int:
    """A 5-minute-aligned start time ``minutes_ago`` before now (inside any retention window)."""
    now = int(datetime.now(UTC).timestamp()) - minutes_ago * 60
    return now - now % 300


def _side(prefix: str, kind: str, namespace: str | None, name_aggr: str, labels: list[str]) -> dict[str, Any]:
    return {
        f"{prefix}_type": kind,
        f"{prefix}_namespace": namespace or "-",
        f"{prefix}_name": "-",
        f"{prefix}_name_aggr": name_aggr,
        f"{prefix}_ip": None,
        f"{prefix}_labels": {"labels": labels},
    }


def pod_side(prefix: str, app: str, namespace: str = STOREFRONT_NAMESPACE) -> dict[str, Any]:
    """A storefront pod as one side of a record."""
    aggr = WORKLOADS.get(app, f"{app}-6b7c8d9f5d-*")
    labels = [f"app={app}", f"pod-template-hash={aggr.split('-')[-2]}", f"projectcalico.org/serviceaccount={app}"]
    return _side(prefix, "wep", namespace, aggr, labels)


def record(
    source: dict[str, Any],
    dest: dict[str, Any],
    port: int | None,
    *,
    start: int,
    proto: str = "tcp",
    reporter: str = "src",
    action: str = "allow",
    domains: list[str] | None = None,
    num_flows: int = 3,
    enforced: list[str] | None = None,
) -> dict[str, Any]:
    """One Calico Enterprise flow-log record."""
    line: dict[str, Any] = {"start_time": start, "end_time": start + 300, "source_port": None, "dest_port": port}
    line.update(source)
    line.update(dest)
    line.update(
        {
            "dest_service_namespace": "-",
            "dest_service_name": "-",
            "dest_service_port": "-",
            "dest_service_port_num": None,
            "dest_domains": domains,
            "proto": proto,
            "action": action,
            "reporter": reporter,
            "policies": {"enforced_policies": enforced or [], "pending_policies": []},
            "bytes_in": 1000,
            "bytes_out": 500,
            "num_flows": num_flows,
            "num_flows_started": num_flows,
            "num_flows_completed": num_flows,
            "packets_in": 10,
            "packets_out": 8,
            "http_requests_allowed_in": 0,
            "http_requests_denied_in": 0,
        }
    )
    return line


def connection(source_app: str, dest_app: str, port: int, *, start: int, proto: str = "tcp") -> list[dict[str, Any]]:
    """The two records (source and destination reporter) of an allowed pod-to-pod connection."""
    source, dest = pod_side("source", source_app), pod_side("dest", dest_app)
    profile = f"0|__PROFILE__|__PROFILE__.kns.{STOREFRONT_NAMESPACE}|allow|0"
    return [
        record(source, dest, port, start=start, proto=proto, reporter=reporter, enforced=[profile])
        for reporter in ("src", "dst")
    ]


def storefront_records(start: int, windows: int = 3) -> list[dict[str, Any]]:
    """The storefront's traffic over ``windows`` 5-minute windows from ``start``."""
    records: list[dict[str, Any]] = []
    for window in range(windows):
        at = start + 300 * window
        records += connection("frontend", "microservice1", 8080, start=at)
        records += connection("frontend", "microservice2", 8080, start=at)
        records += connection("microservice1", "backend", 8080, start=at)
        records += connection("microservice2", "backend", 8080, start=at)
        for app in ("frontend", "microservice1", "microservice2", "backend"):
            records += connection(app, "logging", 9200, start=at)
        for app in WORKLOADS:
            dns_namespace, dns_aggr, dns_labels = KUBE_DNS
            dns = _side("dest", "wep", dns_namespace, dns_aggr, dns_labels)
            records.append(record(pod_side("source", app), dns, 53, start=at, proto="udp"))
        twilio = _side("dest", "net", None, "pub", [])
        records.append(record(pod_side("source", "microservice2"), twilio, 443, start=at, domains=["api.twilio.com"]))
    return records


async def ingest(pool: asyncpg.Pool, records: list[dict[str, Any]], *, batch: int = 5000) -> int:
    """Store ``records`` through the collector's write path; return how many were accepted."""

    def clock() -> datetime:
        return datetime.now(UTC)

    accepted = 0
    with Parser(ParseMode.INLINE) as parser:
        pipeline = Pipeline(FlowWriter(pool, clock=clock), parser, clock=clock, retention_days=30)
        for first in range(0, len(records), batch):
            lines = [orjson.dumps(item) for item in records[first : first + batch]]
            offsets, position = [], 0
            for line in lines:
                offsets.append(position)
                position += len(line) + 1
            raw = RawBatch(f"test-{secrets.token_hex(4)}", lines, offsets, first + 1)
            result = await pipeline.store(raw, await pipeline.parse(raw))
            assert result.outcome.rejected == 0, result.outcome.errors
            accepted += result.outcome.accepted
    return accepted


async def store_resources(pool: asyncpg.Pool, yaml_text: str) -> None:
    """Create or replace the resources of ``yaml_text`` in the store."""
    changes = [resource_store.ResourceChange(resource_key(r), resource_to_dict(r)) for r in load_manifests(yaml_text)]
    async with pool.acquire() as conn:
        await resource_store.apply_changes(conn, changes, actor="test")


BOOT = """
import json, sys
from datetime import timedelta
from pathlib import Path
from services.common.settings import Settings
from services.worker.celery_app import WorkerOptions
from services.worker.cli import run_worker
cfg = json.loads(sys.argv[1])
settings = Settings(database_url=cfg["db"], redis_url=cfg["redis"], broker_url=cfg["redis"], data_dir=Path(cfg["data"]))
options = WorkerOptions(
    queue=cfg["queue"],
    heartbeat_interval=timedelta(seconds=0.5),
    stale_after=timedelta(seconds=cfg["stale"]),
    visibility_timeout=timedelta(seconds=60),
    pool_size=2,
    recommend_every=timedelta(seconds=cfg["every"]),
    statistics_every=timedelta(seconds=cfg["every"]),
    reap_every=timedelta(seconds=cfg["every"]),
    alive_file=Path(cfg["data"]) / "alive",
    alive_every=timedelta(seconds=0.5),
)
run_worker(settings, concurrency=1, pool="prefork", options=options, loglevel="INFO", beat=cfg["beat"])
"""


class WorkerProcess:
    """A real Celery worker in a subprocess (prefork, one child), and a client app on the same queue."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        data_dir: Path,
        *,
        stale: float = 3.0,
        beat: bool = False,
        every: float = 60.0,
    ) -> None:
        self.queue = f"ringfence-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.settings = Settings(
            database_url=database_url, redis_url=redis_url, broker_url=redis_url, data_dir=data_dir
        )
        self.options = WorkerOptions(queue=self.queue, stale_after=timedelta(seconds=stale))
        self.client = create_app(self.settings, self.options)
        config = {
            "db": database_url,
            "redis": redis_url,
            "data": str(data_dir),
            "queue": self.queue,
            "stale": stale,
            "beat": beat,
            "every": every,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", BOOT, json.dumps(config)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("the worker did not start:\n" + "\n".join(self.output[-40:]))

    def log_tail(self, lines: int = 60) -> str:
        """The last lines the worker printed (for failure messages)."""
        return "\n".join(self.output[-lines:])

    def send(self, task: str, *args: Any) -> None:
        self.client.send_task(task, args=list(args), queue=self.queue)

    def child_pids(self) -> list[int]:
        """The pool processes of the worker (children of the main process)."""
        found = subprocess.run(
            ["/usr/bin/pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.client.close()


@contextlib.contextmanager
def running_worker(database_url: str, redis_url: str, data_dir: Path, **kwargs: Any) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(database_url, redis_url, data_dir, **kwargs)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


async def wait_finished(pool: asyncpg.Pool, job_id: str, within: float = 60.0) -> jobs.Job:
    """Poll the job row until it has finished."""
    deadline = time.monotonic() + within
    while True:
        job = await jobs.get(pool, job_id)
        assert job is not None
        if job.state.finished:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {within} s: {job}")
        await asyncio.sleep(0.1)


async def collect_events(redis_url: str, job_id: str, idle: float = 60.0) -> list[dict[str, Any]]:
    """Every event of a job, in order, until its final one."""
    client = Redis.from_url(redis_url)
    try:
        return [event async for event in subscribe(client, job_id, idle_timeout=idle)]
    finally:
        await client.aclose()
