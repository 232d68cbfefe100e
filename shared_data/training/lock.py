"""One training at a time per run directory: ``<workdir>/.train.lock``.

The lock is an ``fcntl.flock`` on that file, which the kernel drops when the holding process exits
however it exits (SIGKILL included), so a stale file never blocks a later run; the file's text
(PID, host, start time) is only there to name the holder in the refusal message. ``flock`` locks an
open file description, so a second :class:`RunLock` on the same directory conflicts even within one
process.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from pathlib import Path

from shared_data.training.loop import TrainingError

LOCK_FILE = ".train.lock"


class RunLockedError(TrainingError):
    """Another training holds the run directory."""


class RunLock:
    """Exclusive lock of a run directory while a training writes it (a context manager).

    Args:
        workdir: the run directory (created if absent).
        enabled: False on the processes of a multi-process run that do not own the directory.

    Raises:
        RunLockedError: on entry, when another process holds the lock; names it and the lock file.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, enabled: bool = True):
        self.path = Path(workdir) / LOCK_FILE
        self.enabled = enabled
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if not self.enabled or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is being written by another training ({holder}; lock "
                f"{self.path}); wait for it to finish, stop it, or pass another --workdir"
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # the file stays; an empty one names no holder
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
