"""One ``ringfence up`` per data directory: an exclusive ``flock`` on ``<data_dir>/up.lock``.

The kernel releases the lock when the process ends, however it ends, so a crash never leaves a stale
lock; a clean exit also removes the file. The file holds the owner's process id, for the message the
second ``up`` prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Final, Self

LOCK_NAME: Final = "up.lock"


class DataDirLockedError(RuntimeError):
    """Another process holds the data directory."""


class DataDirLock:
    """Hold ``<data_dir>/up.lock`` for the life of a ``with`` block."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> Self:
        """Take the lock or raise :class:`DataDirLockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DataDirLockedError(
                    f"another `ringfence up` (pid {holder}) is using {self.path.parent}; stop it first "
                    "or set RINGFENCE_DATA_DIR to another directory"
                ) from None
            # The holder we waited on may have removed the file meanwhile: lock the file that is there.
            try:
                same = os.path.samestat(os.fstat(fd), self.path.stat())
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still holding it, so no one can take a file about to vanish
        os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
