"""Job rows (claim, lease, heartbeat, cancel, reaper) and job events over Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.common.db import jobs
from services.common.db.jobs import ClaimOutcome, JobState
from services.common.pubsub import JobEvents, backlog_key, subscribe

STALE = timedelta(seconds=30)


async def make_job(db, kind="preview", params=None):
    return await jobs.create(db, kind, params or {"yaml": ""}, "alice")


async def age_heartbeat(db, job_id, seconds=3600):
    await db.execute(
        "UPDATE jobs SET heartbeat_at = heartbeat_at - make_interval(secs => $2) WHERE id = $1::uuid", job_id, seconds
    )


async def test_a_created_job_is_queued_with_its_params(db):
    job = await make_job(db, params={"namespace": "storefront", "workload": None})
    assert (job.state, job.progress, job.attempts, job.requested_by) == (JobState.QUEUED, 0.0, 0, "alice")
    assert (await jobs.get(db, job.id)).params == {"namespace": "storefront", "workload": None}


@pytest.mark.parametrize("job_id", ["not-a-uuid", "", str(uuid.uuid4())])
async def test_unknown_jobs_are_missing(db, job_id):
    assert await jobs.get(db, job_id) is None
    assert (await jobs.claim(db, job_id, stale_after=STALE)).outcome is ClaimOutcome.MISSING
    assert await jobs.cancel(db, job_id) is None


async def test_one_attempt_at_a_time_holds_the_job(db):
    job = await make_job(db)
    first = await jobs.claim(db, job.id, stale_after=STALE, worker="host:1")
    assert first.outcome is ClaimOutcome.CLAIMED
    assert (first.job.state, first.job.attempts) == (JobState.RUNNING, 1)
    again = await jobs.claim(db, job.id, stale_after=STALE, worker="host:2")
    assert again.outcome is ClaimOutcome.BUSY
    assert await jobs.heartbeat(db, job.id, first.lease, 0.25)
    assert not await jobs.heartbeat(db, job.id, str(uuid.uuid4()), 0.5)
    assert (await jobs.get(db, job.id)).progress == pytest.approx(0.25)


async def test_finishing_stores_the_result_once(db):
    job = await make_job(db)
    claim = await jobs.claim(db, job.id, stale_after=STALE)
    done = await jobs.finish(db, job.id, claim.lease, {"examined": 3})
    assert (done.state, done.progress, done.result, done.finished_at is not None) == (
        JobState.SUCCEEDED,
        1.0,
        {"examined": 3},
        True,
    )
    assert await jobs.finish(db, job.id, claim.lease, {"examined": 4}) is None
    assert (await jobs.claim(db, job.id, stale_after=STALE)).outcome is ClaimOutcome.FINISHED
    assert (await jobs.get(db, job.id)).result == {"examined": 3}


async def test_a_stale_attempt_is_taken_over_and_its_writes_ignored(db):
    job = await make_job(db)
    old = await jobs.claim(db, job.id, stale_after=STALE, worker="host:1")
    await age_heartbeat(db, job.id)
    new = await jobs.claim(db, job.id, stale_after=STALE, worker="host:2")
    assert new.outcome is ClaimOutcome.CLAIMED
    assert new.job.attempts == 2
    assert not await jobs.heartbeat(db, job.id, old.lease)
    assert await jobs.fail(db, job.id, old.lease, "late") is None
    assert (await jobs.finish(db, job.id, new.lease, {"ok": True})).state is JobState.SUCCEEDED


async def test_a_dead_holder_is_taken_over_at_once(db):
    job = await make_job(db)
    await jobs.claim(db, job.id, stale_after=STALE, worker="host:1")
    busy = await jobs.claim(db, job.id, stale_after=STALE, worker="host:2", is_dead=lambda w: w == "host:3")
    assert busy.outcome is ClaimOutcome.BUSY
    taken = await jobs.claim(db, job.id, stale_after=STALE, worker="host:2", is_dead=lambda w: w == "host:1")
    assert taken.outcome is ClaimOutcome.CLAIMED


async def test_a_job_that_keeps_losing_its_worker_fails(db):
    job = await make_job(db)
    for _ in range(2):
        assert (await jobs.claim(db, job.id, stale_after=STALE, max_attempts=2)).outcome is ClaimOutcome.CLAIMED
        await age_heartbeat(db, job.id)
    gave_up = await jobs.claim(db, job.id, stale_after=STALE, max_attempts=2)
    assert gave_up.outcome is ClaimOutcome.EXHAUSTED
    assert gave_up.job.state is JobState.FAILED
    assert "2 attempts" in gave_up.job.error


async def test_a_released_job_can_be_claimed_again_without_counting_the_attempt(db):
    job = await make_job(db)
    claim = await jobs.claim(db, job.id, stale_after=STALE)
    released = await jobs.release(db, job.id, claim.lease, "database restarting")
    assert (released.state, released.attempts, released.error) == (JobState.QUEUED, 0, "database restarting")
    assert (await jobs.claim(db, job.id, stale_after=STALE)).job.attempts == 1


@pytest.mark.parametrize("running", [False, True])
async def test_cancelling_stops_a_job(db, running):
    job = await make_job(db)
    claim = await jobs.claim(db, job.id, stale_after=STALE) if running else None
    cancelled = await jobs.cancel(db, job.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at is not None
    if claim is not None:
        assert not await jobs.heartbeat(db, job.id, claim.lease)
        assert await jobs.finish(db, job.id, claim.lease, {}) is None
    assert await jobs.cancel(db, job.id) is None
    assert (await jobs.claim(db, job.id, stale_after=STALE)).outcome is ClaimOutcome.FINISHED


async def test_the_reaper_requeues_lost_jobs_and_fails_exhausted_ones(db):
    lost = await make_job(db)
    await jobs.claim(db, lost.id, stale_after=STALE)
    exhausted = await make_job(db)
    for _ in range(3):
        await jobs.claim(db, exhausted.id, stale_after=STALE)
        await age_heartbeat(db, exhausted.id)
    healthy = await make_job(db)
    await jobs.claim(db, healthy.id, stale_after=STALE)
    forgotten = await make_job(db)
    await db.execute("UPDATE jobs SET created_at = created_at - interval '1 hour' WHERE id = $1::uuid", forgotten.id)
    await age_heartbeat(db, lost.id)

    reaped = await jobs.reap_stale(db, stale_after=STALE, max_attempts=3)
    assert {job.id for job in reaped.requeued} >= {lost.id, forgotten.id}
    assert healthy.id not in {job.id for job in reaped.requeued}
    assert [job.id for job in reaped.failed if job.id == exhausted.id] == [exhausted.id]
    assert (await jobs.get(db, lost.id)).state is JobState.QUEUED
    assert (await jobs.get(db, exhausted.id)).state is JobState.FAILED
    assert (await jobs.get(db, healthy.id)).state is JobState.RUNNING


async def test_finished_jobs_are_deleted_after_retention(db):
    job = await make_job(db)
    await jobs.cancel(db, job.id)
    await db.execute("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = $1::uuid", job.id)
    assert await jobs.delete_finished(db, timedelta(days=30)) >= 1
    assert await jobs.get(db, job.id) is None


# --- events --------------------------------------------------------------------------------------


@pytest.fixture
def job_id():
    return str(uuid.uuid4())


@pytest.fixture
async def events(redis, job_id):
    yield JobEvents(redis)
    await redis.delete(backlog_key(job_id), f"ringfence:job:{job_id}:seq")


async def test_a_late_subscriber_gets_the_backlog_then_live_events(redis, events, job_id):
    await events.publish(job_id, {"type": "ImpactProgress", "processed": 0, "total": 10})
    await events.publish(job_id, {"type": "ImpactedFlow", "key": "a", "before": "allow", "after": "deny"})
    received = []
    caught_up = asyncio.Event()

    async def follow():
        async for event in subscribe(redis, job_id, idle_timeout=10):
            received.append(event)
            if len(received) == 2:
                caught_up.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(caught_up.wait(), 10)
    await events.publish(job_id, {"type": "ImpactSummary", "examined": 10, "changed": 1})
    await events.publish(job_id, {"type": "Job", "state": "succeeded"}, final=True)
    await asyncio.wait_for(follower, 10)
    assert [e["type"] for e in received] == ["ImpactProgress", "ImpactedFlow", "ImpactSummary", "Job"]
    assert [e["seq"] for e in received] == [1, 2, 3, 4]
    assert received[-1]["final"] is True


async def test_a_retried_attempt_repeats_nothing_to_subscribers(redis, events, job_id):
    for attempt in range(2):
        await events.publish(job_id, {"type": "ImpactProgress", "processed": 0, "total": 5})
        await events.publish(job_id, {"type": "ImpactedFlow", "key": "k1"})
        await events.publish(job_id, {"type": "ImpactProgress", "processed": 3, "total": 5})
        if attempt == 1:
            await events.publish(job_id, {"type": "ImpactedFlow", "key": "k2"})
    await events.publish(job_id, {"type": "ImpactSummary", "changed": 2}, final=True)
    seen = [event async for event in subscribe(redis, job_id, idle_timeout=5)]
    assert [(e["type"], e.get("key"), e.get("processed")) for e in seen] == [
        ("ImpactProgress", None, 0),
        ("ImpactedFlow", "k1", None),
        ("ImpactProgress", None, 3),
        ("ImpactedFlow", "k2", None),
        ("ImpactSummary", None, None),
    ]


async def test_silence_ends_a_subscription(redis, job_id):
    with pytest.raises(TimeoutError):
        async for _ in subscribe(redis, job_id, idle_timeout=0.3):
            pass


async def test_many_events_go_out_in_order_in_one_call(redis, events, job_id):
    await events.publish(job_id, {"type": "ImpactProgress", "processed": 0, "total": 2})
    last = await events.publish_many(job_id, [{"type": "ImpactedFlow", "key": str(n)} for n in range(3)])
    assert last == 4
    await events.publish(job_id, {"type": "ImpactSummary", "changed": 3}, final=True)
    seen = [event async for event in subscribe(redis, job_id, idle_timeout=5)]
    assert [(e["seq"], e.get("key")) for e in seen] == [(1, None), (2, "0"), (3, "1"), (4, "2"), (5, None)]


async def test_an_event_needs_a_type(events, job_id):
    with pytest.raises(ValueError, match="type"):
        await events.publish(job_id, {"processed": 1})
