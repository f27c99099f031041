"""Impact-preview speed: the whole preview against PostgreSQL grouping the same records by evaluation key.

    .venv/bin/python bench/preview.py [--records 1000000] [--database-url URL] [--redis-url URL] [--keep | --reuse URL]

1. Generates N realistic flow-log records (bench/flowgen.py: 20 namespaces, 200 workloads, traffic to
   peers, kube-dns, public domains and private networks, both reporters) and stores them with
   ``ringfence ingest --direct`` into a fresh, migrated database (not timed).
2. Stores 500 policies: a security and a platform tier, one NetworkPolicy per workload (200), and 298
   more that select nothing the flows have.
3. Times PostgreSQL alone: ``SELECT count(*)`` over the evaluation-key grouping the preview streams
   (``flow_keys``), best of three after a warm-up.
4. Times the preview job's body (``services.worker.preview.run_preview``) on a job row, with its events
   published to Redis: change set = one workload's policy replaced by one that denies all its egress.
Prints both times, the ratio (target <= 2), when the first changed flow was published, and the summary.
The servers are RINGFENCE_DATABASE_URL / RINGFENCE_REDIS_URL, else the ones given, else local defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flowgen import generate
from bench.ingest import create_database, drop_database
from ringfence.demo import network_set_manifest, tiers_manifest, twilio_integration_manifest
from ringfence.manifests import load_manifests, resource_to_dict
from ringfence.model import resource_key
from services.common.db import create_pool, jobs
from services.common.db import resources as resource_store
from services.common.db.flow_reads import READ_SETTINGS
from services.common.db.flow_summaries import FLOW_KEYS
from services.common.pubsub import JobEvents, backlog_key
from services.worker.jobrun import JobRun
from services.worker.preview import run_preview

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
APPS = ["frontend", *(f"svc{index:02d}" for index in range(1, 10))]
NAMESPACES = [f"team{index:02d}" for index in range(20)]
PORTS = "[80, 443, 5432, 6379, 8080, 9090]"

KNOWN_BAD_ACTORS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.known-bad-actors}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress, Egress]
  ingress:
  - action: Deny
    source: {nets: [203.0.113.0/24]}
  egress:
  - action: Deny
    destination: {nets: [203.0.113.0/24]}
"""

TIERS = "---\n".join(
    [
        tiers_manifest(),
        KNOWN_BAD_ACTORS,
        network_set_manifest("public-ips", {"type": "public"}, ["1.0.0.0/8", "52.0.0.0/8"]),
        twilio_integration_manifest(order=10),
    ]
)
"""The storefront's tiers, a security policy, the public network set and the platform's Twilio policy."""


def workload_policy(namespace: str, app: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: default.{app}, namespace: {namespace}}}
spec:
  tier: default
  order: 100
  selector: app == '{app}'
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {{namespaceSelector: all()}}
    destination: {{ports: {PORTS}}}
  - action: Allow
    protocol: UDP
    destination: {{ports: [53]}}
  egress:
  - action: Allow
"""


def idle_policy(index: int) -> str:
    namespace = NAMESPACES[index % len(NAMESPACES)]
    return f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: default.idle-{index:03d}, namespace: {namespace}}}
spec:
  tier: default
  order: {200 + index}
  selector: app == 'retired-{index}' && version in {{'v1', 'v2'}}
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {{selector: role == 'client-{index}'}}
    destination: {{ports: [{1000 + index}]}}
  egress:
  - action: Allow
    destination: {{nets: [10.{index % 250}.0.0/16]}}
"""


def policies() -> str:
    documents = [TIERS]
    documents += [workload_policy(namespace, app) for namespace in NAMESPACES for app in APPS]
    documents += [idle_policy(index) for index in range(298)]
    return "---".join(documents)


CHANGE_SET = f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: default.svc01, namespace: team00}}
spec:
  tier: default
  order: 100
  selector: app == 'svc01'
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {{namespaceSelector: all()}}
    destination: {{ports: {PORTS}}}
