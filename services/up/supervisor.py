"""Run child processes as one supervised group, the way ``ringfence up`` runs api, worker and collector.

Each child runs in a process group of its own (it is a session leader), so everything it starts (Celery's
pool processes, uvicorn's workers) goes with it: a signal sent to the group reaches them all, and a
child that dies has the rest of its group killed before it is started again. The children also get
``PR_SET_PDEATHSIG``, so even a ``kill -9`` of the supervisor takes them down.

* A child that exits while the group is running is a crash (even with status 0: these are services).
  It is restarted after an exponential backoff; after ``max_crashes`` crashes within ``crash_window``
  seconds the supervisor gives up with :class:`ChildGaveUpError`, naming the child, its last exit status
  and the end of its log.
* :meth:`Supervisor.stop` sends SIGTERM to every group at once, waits up to ``grace_period`` seconds for
  each group to empty, then sends SIGKILL to what is left, and reaps every child: nothing is orphaned.

Standard output and error of each child go to its log file (appended across starts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from services.common.server_process import parent_death_signal

EventSink = Callable[[str], None]

_POLL_SECONDS: Final = 0.1


class SupervisorError(RuntimeError):
    """The group cannot run as asked."""


class ChildGaveUpError(SupervisorError):
    """A child crashed too often; the supervisor stopped restarting it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What to run: a name for messages, the argument list, the environment and where its output goes."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None  # None: the supervisor's own environment
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a crashed child, and when to stop trying.

    The wait doubles from ``initial_backoff`` up to ``max_backoff``; ``max_crashes`` crashes within
    ``crash_window`` seconds make the supervisor give up.
    """

    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    max_crashes: int = 5
    crash_window: float = 60.0

    def backoff(self, recent_crashes: int) -> float:
        """Seconds to wait before the restart that follows ``recent_crashes`` crashes (at least one)."""
        doubled: float = self.initial_backoff * 2.0 ** max(0, recent_crashes - 1)
        return min(self.max_backoff, doubled)


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    last_status: int | None = None
    starts: int = 0


def describe_status(returncode: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('(no output)' when there is none)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 16_384))
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


class Supervisor:
    """Starts, watches, restarts and stops a fixed set of child processes.

    Call :meth:`start`, then :meth:`poll` regularly (or :meth:`run` until an event is set); always call
    :meth:`stop` at the end (it is idempotent). ``on_event`` receives one line per lifecycle event.
    Not thread-safe: one thread drives it.
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        policy: RestartPolicy | None = None,
        grace_period: float = 10.0,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise SupervisorError(f"child names must be unique, got {names}")
        self._children = [_Child(spec) for spec in specs]
        self.policy = policy or RestartPolicy()
        self.grace_period = grace_period
        self._emit = on_event or (lambda _line: None)
        self._clock = clock
        self._stopping = False

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running children, by name."""
        return {
            child.spec.name: child.process.pid
            for child in self._children
            if child.process is not None and child.process.poll() is None
        }

    def start(self) -> None:
        """Start every child."""
        for child in self._children:
            self._spawn(child)

    def poll(self) -> None:
        """Notice children that exited, restart those whose backoff has passed; raise :class:`ChildGaveUpError`."""
        if self._stopping:
            return
        now = self._clock()
        for child in self._children:
            process = child.process
            if process is not None and process.poll() is not None:
                self._crashed(child, process, now)
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                self._spawn(child)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set (returns) or a child gives up (raises). Does not stop the children."""
        while not stop.wait(_POLL_SECONDS):
            self.poll()

    def stop(self) -> None:
        """SIGTERM every group, SIGKILL what is left after the grace period, reap every child. Idempotent."""
        self._stopping = True
        running = [child for child in self._children if child.process is not None]
        for child in running:
            self._emit(f"stopping {child.spec.name}")
            _signal_group(child.process, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = self._clock() + self.grace_period
        for child in running:
            process = child.process
            assert process is not None
            while self._clock() < deadline and _group_alive(process):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(_POLL_SECONDS)
            if _group_alive(process):
                self._emit(f"{child.spec.name} did not stop within {self.grace_period:g} s: killing it")
                _signal_group(process, signal.SIGKILL)
            process.wait()
            _wait_group_gone(process)
            child.process = None
        for child in self._children:
            child.restart_at = None

    # --- internals ------------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:
            log.write(f"--- ringfence up: starting {spec.name}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            try:
                child.process = subprocess.Popen(  # noqa: S603 - the argument lists are built by `ringfence up`
                    list(spec.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(spec.env) if spec.env is not None else None,
                    cwd=spec.cwd,
                    start_new_session=True,  # its own process group, which stop() signals as a whole
                    preexec_fn=parent_death_signal(signal.SIGTERM),  # noqa: PLW1509 - async-signal-safe only
                )
            except OSError as error:
                raise SupervisorError(f"cannot start {spec.name} ({spec.argv[0]}): {error}") from error
        child.starts += 1
        verb = "started" if child.starts == 1 else "restarted"
        self._emit(f"{verb} {spec.name} (pid {child.process.pid})")

    def _crashed(self, child: _Child, process: subprocess.Popen[bytes], now: float) -> None:
        # The leader is gone; whatever it started must not outlive it.
        _signal_group(process, signal.SIGKILL)
        _wait_group_gone(process)
        child.process = None
        child.last_status = process.returncode
        status = describe_status(process.returncode)
        crashes = child.crashes
        crashes.append(now)
        while crashes and now - crashes[0] > self.policy.crash_window:
            crashes.popleft()
        name = child.spec.name
        if len(crashes) >= self.policy.max_crashes:
            raise ChildGaveUpError(
                name,
                f"{name} exited {len(crashes)} times within {self.policy.crash_window:g} s "
                f"(last: {status}); giving up. End of {child.spec.log_path}:\n{log_tail(child.spec.log_path)}",
            )
        delay = self.policy.backoff(len(crashes))
        child.restart_at = now + delay
        self._emit(f"{name} exited ({status}); restarting in {delay:g} s")


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child is a session leader, so its process group id is its pid (valid while any member lives).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is None:
        return True
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group_gone(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Wait for the group's other members (reaped by init once orphaned) to disappear after a SIGKILL."""
    deadline = time.monotonic() + timeout
    while _group_alive(process) and time.monotonic() < deadline:
        _signal_group(process, signal.SIGKILL)
        time.sleep(0.02)
