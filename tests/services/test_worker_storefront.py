"""The storefront lab below the API: flows in, a recommendation per workload, their statistics, a preview."""

from __future__ import annotations

import dataclasses

import pytest
from worker_harness import (
    STOREFRONT_RESOURCES,
    WORKLOADS,
    collect_events,
    ingest,
    recent_start,
    running_worker,
    store_resources,
    storefront_records,
    wait_finished,
)

from ringfence.engine import PolicyEngine
from ringfence.manifests import dump_manifests, resource_from_dict
from ringfence.model import StagedNetworkPolicy
from services.common.db import create_pool, jobs
from services.common.db import flows as flow_store
from services.common.db import statistics as stats_store
from services.common.db.jobs import JobKind, JobState
from services.worker.state import load_resources

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def lab(migrated_database_factory, redis_url, tmp_path_factory):
    url = await migrated_database_factory()
    pool = await create_pool(url, min_size=1, max_size=4)
    await store_resources(pool, STOREFRONT_RESOURCES)
    assert await ingest(pool, storefront_records(recent_start(60), windows=4)) > 0
    with running_worker(url, redis_url, tmp_path_factory.mktemp("storefront")) as worker:
        yield pool, worker
    await pool.close()


async def run(pool, worker, kind: JobKind, params) -> jobs.Job:
    job = await jobs.create(pool, kind.value, params, "developer")
    worker.send(kind.task_name, job.id)
    done = await wait_finished(pool, job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    return done


async def stored_policy(pool, name: str) -> StagedNetworkPolicy:
    document = await pool.fetchval(
        "SELECT spec FROM resources WHERE kind = 'StagedNetworkPolicy' AND namespace = 'storefront' AND name = $1",
        f"default.{name}",
    )
    policy = resource_from_dict(document)
    assert isinstance(policy, StagedNetworkPolicy)
    return policy


async def test_storefront_workflow(lab, redis_url):
    pool, worker = lab

    # Recommendations for each workload, stored as learning staged policies.
    for workload, aggregate in WORKLOADS.items():
        done = await run(pool, worker, JobKind.RECOMMEND, {"namespace": "storefront", "workload": aggregate})
        (policy,) = done.result["policies"]
        expected = (f"recommended-{workload}", "Learn", "created")
        assert (policy["name"], policy["stagedAction"], policy["outcome"]) == expected
        assert (await stored_policy(pool, f"recommended-{workload}")).spec.selector == f"app == '{workload}'"

    # Through the engine: the staged view allows every stored flow of the namespace, enforcement unchanged.
    async with pool.acquire() as conn:
        engine = PolicyEngine(await load_resources(conn))
        keys = [key.flow async for key in flow_store.flow_keys(conn, None, None, namespace="storefront")]
    assert keys
    for flow in keys:
        verdict = engine.evaluate(flow)
        assert (verdict.action, verdict.staged_action) == ("allow", "allow"), flow

    # Statistics: every recommended policy allowed flows in the staged view, counted by evaluation.
    await run(pool, worker, JobKind.STATISTICS, {})
    counts = await stats_store.board_counts(pool, None, None)
    allowed = {
        c.key.name: c.counts.flows
        for c in counts
        if c.key.staged_view and c.key.kind == "snp" and c.key.action == "allow"
    }
    assert set(allowed) == {f"default.recommended-{workload}" for workload in WORKLOADS}
    assert all(flows > 0 for flows in allowed.values())
    assert not [c for c in counts if c.key.staged_view and c.key.kind == "snp" and c.key.action == "deny"]

    # Preview deleting the backend recommendation's egress rule to logging: backend -> logging newly denied.
    backend = await stored_policy(pool, "recommended-backend")
    kept = tuple(rule for rule in backend.spec.egress if rule.destination.selector != "app == 'logging'")
    assert len(kept) == len(backend.spec.egress) - 1
    edited = dataclasses.replace(backend, spec=dataclasses.replace(backend.spec, egress=kept))
    job = await jobs.create(
        pool, JobKind.PREVIEW.value, {"yaml": dump_manifests([edited]), "deletes": [], "from": None, "to": None}, "dev"
    )
    worker.send(JobKind.PREVIEW.task_name, job.id)
    events = await collect_events(redis_url, job.id)
    changed = [e for e in events if e["type"] == "ImpactedFlow"]
    assert changed
    for event in changed:
        flow = event["flow"]
        assert (flow["sourceNameAggr"], flow["destNameAggr"]) == (WORKLOADS["backend"], WORKLOADS["logging"])
        assert (event["before"], event["after"]) == ("allow", "deny")
        assert event["afterTrace"][-1].split("|")[2:] == ["storefront/default.recommended-backend", "deny", "-1"]
    (summary,) = [e for e in events if e["type"] == "ImpactSummary"]
    assert (summary["newlyDenied"], summary["newlyAllowed"], summary["uncertain"]) == (len(changed), 0, 0)
    assert (await jobs.get(pool, job.id)).result["newlyDenied"] == len(changed)