"""


def ingest(records: int, database_url: str) -> float:
    """Generate and store ``records`` flow-log lines; return the seconds ingestion took."""
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as folder:
        path = Path(folder) / "flows.log"
        end = int(datetime.now(UTC).timestamp())
        with path.open("wb") as out:
            for line in generate(records, end=end):
                out.write(line)
        env = {**os.environ, "RINGFENCE_DATABASE_URL": database_url}
        code = "import sys; from services.collector.cli import ingest_command; ingest_command(sys.argv[1:])"
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", code, "--direct", "--no-progress", str(path)],
            env=env,
            capture_output=True,
            cwd=Path(__file__).resolve().parents[1],
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"ingest failed:\n{done.stderr.decode()}")
        return time.perf_counter() - started


async def store_policies(pool: asyncpg.Pool) -> int:
    resources = load_manifests(policies())
    changes = [resource_store.ResourceChange(resource_key(r), resource_to_dict(r)) for r in resources]
    async with pool.acquire() as conn:
        await resource_store.apply_changes(conn, changes, actor="bench")
    return sum(1 for r in resources if r.kind.endswith("Policy"))


async def time_grouping(pool: asyncpg.Pool) -> tuple[float, int]:
    """Best of three runs of the evaluation-key grouping, counted on the server (no rows transferred)."""
    query = f"SELECT count(*) FROM ({FLOW_KEYS}) AS keys"  # noqa: S608 - the project's own constant
    best, keys = float("inf"), 0
    async with pool.acquire() as conn:
        for attempt in range(4):
            async with conn.transaction():
                await conn.execute(READ_SETTINGS)  # the settings flow_keys itself runs with
                started = time.perf_counter()
                keys = await conn.fetchval(query, None, None, None)
                elapsed = time.perf_counter() - started
            if attempt:  # the first run warms the cache
                best = min(best, elapsed)
    return best, keys


class TimedEvents(JobEvents):
    """Job events that note when the first changed flow went out."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.first_change: float | None = None

    async def publish_many(self, job_id, events):  # type: ignore[no-untyped-def]
        seq = await super().publish_many(job_id, events)
        if self.first_change is None and any(e["type"] == "ImpactedFlow" for e in events):
            self.first_change = time.perf_counter()
        return seq


async def time_preview(pool: asyncpg.Pool, redis_url: str) -> tuple[float, float | None, dict[str, object]]:
    redis = Redis.from_url(redis_url)
    events = TimedEvents(redis)
    params = {"yaml": CHANGE_SET, "deletes": [], "from": None, "to": None}
    job = await jobs.create(pool, "preview", params, "bench")
    async with pool.acquire() as conn:
        claim = await jobs.claim(conn, job.id, stale_after=timedelta(minutes=5))
    run = JobRun(pool, events, claim.job, claim.lease, timedelta(seconds=2), params)
    try:
        started = time.perf_counter()
        result = await run_preview(run)
        elapsed = time.perf_counter() - started
        first = None if events.first_change is None else events.first_change - started
        await jobs.finish(pool, job.id, claim.lease, {k: v for k, v in result.items() if k != "changes"})
    finally:
        await redis.delete(backlog_key(job.id), f"ringfence:job:{job.id}:seq")
        await redis.aclose()
    return elapsed, first, result


async def main_async(args: argparse.Namespace) -> None:
    if args.reuse:
        name, url = "", args.reuse
    else:
        name, url = await create_database(args.database_url)
    try:
        if not args.reuse:
            print(f"ingesting {args.records:,} records ...", flush=True)
            seconds = ingest(args.records, url)
            print(f"  stored in {seconds:.1f} s")
        pool = await create_pool(url, min_size=1, max_size=4, command_timeout=None)
        try:
            await pool.execute("ANALYZE")
            count = 0 if args.reuse else await store_policies(pool)
            stored = await pool.fetchval("SELECT count(*) FROM flows")
            policies_stored = await pool.fetchval("SELECT count(*) FROM resources WHERE kind LIKE '%Policy'")
            print(f"records stored: {stored:,}; policies: {policies_stored} ({count} stored now)")
            grouping, keys = await time_grouping(pool)
            print(f"PostgreSQL grouping by evaluation key: {grouping:.2f} s ({keys:,} keys)")
            preview, first, result = await time_preview(pool, args.redis_url)
            print(f"preview (load, group, evaluate before/after, publish): {preview:.2f} s")
            print(f"first changed flow published after {first:.3f} s" if first is not None else "no changed flow")
            print(f"ratio preview / grouping: {preview / grouping:.2f} (target <= 2)")
            summary = {
                k: result[k] for k in ("examined", "records", "changed", "newlyDenied", "newlyAllowed", "uncertain")
            }
            print(f"summary: {summary}")
        finally:
            await pool.close()
    finally:
        if args.keep or args.reuse:
            print(f"kept database {url}")
        else:
            await drop_database(args.database_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("RINGFENCE_DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--redis-url", default=os.environ.get("RINGFENCE_REDIS_URL") or DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--reuse", metavar="URL", help="time again on a database kept by --keep (no ingestion)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
