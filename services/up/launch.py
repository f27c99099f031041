"""``ringfence up`` step by step: lock the data directory, start the servers, migrate, run the services.

1. Take ``<data_dir>/up.lock`` (one ``up`` per data directory).
2. Start an embedded PostgreSQL when no ``RINGFENCE_DATABASE_URL`` is configured and an embedded Redis
   when no ``RINGFENCE_REDIS_URL`` is, each on its own, with their data under the data directory.
3. Apply the migrations; make sure the admin token is valid.
4. Start the services as one supervised group (:mod:`services.up.supervisor`): the HTTP server (API and
   ingestion, :mod:`services.up.web`), the worker with beat, and the collector.
5. Wait for ``/readyz``; load the storefront demo when asked; print where everything is.
6. Run until SIGINT or SIGTERM, then stop the services, then the servers, and release the lock.

Signals only set a flag while ``up`` works, so a Ctrl-C during startup stops things in order as well
(after the step under way). A child that keeps crashing ends ``up`` with its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final, Self

import asyncpg
import httpx

from services.common.db import MigrationError, connect, load_migrations, migrate
from services.common.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError
from services.common.settings import Settings
from services.up.lock import DataDirLock
from services.up.supervisor import ChildGaveUpError, ChildSpec, RestartPolicy, Supervisor, SupervisorError
from services.up.token import AdminToken, ensure_admin_token

Echo = Callable[[str], None]

READY_TIMEOUT_SECONDS: Final = 90.0
GRACE_PERIOD_SECONDS: Final = 10.0
LOGS_DIR: Final = "logs"
FLOW_LOGS_DIR: Final = "flowlogs"


class UpError(RuntimeError):
    """``up`` cannot start or keep running; the message says why and what to do."""


class Interrupted(Exception):  # noqa: N818 - a request to stop, not an error
    """SIGINT or SIGTERM arrived while ``up`` was starting."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    """The command line of ``up``."""

    host: str
    port: int
    demo: bool
    sync: bool = False  # also run `ringfence sync --read-only` against the configured cluster
    grace_period: float = GRACE_PERIOD_SECONDS
    ready_timeout: float = READY_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a running ``up`` serves."""

    base_url: str

    @property
    def graphql(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def ingest(self) -> str:
        return f"{self.base_url}/ingest/flows"

    @property
    def readyz(self) -> str:
        return f"{self.base_url}/readyz"


class StopSignals:
    """SIGINT and SIGTERM set :attr:`event` instead of raising; the previous handlers come back on exit."""

    def __init__(self, echo: Echo) -> None:
        self.event = threading.Event()
        self.received: str | None = None
        self._echo = echo
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            self._echo(f"{name} again: already stopping, please wait")
            return
        self.received = name
        self.event.set()

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived."""
        if self.event.is_set():
            raise Interrupted(self.received)

    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def run_up(settings: Settings, options: UpOptions, echo: Echo) -> int:
    """Run ``up`` until a stop signal (exit status 0) or a fatal problem (raises :class:`UpError`)."""
    started = time.monotonic()
    data_dir = settings.data_dir.absolute()
    endpoints = Endpoints(f"http://{_url_host(options.host)}:{options.port}")
    configured = settings
    with StopSignals(echo) as signals, DataDirLock(data_dir), contextlib.ExitStack() as stack:
        try:
            _check_port_free(options.host, options.port)
            settings = _start_servers(configured, data_dir, stack, echo)
            signals.check()
            assert settings.database_url is not None
            admin = asyncio.run(_prepare_database(settings.database_url, data_dir, settings.admin_token))
            signals.check()
            supervisor = Supervisor(
                child_specs(settings, data_dir, options),
                policy=RestartPolicy(),
                grace_period=options.grace_period,
                on_event=lambda line: echo(f"up: {line}"),
            )
            stack.callback(supervisor.stop)
            supervisor.start()
            _wait_ready(endpoints, supervisor, signals, options.ready_timeout)
            ready_after = time.monotonic() - started
            demo_summary = None
            if options.demo:
                demo_summary = _load_demo(endpoints, admin, signals, echo)
            for line in banner(
                endpoints,
                admin,
                data_dir=data_dir,
                ready_after=ready_after,
                demo_summary=demo_summary,
                configured=configured,
                syncing=options.sync,
            ):
                echo(line)
            supervisor.run(signals.event)
            echo(f"up: {signals.received or 'stop'} received, stopping")
        except Interrupted as interrupted:
            echo(f"up: {interrupted.args[0]} received while starting, stopping")
        except ChildGaveUpError as error:
            raise UpError(str(error)) from None
        except (EmbeddedServerError, MigrationError, SupervisorError) as error:
            raise UpError(str(error)) from None
    return 0


def child_specs(settings: Settings, data_dir: Path, options: UpOptions) -> list[ChildSpec]:
    """The supervised services, each a ``python -m`` process with the servers' URLs in its environment."""
    import os  # noqa: PLC0415 - the environment is read here only, to hand it to the children

    env = dict(os.environ)
    env.update(
        {
            "RINGFENCE_DATABASE_URL": settings.database_url or "",
            "RINGFENCE_REDIS_URL": settings.redis_url or "",
            "RINGFENCE_BROKER_URL": settings.broker_url or "",
            "RINGFENCE_PORT": str(options.port),
            "RINGFENCE_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    python = sys.executable
    logs = data_dir / LOGS_DIR
    tailed = flow_log_file(data_dir)
    tailed.parent.mkdir(parents=True, exist_ok=True)
    commands = {
        # The API with POST /ingest/flows beside it, on the one public port.
        "api": [python, "-m", "services.up.web", "--host", options.host, "--port", str(options.port)],
        "worker": [python, "-m", "services", "worker", "--beat"],
        # Partition upkeep and retention, and a tailer for flow logs dropped into the data directory.
        "collector": [python, "-m", "services", "collector", "--no-listen", "--file", str(tailed)],
    }
    if options.sync:
        # Import the cluster's namespaces, pods and policies; writing back is a deliberate, separate choice.
        commands["sync"] = [python, "-m", "services", "sync", "--read-only"]
    return [ChildSpec(name, argv, logs / f"{name}.log", env=env, cwd=data_dir) for name, argv in commands.items()]


def cluster_config_present(environ: Mapping[str, str], home: Path) -> bool:
    """Whether a Kubernetes client would find a cluster: in-cluster, ``$KUBECONFIG`` or ``~/.kube/config``."""
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    kubeconfig = environ.get("KUBECONFIG")
    if kubeconfig:
        return any(Path(part).is_file() for part in kubeconfig.split(":") if part)
    return (home / ".kube" / "config").is_file()


def flow_log_file(data_dir: Path) -> Path:
    """The file the collector of ``up`` tails: append Calico flow-log lines to it and they are ingested."""
    return data_dir / FLOW_LOGS_DIR / "flows.log"


def banner(
    endpoints: Endpoints,
    admin: AdminToken,
    *,
    data_dir: Path,
    ready_after: float,
    demo_summary: str | None,
    configured: Settings,
    syncing: bool = False,
) -> Iterator[str]:
    """What ``up`` prints once ready (``configured``: the settings before embedded servers filled them in)."""
    token = "$RINGFENCE_ADMIN_TOKEN (as configured)" if admin.origin == "configured" else admin.token
    yield ""
    yield f"Ringfence is up (ready in {ready_after:.1f} s)."
    yield f"  GraphQL   {endpoints.graphql}   (open it in a browser for GraphiQL)"
    yield f"  Ingest    {endpoints.ingest}   (POST NDJSON flow logs, gzip welcome)"
    yield f"  Tailing   {flow_log_file(data_dir)}   (flow-log lines appended there are ingested too)"
    yield f"  Token     {token}   (admin; send 'Authorization: Bearer <token>')"
    yield f"  Data      {data_dir}   (reused on the next start; logs in {data_dir / LOGS_DIR})"
    yield f"  Database  {'RINGFENCE_DATABASE_URL' if configured.database_url else 'embedded PostgreSQL'}"
    yield f"  Redis     {'RINGFENCE_REDIS_URL' if configured.redis_url else 'embedded Redis'}"
    if syncing:
        yield "  Cluster   ringfence sync --read-only (imports namespaces, pods and policies)"
    if demo_summary:
        yield f"  Demo      {demo_summary}"
    yield ""
    if admin.origin != "configured":
        yield f"  export RINGFENCE_URL={endpoints.base_url} RINGFENCE_TOKEN={admin.token}"
        yield ""
    yield "Press Ctrl-C to stop."


# --- steps ---------------------------------------------------------------------------------------


def _start_servers(settings: Settings, data_dir: Path, stack: contextlib.ExitStack, echo: Echo) -> Settings:
    database_url = redis_url = None
    if settings.database_url is None:
        echo(f"up: starting embedded PostgreSQL (data in {data_dir / 'postgres'})")
        postgres = EmbeddedPostgres(data_dir)
        stack.callback(postgres.stop)
        postgres.start()
        database_url = postgres.url
    if settings.redis_url is None:
        echo(f"up: starting embedded Redis (data in {data_dir / 'redis'})")
        redis = EmbeddedRedis(data_dir)
        stack.callback(redis.stop)
        redis.start()
        redis_url = redis.url
    return settings.with_servers(database_url=database_url, redis_url=redis_url)


def _load_demo(endpoints: Endpoints, admin: AdminToken, signals: StopSignals, echo: Echo) -> str | None:
    """Load the storefront demo; a failure is reported and ``up`` keeps running without it."""
    from services.up.demo import DemoLoadError, load_storefront_demo  # noqa: PLC0415 - only with --demo

    echo("up: loading the storefront demo")
    started = time.monotonic()
    try:
        demo = load_storefront_demo(endpoints.base_url, admin.token, now=time.time(), should_stop=signals.event.is_set)
    except (DemoLoadError, httpx.HTTPError) as error:
        echo(f"up: the storefront demo could not be loaded: {error}")
        return None
    signals.check()
    return f"{demo.summary()} (in {time.monotonic() - started:.1f} s)"


async def _prepare_database(database_url: str, data_dir: Path, configured_token: str | None) -> AdminToken:
    try:
        connection = await connect(database_url)
    except (OSError, TimeoutError) as error:
        raise UpError(f"cannot connect to the database: {error}") from None
    except asyncpg.PostgresError as error:
        raise UpError(f"the database refused the connection: {error}") from None
    try:
        await migrate(connection, load_migrations())
        return await ensure_admin_token(connection, data_dir, configured_token)
    except asyncpg.PostgresError as error:
        raise UpError(f"preparing the database failed: {error}") from None
    finally:
        await connection.close()


def _wait_ready(endpoints: Endpoints, supervisor: Supervisor, signals: StopSignals, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            signals.check()
            supervisor.poll()
            try:
                response = client.get(endpoints.readyz)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}"
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            if time.monotonic() > deadline:
                raise UpError(f"{endpoints.readyz} not ready after {timeout:g} s ({last}); see the logs")
            if signals.event.wait(0.1):
                signals.check()


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UpError(
                f"cannot listen on {host}:{port} ({error.strerror}); pass --port or set RINGFENCE_PORT"
            ) from None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached through loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
