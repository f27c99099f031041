"""Load the storefront demo into a running Ringfence through its public doors, never through SQL.

Resources go through the API's ``applyManifests`` mutation; flow logs through the collector's
``POST /ingest/flows``, exactly as a user's ``ringfence apply`` and ``ringfence ingest`` would send them.

Running it again duplicates nothing:

* resources that already exist are left alone (the user may have changed them during the lab): only the
  missing ones are applied, and the API stores a document equal to the stored one as a no-op anyway;
* flows are sent one 5-minute window per request under the idempotency key ``storefront-demo/<seed>/<start>``,
  and a window is generated identically whenever it is generated (:mod:`ringfence.demo.flowlog`), so
  the collector answers a window it has already stored from its record without storing it again. A
  later run only adds the windows that have closed since.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import httpx

from ringfence.demo import demo_windows, storefront_manifests, storefront_window_lines
from ringfence.manifests import dump_manifests, load_manifests
from ringfence.model import Resource

IDEMPOTENCY_PREFIX: Final = "storefront-demo"
_PARALLEL_REQUESTS: Final = 4
_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)

EXISTING_RESOURCES: Final = "query DemoResources { resources { kind name namespace } }"
APPLY_MANIFESTS: Final = """
mutation ApplyDemo($yaml: String!) {
  applyManifests(yaml: $yaml) { kind name namespace resourceVersion }
}
"""


class DemoLoadError(RuntimeError):
    """The API or the collector refused part of the demo."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What a load did: resources created or found, windows sent or found stored, records stored and refused."""

    created: int
    existing: int
    windows: int
    replayed: int  # windows the collector had stored already (same idempotency key)
    accepted: int  # records stored by this load
    rejected: int

    def summary(self) -> str:
        """One line for the ``up`` banner."""
        return (
            f"storefront: {self.created} resource(s) created, {self.existing} already there; "
            f"{self.windows - self.replayed} new 5-minute window(s) of flow logs ({self.accepted} records), "
            f"{self.replayed} already stored"
        )


def load_storefront_demo(
    base_url: str,
    token: str,
    *,
    now: float,
    hours: int = 24,
    seed: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
) -> DemoResult:
    """Load the storefront's resources and the flow logs of the ``hours`` before ``now`` (unix seconds)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=_TIMEOUT) as client:
        created, existing = _apply_missing(client)
        windows = list(demo_windows(now, hours))
        replayed = accepted = rejected = 0
        with ThreadPoolExecutor(_PARALLEL_REQUESTS, thread_name_prefix="demo-ingest") as pool:
            for answer in pool.map(lambda start: _send_window(client, start, seed, should_stop), windows):
                if answer.replayed:
                    replayed += 1
                else:
                    accepted += answer.accepted
                rejected += answer.rejected
    if rejected:
        raise DemoLoadError(f"the collector rejected {rejected} demo flow records")
    return DemoResult(created, existing, len(windows), replayed, accepted, rejected)


@dataclass(frozen=True, slots=True)
class _Answer:
    accepted: int = 0
    rejected: int = 0
    replayed: bool = False


def _apply_missing(client: httpx.Client) -> tuple[int, int]:
    wanted = load_manifests(storefront_manifests())
    present = {
        (item["kind"], item["namespace"], item["name"]) for item in _graphql(client, EXISTING_RESOURCES)["resources"]
    }
    missing: list[Resource] = [r for r in wanted if (r.kind, r.metadata.namespace, r.metadata.name) not in present]
    if missing:
        _graphql(client, APPLY_MANIFESTS, {"yaml": dump_manifests(missing)})
    return len(missing), len(wanted) - len(missing)


def _send_window(client: httpx.Client, start: int, seed: int, should_stop: Callable[[], bool]) -> _Answer:
    if should_stop():
        return _Answer()
    lines = storefront_window_lines(start, seed)
    body = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=5)
    response = client.post(
        "/ingest/flows",
        content=body,
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
            "Idempotency-Key": f"{IDEMPOTENCY_PREFIX}/{seed}/{start}",
        },
    )
    if response.status_code != 200:
        raise DemoLoadError(f"POST /ingest/flows answered {response.status_code}: {response.text[:500]}")
    answer = response.json()
    return _Answer(
        accepted=answer["accepted"],
        rejected=answer["rejected"],
        replayed=response.headers.get("idempotent-replayed") == "true",
    )


def _graphql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}})
    try:
        answer = response.json()
    except ValueError:
        raise DemoLoadError(f"POST /graphql answered {response.status_code}: {response.text[:500]}") from None
    if answer.get("errors"):
        messages = "; ".join(error.get("message", "?") for error in answer["errors"])
        raise DemoLoadError(f"the API refused the demo: {messages}")
    data: dict[str, Any] = answer["data"]
    return data
