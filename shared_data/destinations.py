"""Where the CLIs write: checked before the work, and one wording for a write that fails.

A prediction over a hundred songs, an evaluation or a K-fold run must not end in a traceback because
``--csv`` points into a file or a read-only folder: :func:`check_file_destination` and
:func:`check_dir_destination` refuse such a destination in one line before any audio is read or
any model trained. A write that still fails later (the disk filled up meanwhile) is translated by
:func:`write_failure`, the one ``OSError`` -> message table of the project, so that the build, the
training CLIs and the result writers say the same thing for the same errno.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from shared_data.errors import DataError

__all__ = [
    "WRITE_ERRORS",
    "check_dir_destination",
    "check_file_destination",
    "write_failure",
]

#: errno -> what happened, for a failed write; anything else is named by its ``strerror``.
WRITE_ERRORS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a parent of the path is a file",
    errno.EISDIR: "the path is a directory",
}
_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_failure(err: OSError, flag: str, value: str | os.PathLike[str] | None = None) -> str:
    """One line for ``err`` raised while writing under ``flag`` (``=value`` when given): what
    happened, the file, and the fix (free space for a full disk, another destination otherwise)."""
    what = WRITE_ERRORS.get(err.errno or 0, err.strerror or str(err))
    dest = flag if value is None else f"{flag}={os.fspath(value)}"
    where = f" ({err.filename})" if err.filename else ""
    fix = "free some space or pass another" if err.errno in _FULL else "pass another"
    return f"{what} while writing under {dest}{where}; {fix} {flag}"


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path at worst)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_creatable(path: Path, flag: str) -> None:
    """Refuses ``path`` under a file, or when the folder it would be made in is not writable."""
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise DataError(f"{flag}={path}: {parent} is a file, not a folder; pass another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{flag}={path}: {parent} is not writable; pass another {flag}")


def check_file_destination(path: str | os.PathLike[str], flag: str) -> Path:
    """Checks that the file ``path`` (given as ``flag``) can be written, before any work.

    Returns the path. Raises :class:`DataError` naming the flag when ``path`` is a folder, an
    unwritable file, or lies under a file or an unwritable folder. Nothing is created.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise DataError(f"{flag}={target} is a folder; pass a file path to {flag}")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise DataError(f"{flag}={target} is not writable; pass another {flag}")
        return target
    _check_creatable(target, flag)
    return target


def check_dir_destination(path: str | os.PathLike[str], flag: str) -> Path:
    """Checks that the folder ``path`` (given as ``flag``) exists writable or can be made.

    Returns the path. Raises :class:`DataError` naming the flag when ``path`` is a file, an
    unwritable folder, or lies under a file or an unwritable folder. Nothing is created.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise DataError(f"{flag}={target} is a file, not a folder; pass another {flag}")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise DataError(f"{flag}={target} is not writable; pass another {flag}")
        return target
    _check_creatable(target, flag)
    return target
