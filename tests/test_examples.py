"""examples/storefront.py against a real `ringfence up --demo` (embedded PostgreSQL and Redis, a worker)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.embedded import find_free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "storefront.py"
ADMIN_TOKEN = "rf_test-admin-token-for-the-examples"
READY_LINE = "Press Ctrl-C to stop."
START_TIMEOUT = 240.0


@contextlib.contextmanager
def ringfence_up(data_dir: Path) -> Iterator[str]:
    """`ringfence up --demo` on a free port with nothing configured; yields its URL once ready."""
    port = find_free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RINGFENCE_")}
    env |= {"RINGFENCE_DATA_DIR": str(data_dir), "RINGFENCE_PORT": str(port), "RINGFENCE_ADMIN_TOKEN": ADMIN_TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "up", "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(START_TIMEOUT), "\n".join(lines)
        assert process.poll() is None, "\n".join(lines)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_storefront_example_runs_the_scenario_through_the_api(tmp_path):
    with ringfence_up(tmp_path / "data") as url:
        env = dict(os.environ, RINGFENCE_URL=url, RINGFENCE_TOKEN=ADMIN_TOKEN)
        run = subprocess.run(
            [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=600, check=False
        )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    print(out)  # noqa: T201 - shown by pytest when an assertion below fails
    assert re.search(r"applied GlobalNetworkPolicy platform\.twilio-integration \(version \d+\)", out)
    tiers = re.findall(r"^tier (\S+) ", out, re.MULTILINE)
    assert tiers[:3] == ["security", "platform", "default"]
    assert "  GlobalNetworkPolicy platform.twilio-integration order=300.0" in out
    assert re.search(r"^board platform/platform\.allow-kube-dns: allowed=[1-9]", out, re.MULTILINE)
    # The twilio domain is allowed by the new policy, and the trace says so.
    assert "verdict: allow" in out
    assert re.search(r"trace \d+\|platform\|platform\.twilio-integration\|allow\|0", out)
    recommended = re.findall(r"^(\S+-\*): job \S+ succeeded -> (.+)$", out, re.MULTILINE)
    assert {workload.split("-")[0] for workload, _ in recommended} >= {
        "frontend",
        "microservice1",
        "microservice2",
        "backend",
        "logging",
    }
    assert re.search(r"^StagedNetworkPolicy storefront/\S*backend\S* stagedAction=Learn$", out, re.MULTILINE)
    denied = re.findall(r"^newly deny: (\S+) -> (\S+):\d+/tcp .* was allow$", out, re.MULTILINE)
    assert denied
    assert {(source.split("-")[0], dest.split("-")[0]) for source, dest in denied} == {("backend", "logging")}
    summary = re.search(r"summary: examined=\d+ changed=(\d+) newlyDenied=(\d+) newlyAllowed=0", out)
    assert summary is not None
    assert int(summary[2]) == len(denied)
    assert re.search(r"^enforced: NetworkPolicy storefront/\S*backend\S* in tier default$", out, re.MULTILINE)
    promoted = r"^  \S+ admin .* promote NetworkPolicy storefront/default\.recommended-backend$"
    assert re.search(promoted, out, re.MULTILINE)
