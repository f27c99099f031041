"""`ringfence up` end to end: a real subprocess on a machine with nothing configured.

It starts embedded PostgreSQL and Redis in a temporary data directory, runs the services, loads the
storefront demo through the API and the collector, and answers over HTTP and WebSocket (subscriptions
over graphql-transport-ws, fed by its worker); SIGTERM then stops every process it started and leaves no
lock. A second start reuses the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from ringfence.demo.flowlog import storefront_window_records
from services.common.embedded import find_free_port
from services.up.demo import load_storefront_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_TOKEN = "rf_test-admin-token-for-the-up-test"
READY_LINE = "Press Ctrl-C to stop."
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
RECEIVE_TIMEOUT = 60.0
TRANSPORT_WS = "graphql-transport-ws"

BACKEND = "backend-6cfbdd589f-*"
LOGGING = "logging-7f9b8c6d5b-*"
JOB_PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { id kind state progress error result } }"
PREVIEW = """subscription($y: String!) {
  impactPreview(yaml: $y) {
    __typename
    ... on ImpactProgress { processed total }
    ... on ImpactedFlow { before after change flow { sourceNameAggr destNameAggr destPort } }
    ... on ImpactSummary { examined changed newlyDenied newlyAllowed uncertain }
  } }"""
# The platform team would cut the backend off from logging: only backend -> logging flows may change.
DENY_BACKEND_TO_LOGGING = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.deny-backend-logging
spec:
  tier: platform
  order: 50
  selector: app == 'backend'
  types: [Egress]
  egress:
    - action: Deny
      destination:
        selector: app == 'logging'
"""


@dataclass
class RunningUp:
    process: subprocess.Popen[str]
    base_url: str
    data_dir: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                self.ready.set()
        self.ready.set()  # the process ended: stop waiting

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.base_url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        answer = response.json()
        assert "errors" not in answer, answer
        return answer["data"]

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/graphql"


def up_environment(data_dir: Path, port: int) -> dict[str, str]:
    # Nothing configured but the data directory and the token: embedded servers, as on a fresh machine.
    env = {key: value for key, value in os.environ.items() if not key.startswith("RINGFENCE_")}
    env |= {"RINGFENCE_DATA_DIR": str(data_dir), "RINGFENCE_PORT": str(port), "RINGFENCE_ADMIN_TOKEN": ADMIN_TOKEN}
    return env


@contextlib.contextmanager
def running_up(data_dir: Path, *args: str) -> Iterator[RunningUp]:
    port = find_free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "up", *args],
        env=up_environment(data_dir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # signals from the test runner's terminal must not reach it
    )
    up = RunningUp(process, f"http://127.0.0.1:{port}", data_dir)
    reader = threading.Thread(target=up.read_output, daemon=True)
    reader.start()
    try:
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


def wait_started(up: RunningUp) -> float:
    started = time.monotonic()
    assert up.ready.wait(START_TIMEOUT), f"not ready in {START_TIMEOUT} s:\n{up.output}"
    assert up.process.poll() is None, f"`ringfence up` ended ({up.process.returncode}):\n{up.output}"
    response = httpx.get(f"{up.base_url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next protocol message, answering pings on the way."""
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=RECEIVE_TIMEOUT))
        if message["type"] == "ping":
            ws.send(json.dumps({"type": "pong"}))
            continue
        return message


