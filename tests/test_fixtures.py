"""The server fixtures of tests/conftest.py isolate what each test and each session writes."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("run", ["first", "second"])
async def test_each_test_runs_in_a_transaction_rolled_back_afterwards(db, run):
    # The second run would hit the unique key if the first run's row had been committed.
    await db.execute("INSERT INTO resources (kind, name, spec) VALUES ('Tier', 'fixture-check', '{}'::jsonb)")
    assert await db.fetchval("SELECT count(*) FROM resources WHERE name = 'fixture-check'") == 1


async def test_the_session_works_in_its_own_migrated_database(db, database_url):
    name = await db.fetchval("SELECT current_database()")
    assert re.fullmatch(r"ringfence_test_\d+_[0-9a-f]{8}", name)
    assert database_url.rsplit("/", 1)[-1].split("?")[0] == name
    assert await db.fetchval("SELECT count(*) FROM schema_migrations") >= 1


@pytest.mark.parametrize("run", ["first", "second"])
async def test_redis_keys_under_the_session_prefix_are_deleted_after_each_test(redis, redis_key_prefix, run):
    assert await redis.set(f"{redis_key_prefix}fixture-check", run, nx=True)


def test_tests_using_servers_are_marked_integration(request):
    # This test uses no server fixture, so it must not carry the marker.
    assert request.node.get_closest_marker("integration") is None
