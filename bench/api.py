"""API latency and throughput over a large flow store, GraphQL against a plain Starlette JSON endpoint.

    .venv/bin/python bench/api.py [--records 1000000] [--database-url URL] [--requests 100] [--keep]

Loads ``--records`` flow records (bench/flow_queries.py's loader: bench/flowgen.py's cluster through the
collector's FlowWriter) into a fresh database, starts one server process (uvicorn, loopback) serving the
API at ``/graphql`` and, beside it, ``/plain/*``: the same store functions (the same SQL) answered as
JSON by plain Starlette endpoints, both behind the same bearer-token check. Then, from this process:

* p50 / p99 latency, requests one at a time, of a ``flows`` page of 100, ``flowGraph`` for one
  namespace over 24 h and ``policyBoard`` over 24 h, on each side;
* requests/s of a small query (the 10 newest flows of a namespace) under ``--concurrency`` clients
  for ``--seconds``, on each side.

Targets: p99 under 100 ms for each GraphQL query; GraphQL at least 0.5x the plain endpoint's rate.
An embedded Redis is started unless ``--redis-url`` is given; the database is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flow_queries import load
from bench.flowgen import WINDOW
from bench.ingest import DEFAULT_SERVER, create_database, drop_database

NAMESPACE = "team05"
FLOW_FIELDS = (
    "startTime endTime reporter action proto destPort sourceType sourceNamespace sourceNameAggr destType "
    "destNamespace destNameAggr destDomains numFlows bytesIn bytesOut policies"
)
FLOWS = f"""query($f: FlowFilter, $n: Int) {{ flows(filter: $f, first: $n) {{
  edges {{ cursor node {{ {FLOW_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
GRAPH = """query($f: FlowFilter) { flowGraph(filter: $f) {
  nodes { id kind namespace name } edges { source target destPort proto action numFlows } } }"""
BOARD = """query($from: DateTime, $to: DateTime) { policyBoard(from: $from, to: $to) {
  tiers { name order policies { kind name namespace staged allowed denied passed } } } }"""
SMALL = "query($f: FlowFilter) { flows(filter: $f, first: 10) { edges { node { startTime sourceNameAggr action } } } }"


# --- the server process ---------------------------------------------------------------------------


def plain_app(database_url: str) -> Any:
    """Starlette endpoints answering the same store calls as JSON, authenticated like the API."""
    from starlette.applications import Starlette  # noqa: PLC0415 - server process only
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from services.api.auth import AuthenticationError, Authenticator, bearer_token  # noqa: PLC0415
    from services.common.db import create_pool, flow_reads, flow_summaries  # noqa: PLC0415
    from services.common.db import statistics as stats_store  # noqa: PLC0415

    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await create_pool(database_url, min_size=1, max_size=10)
        state["auth"] = Authenticator(state["pool"])
        yield
        await state["pool"].close()

    async def authenticated(request: Request) -> bool:
        try:
            await state["auth"].authenticate(bearer_token(request.headers.get("authorization")))
        except AuthenticationError:
            return False
        return True

    def window(request: Request) -> tuple[datetime | None, datetime | None]:
        since, until = request.query_params.get("from"), request.query_params.get("to")
        return (
            datetime.fromisoformat(since) if since else None,
            datetime.fromisoformat(until) if until else None,
        )

    def flow_json(flow: Any) -> dict[str, Any]:
        from ringfence.flows.hits import format_hit  # noqa: PLC0415

        return {
            "startTime": datetime.fromtimestamp(flow.start_time, UTC).isoformat(),
            "endTime": datetime.fromtimestamp(flow.end_time, UTC).isoformat(),
            "reporter": flow.reporter.value,
            "action": flow.action.value,
            "proto": flow.proto,
            "destPort": flow.dest.port,
            "sourceType": flow.source.type.value,
            "sourceNamespace": flow.source.namespace,
            "sourceNameAggr": flow.source.name_aggr,
            "destType": flow.dest.type.value,
            "destNamespace": flow.dest.namespace,
            "destNameAggr": flow.dest.name_aggr,
            "destDomains": list(flow.dest_domains),
            "numFlows": flow.num_flows,
            "bytesIn": float(flow.bytes_in),
            "bytesOut": float(flow.bytes_out),
            "policies": [format_hit(hit) for hit in flow.enforced_policies],
        }

    async def flows(request: Request) -> Response:
        if not await authenticated(request):
            return Response(status_code=401)
        since, until = window(request)
        where = flow_reads.FlowFilter(namespace=request.query_params.get("namespace"), from_=since, to=until)
        async with state["pool"].acquire() as conn:
            page = await flow_reads.query_flows(conn, where, int(request.query_params.get("first", "100")))
        body = {
            "edges": [{"cursor": item.cursor, "node": flow_json(item.flow)} for item in page.items],
            "pageInfo": {"hasNextPage": page.has_next_page, "endCursor": page.end_cursor},
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def graph(request: Request) -> Response:
        if not await authenticated(request):
            return Response(status_code=401)
        since, until = window(request)
        where = flow_reads.FlowFilter(namespace=request.query_params.get("namespace"), from_=since, to=until)
        async with state["pool"].acquire() as conn:
            result = await flow_reads.flow_graph(conn, where)
        body = {
            "nodes": [{"id": n.id, "kind": n.kind, "namespace": n.namespace, "name": n.name} for n in result.nodes],
            "edges": [
                {
                    "source": e.source,
                    "target": e.target,
                    "destPort": e.dest_port,
                    "proto": e.proto,
                    "action": e.action,
                    "numFlows": e.num_flows,
                }
                for e in result.edges
            ],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def board(request: Request) -> Response:
        if not await authenticated(request):
            return Response(status_code=401)
        since, until = window(request)
        async with state["pool"].acquire() as conn:
            recorded = await flow_summaries.policy_board_counts(conn, since, until)
            evaluated = await stats_store.board_counts(conn, since, until)
        body = {
            "recorded": [_plain(hit) for hit in recorded],
            "evaluated": [_plain(hit) for hit in evaluated],
        }
        return Response(orjson.dumps(body, default=str), media_type="application/json")

    return Starlette(
        routes=[
            Route("/plain/flows", flows),
            Route("/plain/graph", graph),
            Route("/plain/board", board),
        ],
        lifespan=lifespan,
    )


def _plain(value: Any) -> Any:
    fields = getattr(value, "__dataclass_fields__", None) or getattr(value, "__slots__", None)
    if fields:
        return {name: getattr(value, name) for name in fields}
    return value if isinstance(value, dict | list | int | str | float | None) else str(value)


def serve(port: int, database_url: str, redis_url: str) -> None:
    """The server process: the API and the plain endpoints on one uvicorn."""
    import uvicorn  # noqa: PLC0415

    from services.api.app import create_app  # noqa: PLC0415
    from services.common.settings import Settings  # noqa: PLC0415
    from services.up.web import PathDispatch  # noqa: PLC0415 - the same prefix dispatch `up` uses

    settings = Settings(database_url=database_url, redis_url=redis_url)
    app = PathDispatch(create_app(settings), [("/plain/", plain_app(database_url))])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


# --- the client ---------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def latencies(client: httpx.AsyncClient, request: Any, count: int) -> list[float]:
    for _ in range(3):  # warm up: pools, plans, caches
        await request(client)
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        await request(client)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def throughput(client: httpx.AsyncClient, request: Any, concurrency: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await request(client)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def graphql(query: str, variables: dict[str, Any]) -> Any:
    async def request(client: httpx.AsyncClient) -> None:
        response = await client.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL failed: {response.status_code} {response.text[:300]}")

    return request


def plain(path: str, params: dict[str, Any]) -> Any:
    async def request(client: httpx.AsyncClient) -> None:
        response = await client.get(path, params=params)
        response.raise_for_status()
        response.json()

    return request


async def measure(url: str, token: str, end: int, args: argparse.Namespace) -> None:
    to = datetime.fromtimestamp(end, UTC)
    since = to - timedelta(hours=24)
    window = {"from": since.isoformat(), "to": to.isoformat()}
    in_namespace = {"f": {"namespace": NAMESPACE, **window}}
    cases = {
        "flows page of 100": (
            graphql(FLOWS, {"f": None, "n": 100}),
            plain("/plain/flows", {"first": 100}),
        ),
        f"flowGraph {NAMESPACE}, 24 h": (
            graphql(GRAPH, in_namespace),
            plain("/plain/graph", {"namespace": NAMESPACE, **window}),
        ),
        "policyBoard, 24 h": (graphql(BOARD, window), plain("/plain/board", window)),
    }
    small = (graphql(SMALL, in_namespace), plain("/plain/flows", {"namespace": NAMESPACE, "first": 10, **window}))
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        print(f"\nlatency, {args.requests} requests one at a time (ms):")
        print(f"{'query':28} {'GraphQL p50':>11} {'p99':>7} {'plain p50':>10} {'p99':>7} {'p99 ratio':>9}")
        for name, (gql, raw) in cases.items():
            g = await latencies(client, gql, args.requests)
            p = await latencies(client, raw, args.requests)
            g99, p99 = percentile(g, 0.99), percentile(p, 0.99)
            verdict = "ok" if g99 < 100 else "OVER 100 ms"
            print(
                f"{name:28} {statistics.median(g):11.1f} {g99:7.1f} {statistics.median(p):10.1f} {p99:7.1f} "
                f"{g99 / p99:8.2f}x  {verdict}"
            )
        print(
            f"\nthroughput of a small query (10 newest flows of {NAMESPACE}), {args.concurrency} clients, "
            f"{args.seconds:.0f} s each:"
        )
        g_rate = await throughput(client, small[0], args.concurrency, args.seconds)
        p_rate = await throughput(client, small[1], args.concurrency, args.seconds)
        verdict = "ok" if g_rate >= 0.5 * p_rate else "UNDER 0.5x"
        print(f"GraphQL {g_rate:,.0f} req/s, plain {p_rate:,.0f} req/s: {g_rate / p_rate:.2f}x  {verdict}")


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from services.common.embedded import EmbeddedRedis  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as directory:
        redis = EmbeddedRedis(Path(directory), persistent=False)
        redis.start()
        try:
            yield redis.url
        finally:
            redis.stop()


@contextlib.contextmanager
def server_process(port: int, database_url: str, redis_url: str) -> Iterator[str]:
    command = [sys.executable, __file__, "--serve", str(port), "--database-url", database_url, "--redis-url", redis_url]
    process = subprocess.Popen(command)  # noqa: S603 - our own script
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(30)


async def create_bench_token(database_url: str) -> str:
    from services.api.auth import create_token  # noqa: PLC0415
    from services.common.db import connect  # noqa: PLC0415

    connection = await connect(database_url)
    try:
        return await create_token(connection, "bench", "viewer", [], [])
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("RINGFENCE_DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--redis-url", default=os.environ.get("RINGFENCE_REDIS_URL"))
    parser.add_argument("--requests", type=int, default=100, help="requests per latency measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the loaded database (its name is printed)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.database_url, args.redis_url)
        return
    from services.common.embedded import find_free_port  # noqa: PLC0415

    end = int(time.time())
    end -= end % WINDOW
    name, url = asyncio.run(create_database(args.database_url))
    print(f"database {name}")
    try:
        elapsed = asyncio.run(load(url, args.records, end))
        print(f"loaded {args.records:,} records in {elapsed:.0f} s")
        token = asyncio.run(create_bench_token(url))
        with redis_server(args.redis_url) as redis_url, server_process(find_free_port(), url, redis_url) as api:
            asyncio.run(measure(api, token, end, args))
    finally:
        if not args.keep:
            asyncio.run(drop_database(args.database_url, name))


if __name__ == "__main__":
    main()
