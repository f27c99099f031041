"""The supervisor of `ringfence up`, driven with small Python children: restart, give up, stop, no orphans."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.up.supervisor import (
    ChildGaveUpError,
    ChildSpec,
    RestartPolicy,
    Supervisor,
    SupervisorError,
    describe_status,
    log_tail,
)

FAST = RestartPolicy(initial_backoff=0.05, max_backoff=0.2, max_crashes=3, crash_window=30)


def python_child(tmp_path: Path, name: str, code: str) -> ChildSpec:
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(code))
    return ChildSpec(name, [sys.executable, str(script)], log_path=tmp_path / "logs" / f"{name}.log", cwd=tmp_path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose once its parent reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def poll_until(supervisor: Supervisor, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        supervisor.poll()
        time.sleep(0.02)


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
# Starts a grandchild (a separate process in the same group) and records its pid.
PARENT_OF_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("grandchild.pid", "w").write(str(grandchild.pid))
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("crashes", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (20, 10.0)],
)
def test_backoff_doubles_up_to_its_ceiling(crashes, expected):
    assert RestartPolicy(initial_backoff=0.5, max_backoff=10).backoff(crashes) == expected


@pytest.mark.parametrize(
    ("returncode", "text"),
    [(0, "exit status 0"), (3, "exit status 3"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_exit_statuses_read_as_words(returncode, text):
    assert describe_status(returncode) == text


def test_child_names_must_be_unique(tmp_path):
    spec = python_child(tmp_path, "api", SLEEPER)
    with pytest.raises(SupervisorError, match="unique"):
        Supervisor([spec, spec])


def test_stop_ends_every_child_and_everything_it_started(tmp_path):
    events: list[str] = []
    supervisor = Supervisor(
        [python_child(tmp_path, "api", SLEEPER), python_child(tmp_path, "worker", PARENT_OF_GRANDCHILD)],
        on_event=events.append,
    )
    supervisor.start()
    try:
        wait_for(lambda: (tmp_path / "grandchild.pid").exists() and "ready" in log_tail(tmp_path / "logs" / "api.log"))
        pids = supervisor.pids
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert set(pids) == {"api", "worker"}
        assert all(alive(pid) for pid in [*pids.values(), grandchild])
    finally:
        supervisor.stop()
    wait_for(lambda: not any(alive(pid) for pid in [*pids.values(), grandchild]))
    assert supervisor.pids == {}
    assert "stopping api" in events
    assert "stopping worker" in events


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    stubborn = python_child(
        tmp_path,
        "stubborn",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    events: list[str] = []
    supervisor = Supervisor([stubborn], grace_period=0.5, on_event=events.append)
    supervisor.start()
    wait_for(lambda: "ready" in log_tail(stubborn.log_path))
    pid = supervisor.pids["stubborn"]
    started = time.monotonic()
    supervisor.stop()
    assert 0.4 < time.monotonic() - started < 5
    assert not alive(pid)
    assert "stubborn did not stop within 0.5 s: killing it" in events


def test_a_crashed_child_is_restarted_after_a_backoff(tmp_path):
    # Crashes on its first run only (a marker file remembers), then runs.
    flaky = python_child(
        tmp_path,
        "flaky",
        """
        import os, sys, time
        if not os.path.exists("ran-once"):
            open("ran-once", "w").close()
            sys.exit(3)
        print("second run", flush=True)
        time.sleep(60)
        """,
    )
    events: list[str] = []
    supervisor = Supervisor([flaky], policy=FAST, on_event=events.append)
    supervisor.start()
    try:
        poll_until(supervisor, lambda: "second run" in log_tail(flaky.log_path))
        assert "flaky" in supervisor.pids
        assert "flaky exited (exit status 3); restarting in 0.05 s" in events
        assert sum(event.startswith("restarted flaky") for event in events) == 1
    finally:
        supervisor.stop()


def test_a_crashing_child_makes_the_supervisor_give_up_with_its_log(tmp_path):
    crasher = python_child(
        tmp_path, "worker", "import sys\nprint('cannot reach the broker', flush=True)\nsys.exit(1)\n"
    )
    supervisor = Supervisor([crasher], policy=FAST)
    supervisor.start()
    try:
        with pytest.raises(ChildGaveUpError) as raised:
            poll_until(supervisor, lambda: False, timeout=20)
    finally:
        supervisor.stop()
    error = raised.value
    assert error.name == "worker"
    assert "worker exited 3 times within 30 s (last: exit status 1); giving up" in str(error)
    assert "cannot reach the broker" in str(error)
    assert log_tail(crasher.log_path).count("starting worker") == 3


def test_crashes_outside_the_window_are_forgiven(tmp_path):
    clock = [0.0]
    crasher = python_child(tmp_path, "collector", "import sys\nsys.exit(2)\n")
    policy = RestartPolicy(initial_backoff=1, max_backoff=1, max_crashes=2, crash_window=5)
    supervisor = Supervisor([crasher], policy=policy, clock=lambda: clock[0])
    supervisor.start()
    try:
        for _ in range(4):  # each crash is 10 s after the previous one: never two within 5 s
            wait_for(lambda: supervisor.pids == {})
            supervisor.poll()  # notices the crash, schedules the restart 1 s later
            clock[0] += 10
            supervisor.poll()  # restarts it
            assert supervisor._children[0].process is not None  # restarted, not given up
    finally:
        supervisor.stop()


def test_what_a_crashed_child_started_dies_with_it(tmp_path):
    spec = python_child(
        tmp_path,
        "leaky",
        """
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open("grandchild.pid", "w").write(str(grandchild.pid))
        time.sleep(0.3)
        os._exit(1)
        """,
    )
    supervisor = Supervisor([spec], policy=RestartPolicy(initial_backoff=30, max_crashes=5))
    supervisor.start()
    try:
        wait_for((tmp_path / "grandchild.pid").exists)
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        poll_until(supervisor, lambda: supervisor._children[0].restart_at is not None)
        wait_for(lambda: not alive(grandchild))
    finally:
        supervisor.stop()


def test_run_returns_when_told_to_stop(tmp_path):
    supervisor = Supervisor([python_child(tmp_path, "api", SLEEPER)])
    supervisor.start()
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        supervisor.run(stop)
        assert "api" in supervisor.pids
    finally:
        timer.cancel()
        supervisor.stop()


def test_a_missing_program_is_a_clear_error(tmp_path):
    spec = ChildSpec("ghost", [str(tmp_path / "no-such-program")], log_path=tmp_path / "ghost.log")
    supervisor = Supervisor([spec])
    with pytest.raises(SupervisorError, match="cannot start ghost"):
        supervisor.start()
    supervisor.stop()


def test_signals_are_not_left_ignored_in_the_child(tmp_path):
    # The supervisor may ignore SIGINT while it stops; its children must still react to SIGTERM normally.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        supervisor = Supervisor([python_child(tmp_path, "api", SLEEPER)], grace_period=5)
        supervisor.start()
        wait_for(lambda: "ready" in log_tail(tmp_path / "logs" / "api.log"))
        started = time.monotonic()
        supervisor.stop()
        assert time.monotonic() - started < 4
    finally:
        signal.signal(signal.SIGINT, previous)
