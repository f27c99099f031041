"""Each task with a real worker process, the real Redis broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from worker_harness import (
    STOREFRONT_RESOURCES,
    collect_events,
    ingest,
    pod_side,
    recent_start,
    record,
    running_worker,
    store_resources,
    storefront_records,
    wait_finished,
)

from services.common.db import create_pool, jobs, migrate, recommendation_scopes
from services.common.db.jobs import JobKind, JobState
from services.common.pubsub import subscribe
from services.worker.cli import worker as worker_command

pytestmark = pytest.mark.slow

# Enforcing this policy denies backend's egress to logging (only DNS stays allowed).
BACKEND_LOCKDOWN = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: backend-lockdown, namespace: storefront}
spec:
  selector: app == 'backend'
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination: {ports: [53]}
"""

# Enforcing this one denies logging's ingress from everyone but frontend: many changed flows.
LOGGING_LOCKDOWN = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: logging-lockdown, namespace: storefront}
spec:
  selector: app == 'logging'
  types: [Ingress]
  ingress:
  - action: Allow
    source: {selector: app == 'frontend'}
"""

BULK_KEYS = 12_000


@pytest.fixture(scope="module")
async def worker_database(database_factory) -> str:
    """A database of this module's own: the worker commits, so tests here must not share the session's."""
    url = await database_factory()
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return url


@pytest.fixture(scope="module")
async def pool(worker_database):
    created = await create_pool(worker_database, min_size=1, max_size=4)
    start = recent_start(90)
    await store_resources(created, STOREFRONT_RESOURCES)
    await ingest(created, storefront_records(start))
    # Many distinct keys (one per client port) from microservice1 to logging: a preview long enough to
    # interrupt.
    bulk = [
        record(
            pod_side("source", "microservice1"), pod_side("dest", "logging"), 20_000 + n, start=start, reporter="dst"
        )
        for n in range(BULK_KEYS)
    ]
    await ingest(created, bulk)
    yield created
    await created.close()


@pytest.fixture(scope="module")
def worker(worker_database, redis_url, tmp_path_factory):
    with running_worker(worker_database, redis_url, tmp_path_factory.mktemp("worker")) as process:
        yield process


async def start(pool, worker, kind: JobKind, params, *, task: str | None = None) -> jobs.Job:
    job = await jobs.create(pool, kind.value, params, "tester")
    worker.send(task or kind.task_name, job.id)
    return job


def preview_params(yaml: str, **extra):
    return {"yaml": yaml, "deletes": [], "from": None, "to": None, **extra}


async def test_preview_streams_changed_flows_then_a_summary(pool, worker, redis_url):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params(BACKEND_LOCKDOWN))
    events = await collect_events(redis_url, job.id)
    finished = await wait_finished(pool, job.id)
    assert finished.state is JobState.SUCCEEDED, finished.error

    changed = [e for e in events if e["type"] == "ImpactedFlow"]
    assert changed
    assert {(e["flow"]["sourceNameAggr"].split("-")[0], e["flow"]["destNameAggr"].split("-")[0]) for e in changed} == {
        ("backend", "logging")
    }
    for event in changed:
        assert (event["before"], event["after"], event["change"]) == ("allow", "deny", "newly_denied")
        assert event["flow"]["reporter"] == "src"
        assert any("backend-lockdown" in hit for hit in event["afterTrace"])
    (summary,) = [e for e in events if e["type"] == "ImpactSummary"]
    assert (summary["changed"], summary["newlyDenied"], summary["newlyAllowed"]) == (len(changed), len(changed), 0)
    assert summary["examined"] >= BULK_KEYS
    assert finished.result["examined"] == summary["examined"]
    assert finished.result["changes"] == [{k: v for k, v in e.items() if k != "seq"} for e in changed]
    progress = [e for e in events if e["type"] == "ImpactProgress"]
    assert progress[-1]["processed"] == progress[-1]["total"] == summary["examined"]
    assert events[-1]["type"] == "Job"
    assert events[-1]["state"] == "succeeded"


async def test_the_first_changed_flow_arrives_within_a_second(pool, worker, redis_url):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params(LOGGING_LOCKDOWN))
    client = Redis.from_url(redis_url)
    try:
        async for event in subscribe(client, job.id, idle_timeout=60):
            if event["type"] == "ImpactedFlow":
                arrived = datetime.now(UTC)
                break
    finally:
        await client.aclose()
    started = (await jobs.get(pool, job.id)).started_at
    assert (arrived - started).total_seconds() < 1.0
    assert (await wait_finished(pool, job.id)).state is JobState.SUCCEEDED


async def test_a_cancelled_preview_stops(pool, worker, redis_url):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params(LOGGING_LOCKDOWN))
    client = Redis.from_url(redis_url)
    try:
        events = []
        async for event in subscribe(client, job.id, idle_timeout=60):
            events.append(event)
            if event["type"] == "ImpactedFlow" and len(events) == 3:
                await jobs.cancel(pool, job.id)
    except TimeoutError:
        pytest.fail(f"no final event; job {await jobs.get(pool, job.id)}\n{worker.log_tail()}")
    finally:
        await client.aclose()
    assert events[-1]["type"] == "Job"
    assert events[-1]["state"] == "cancelled"
    assert not [e for e in events if e["type"] == "ImpactSummary"]
    final = await jobs.get(pool, job.id)
    assert final.state is JobState.CANCELLED
    assert final.result is None


async def test_a_worker_killed_mid_preview_is_retried_and_completes_once(pool, worker, redis_url):
    reference = await start(pool, worker, JobKind.PREVIEW, preview_params(LOGGING_LOCKDOWN))
    expected = (await wait_finished(pool, reference.id)).result

    job = await start(pool, worker, JobKind.PREVIEW, preview_params(LOGGING_LOCKDOWN))
    client = Redis.from_url(redis_url)
    events = []
    killed = False
    try:
        async for event in subscribe(client, job.id, idle_timeout=90):
            events.append(event)
            if not killed and event["type"] == "ImpactedFlow":
                (child,) = worker.child_pids()
                os.kill(child, signal.SIGKILL)
                killed = True
    finally:
        await client.aclose()
    final = await wait_finished(pool, job.id)
    assert final.state is JobState.SUCCEEDED, final.error
    assert final.attempts == 2
    summaries = [e for e in events if e["type"] == "ImpactSummary"]
    assert len(summaries) == 1
    assert {k: v for k, v in final.result.items() if k != "changes"} == {
        k: v for k, v in expected.items() if k != "changes"
    }
    keys = [e["key"] for e in events if e["type"] == "ImpactedFlow"]
    assert len(keys) == len(set(keys)) == expected["changed"]


async def test_a_redelivered_task_does_not_run_a_finished_job_again(pool, worker):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params(BACKEND_LOCKDOWN))
    done = await wait_finished(pool, job.id)
    worker.send(JobKind.PREVIEW.task_name, job.id)
    await asyncio.sleep(1.5)
    again = await jobs.get(pool, job.id)
    assert (again.attempts, again.finished_at, again.result) == (1, done.finished_at, done.result)


async def test_a_preview_with_a_bad_change_set_fails_with_the_reason(pool, worker):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params("kind: Tier\nmetadata: {name: Not_Valid}"))
    failed = await wait_finished(pool, job.id)
    assert failed.state is JobState.FAILED
    assert "ManifestError" in failed.error


async def test_recommend_writes_a_learning_staged_policy(pool, worker):
    job = await start(pool, worker, JobKind.RECOMMEND, {"namespace": "storefront", "workload": "backend-6cfbdd589f-*"})
    done = await wait_finished(pool, job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    (policy,) = done.result["policies"]
    assert (policy["kind"], policy["name"], policy["stagedAction"], policy["status"]) == (
        "StagedNetworkPolicy",
        "recommended-backend",
        "Learn",
        "Learning",
    )
    assert policy["outcome"] in ("created", "unchanged", "updated")
    stored = await pool.fetchval(
        "SELECT spec FROM resources WHERE kind = 'StagedNetworkPolicy' AND name = 'default.recommended-backend'"
    )
    assert stored["spec"]["stagedAction"] == "Learn"
    assert stored["spec"]["selector"] == "app == 'backend'"


async def test_a_recommendation_refreshes_statistics_without_waiting_for_beat(pool, worker):
    # No beat runs in this module: only the recommendation itself can have asked for the refresh.
    job = await start(pool, worker, JobKind.RECOMMEND, {"namespace": "storefront", "workload": "frontend-864f4fcdfd-*"})
    assert (await wait_finished(pool, job.id)).state is JobState.SUCCEEDED
    counted = None
    for _ in range(120):
        counted = await pool.fetchval(
            "SELECT sum(records) FROM policy_stats_5m WHERE staged_view AND kind = 'snp'"
            " AND name LIKE '%recommended-frontend'"
        )
        if counted:
            break
        await asyncio.sleep(0.25)
    assert counted is not None
    assert counted > 0


async def test_recommend_without_flows_fails_with_the_reason(pool, worker):
    job = await start(pool, worker, JobKind.RECOMMEND, {"namespace": "nowhere", "workload": None})
    failed = await wait_finished(pool, job.id)
    assert failed.state is JobState.FAILED
    assert "no allowed flows" in failed.error


async def test_statistics_are_incremental(pool, worker):
    first = await start(pool, worker, JobKind.STATISTICS, {})
    result = (await wait_finished(pool, first.id)).result
    # A recommendation earlier in this module may already have refreshed some buckets.
    assert 0 <= result["evaluated"] <= result["buckets"]
    assert result["buckets"] > 0
    second = await start(pool, worker, JobKind.STATISTICS, {})
    assert (await wait_finished(pool, second.id)).result["evaluated"] == 0

    late = recent_start(10)
    await ingest(pool, [record(pod_side("source", "frontend"), pod_side("dest", "logging"), 9200, start=late)])
    third = await start(pool, worker, JobKind.STATISTICS, {})
    assert (await wait_finished(pool, third.id)).result["evaluated"] == 1
    profile_hits = await pool.fetchval(
        "SELECT sum(records) FROM policy_stats_5m WHERE bucket = to_timestamp($1) AND kind = 'pro' AND NOT staged_view",
        late,
    )
    assert profile_hits == 1


async def test_retention_deletes_old_finished_jobs(pool, worker):
    old = await jobs.create(pool, "preview", {}, "tester")
    await jobs.cancel(pool, old.id)
    await pool.execute("UPDATE jobs SET finished_at = now() - interval '90 days' WHERE id = $1::uuid", old.id)
    job = await start(pool, worker, JobKind.RETENTION, {})
    done = await wait_finished(pool, job.id)
    assert done.result["jobsDeleted"] >= 1
    assert await jobs.get(pool, old.id) is None


async def test_the_reaper_revives_a_job_whose_worker_vanished(pool, worker):
    job = await jobs.create(pool, JobKind.PREVIEW.value, preview_params(BACKEND_LOCKDOWN), "tester")
    async with pool.acquire() as conn:
        claim = await jobs.claim(conn, job.id, stale_after=timedelta(seconds=3), worker="gone-host:1")
    assert claim.outcome is jobs.ClaimOutcome.CLAIMED
    await pool.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 minute' WHERE id = $1::uuid", job.id)
    worker.send("ringfence.reap_jobs")
    done = await wait_finished(pool, job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.attempts == 2


async def test_the_job_state_is_published_while_it_runs(pool, worker, redis_url):
    job = await start(pool, worker, JobKind.PREVIEW, preview_params(LOGGING_LOCKDOWN))
    events = await collect_events(redis_url, job.id)
    states = [e for e in events if e["type"] == "Job"]
    assert states[0]["state"] == "running"
    assert states[-1]["state"] == "succeeded"
    assert states[-1]["progress"] == 1.0
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def test_continuous_recommendations_refine_and_cover_scoped_namespaces(pool, worker):
    await wait_finished(
        pool, (await start(pool, worker, JobKind.RECOMMEND, {"namespace": "storefront", "workload": WEB})).id
    )
    before = await stored_annotations(pool, "default.recommended-microservice1")
    await recommendation_scopes.save_scope(
        pool, recommendation_scopes.RecommendationScope("twilio", "twilio == 'allowed'")
    )
    worker.send("ringfence.recommend_continuous")
    isolation = await poll(lambda: stored_annotations(pool, "default.namespace-isolation-storefront"))
    assert isolation["ringfence.io/recommendation-scope"] == "namespace:storefront"
    refined = await poll(
        lambda: _changed(pool, "default.recommended-microservice1", before["ringfence.io/last-updated"])
    )
    assert refined["ringfence.io/recommendation-status"] == "Learning"


async def test_beat_runs_the_periodic_tasks_and_marks_each_tick(pool, worker_database, redis_url, tmp_path):
    await pool.execute("DELETE FROM policy_stats_buckets")
    beat_alive = tmp_path / "alive.beat"  # beside the harness's alive file, touched on every tick
    with running_worker(worker_database, redis_url, tmp_path, beat=True, every=1.0):
        assert await poll(lambda: pool.fetchval("SELECT count(*) FROM policy_stats_buckets"), within=30)
        first = beat_alive.stat().st_mtime
        assert await poll(lambda: _later(beat_alive, first), within=10)
    assert not beat_alive.exists()


async def test_a_running_worker_keeps_its_alive_file_fresh_and_removes_it_when_it_stops(
    worker_database, redis_url, tmp_path
):
    alive = tmp_path / "alive"  # the harness's worker touches it every 0.5 s
    with running_worker(worker_database, redis_url, tmp_path):
        first = alive.stat().st_mtime
        assert await poll(lambda: _later(alive, first), within=10)
    assert not alive.exists()


async def _later(path, mtime: float) -> bool:
    return path.stat().st_mtime > mtime


WEB = "microservice1-7c9d8f6b5d-*"


async def stored_annotations(pool, name: str):
    document = await pool.fetchval(
        "SELECT spec FROM resources WHERE kind = 'StagedNetworkPolicy' AND namespace = 'storefront' AND name = $1", name
    )
    return None if document is None else document["metadata"].get("annotations", {})


async def _changed(pool, name: str, updated: str):
    annotations = await stored_annotations(pool, name)
    return annotations if annotations and annotations["ringfence.io/last-updated"] != updated else None


async def poll(probe, within: float = 30.0):
    """Await ``probe()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while not (value := await probe()):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"nothing after {within} s")
        await asyncio.sleep(0.2)
    return value


def test_an_alive_file_in_a_missing_directory_is_refused_before_the_worker_starts(tmp_path):
    environment = {"RINGFENCE_DATABASE_URL": "postgresql://db/ringfence", "RINGFENCE_REDIS_URL": "redis://cache/0"}
    result = CliRunner().invoke(worker_command, ["--alive-file", str(tmp_path / "gone" / "alive")], env=environment)
    assert result.exit_code == 2
    assert "--alive-file" in result.output
    assert f"cannot write in {tmp_path / 'gone'}" in result.output
