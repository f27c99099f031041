"""Fixtures of the sync tests (``pytest_plugins = ["sync_fixtures"]`` in a test module).

The API double per test, and a database per module: other tests commit resources into the session's
shared database, and a sync compares *everything* in the store with the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from k8s_double import KubernetesDouble
from support.database import rolled_back
from sync_support import KUBE_SYSTEM, NAMESPACE

from services.common.db import create_pool
from services.sync.client import ClusterClient


@pytest.fixture
def cluster() -> Iterator[KubernetesDouble]:
    """A Kubernetes API double with the Calico API server, holding the storefront namespace."""
    with KubernetesDouble() as double:
        double.create(NAMESPACE)
        double.create(KUBE_SYSTEM)
        yield double


@pytest.fixture
def cluster_client(cluster: KubernetesDouble) -> Iterator[ClusterClient]:
    client = ClusterClient(cluster.api_client())
    yield client
    client.close()


@pytest.fixture(scope="module")
async def sync_database_url(migrated_database_factory: Any) -> str:
    """A migrated database for this module's sync tests alone."""
    url: str = await migrated_database_factory()
    return url


@pytest.fixture(scope="module")
async def sync_pool(sync_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(sync_database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def sync_db(sync_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection on the module's database, in a transaction rolled back after the test."""
    async with rolled_back(sync_pool) as connection:
        yield connection
