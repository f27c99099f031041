"""The stored resources as model objects, for the engines the tasks build."""

from __future__ import annotations

import logging

import asyncpg

from ringfence.manifests import ManifestError, resource_from_dict
from ringfence.model import Resource
from services.common.db import resources as resource_store

logger = logging.getLogger(__name__)


async def load_resources(conn: asyncpg.Connection | asyncpg.Pool, kinds: list[str] | None = None) -> list[Resource]:
    """Every stored resource (of ``kinds``), decoded; a document that no longer decodes is skipped and logged."""
    loaded: list[Resource] = []
    for stored in await resource_store.list_resources(conn, kinds=kinds):
        try:
            loaded.append(resource_from_dict(stored.document))
        except ManifestError as error:
            logger.warning("skipping stored %s: %s", stored.key, error)
    return loaded