def subscribe(up: RunningUp, query: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Step through one graphql-transport-ws subscription on ``up``: ack, ``next``... then ``complete``."""
    with connect(up.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10) as ws:
        assert ws.subprotocol == TRANSPORT_WS
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}))
        assert receive(ws) == {"type": "connection_ack"}
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        payloads = []
        while (message := receive(ws))["type"] != "complete":
            assert message["type"] == "next", message
            assert message["id"] == "1"
            assert "errors" not in message["payload"], message
            payloads.append(message["payload"]["data"])
        assert message == {"id": "1", "type": "complete"}
        return payloads


def check_websocket_half(up: RunningUp) -> None:
    """A recommendation followed over jobProgress, then an impact preview, both over WebSocket."""
    started = up.graphql(
        'mutation($w: String!) { recommendPolicies(namespace: "storefront", workload: $w) { id state } }',
        {"w": BACKEND},
    )["recommendPolicies"]
    progress = [event["jobProgress"] for event in subscribe(up, JOB_PROGRESS, {"id": started["id"]})]
    assert {event["id"] for event in progress} == {started["id"]}
    assert [event["progress"] for event in progress] == sorted(event["progress"] for event in progress)
    assert (progress[-1]["state"], progress[-1]["progress"]) == ("succeeded", 1.0), progress[-1]
    assert [policy["name"] for policy in progress[-1]["result"]["policies"]] == ["recommended-backend"]

    events = [event["impactPreview"] for event in subscribe(up, PREVIEW, {"y": DENY_BACKEND_TO_LOGGING})]
    *body, summary = events
    assert summary["__typename"] == "ImpactSummary", summary
    changed = [event for event in body if event["__typename"] == "ImpactedFlow"]
    assert changed
    assert {(e["flow"]["sourceNameAggr"], e["flow"]["destNameAggr"], e["flow"]["destPort"]) for e in changed} == {
        (BACKEND, LOGGING, 24224)
    }
    assert {(e["before"], e["after"], e["change"]) for e in changed} == {("allow", "deny", "newly_denied")}
    assert (summary["changed"], summary["newlyDenied"], summary["newlyAllowed"]) == (len(changed), len(changed), 0)
    assert summary["examined"] > summary["changed"]
    # A preview stores nothing: the policy it previewed does not exist.
    assert up.graphql('{ policy(kind: "GlobalNetworkPolicy", name: "platform.deny-backend-logging") { name } }') == {
        "policy": None
    }


FLOW_TAIL = "subscription($f: FlowFilter) { flowTail(filter: $f) { sourceNameAggr destNameAggr destPort action } }"


def check_flow_tail(up: RunningUp) -> int:
    """Flows posted to `up`'s /ingest/flows reach a flowTail subscriber of the same process group."""
    now = int(time.time())
    window = now - now % 300
    records = [r for r in storefront_window_records(window, seed=4242) if r["source_name_aggr"] == BACKEND]
    assert records
    body = "\n".join(json.dumps(record) for record in records).encode()
    with connect(up.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}))
        assert receive(ws) == {"type": "connection_ack"}
        variables = {"f": {"namespace": "storefront", "workload": BACKEND}}
        ws.send(json.dumps({"id": "t", "type": "subscribe", "payload": {"query": FLOW_TAIL, "variables": variables}}))
        time.sleep(1.0)  # the subscription listens before anything is stored: the tail replays nothing
        answer = httpx.post(
            f"{up.base_url}/ingest/flows",
            content=body,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/x-ndjson"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(records)
        message = receive(ws)
        assert message["type"] == "next", message
        assert message["payload"]["data"]["flowTail"]["sourceNameAggr"] == BACKEND
    return len(records)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(up: RunningUp) -> set[int]:
    """SIGTERM `up`; return the processes it had started (captured just before)."""
    children = descendants(up.process.pid)
    up.process.send_signal(signal.SIGTERM)
    up.process.wait(STOP_TIMEOUT)
    return children


def test_up_serves_the_demo_over_http_and_websocket_and_stops_everything_on_sigterm(tmp_path):
    data_dir = tmp_path / "data"
    with running_up(data_dir, "--demo") as up:
        wait_started(up)
        output = up.output
        assert f"GraphQL   {up.base_url}/graphql" in output
        assert f"Ingest    {up.base_url}/ingest/flows" in output
        assert f"Data      {data_dir}" in output
        assert ADMIN_TOKEN not in output  # a configured secret is not echoed
        assert "storefront: 9 resource(s) created, 0 already there" in output

        data = up.graphql(
            """{
              tiers { name order }
              policies { name tier }
              networkSets { name labels }
              flows(first: 1) { totalCount }
              denied: flows(filter: {action: "deny"}, first: 5) {
                totalCount edges { node { sourceNameAggr policies } }
              }
              flowGraph(filter: {namespace: "storefront"}) { nodes { kind name } }
            }"""
        )
        assert [(t["name"], t["order"]) for t in data["tiers"]][:2] == [("security", 100.0), ("platform", 200.0)]
        assert {p["name"] for p in data["policies"]} >= {
            "security.block-threatfeed",
            "platform.allow-kube-dns",
            "platform.allow-logging",
        }
        assert "public-ip-range" in {s["name"] for s in data["networkSets"]}
        total = data["flows"]["totalCount"]
        assert total > 10_000
        assert data["denied"]["totalCount"] > 0
        for edge in data["denied"]["edges"]:
            assert edge["node"]["sourceNameAggr"] == "threatfeed.feodo-tracker"
        workloads = {node["name"] for node in data["flowGraph"]["nodes"] if node["kind"] == "workload"}
        assert {"frontend-864f4fcdfd-*", "backend-6cfbdd589f-*"} <= workloads

        # The demo again, as a second `up --demo` would load it: nothing is duplicated.
        again = load_storefront_demo(up.base_url, ADMIN_TOKEN, now=time.time())
        assert (again.created, again.existing) == (0, 9)
        assert again.replayed >= again.windows - 2
        assert up.graphql("{ flows(first: 1) { totalCount } }")["flows"]["totalCount"] == total + again.accepted

        check_websocket_half(up)
        tailed = check_flow_tail(up)

        children = stop(up)
        assert up.process.returncode == 0, up.output
        assert len(children) >= 4, children  # PostgreSQL, Redis and the services at least
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if alive(pid)] == []
        assert not (data_dir / "up.lock").exists()

    # The data is kept and reused: a second start finds the demo without loading it.
    with running_up(data_dir, "--no-demo") as second:
        wait_started(second)
        assert "starting embedded PostgreSQL" in second.output
        count = second.graphql("{ flows(first: 1) { totalCount } }")["flows"]["totalCount"]
        assert count == total + again.accepted + tailed
        stop(second)
        assert second.process.returncode == 0, second.output


def test_a_second_up_on_the_same_data_directory_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    with running_up(data_dir) as first:
        wait_started(first)
        second = subprocess.run(
            [sys.executable, "-m", "services", "up"],
            env=up_environment(data_dir, find_free_port()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert f"another `ringfence up` (pid {first.process.pid}) is using {data_dir}" in second.stderr
        stop(first)
