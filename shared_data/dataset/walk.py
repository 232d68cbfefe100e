"""Walking a ``folder`` input: every file it meets, symbolic links followed, each real file once.

Symbolic links to folders and files are followed, so a label folder may be a link to audio kept
elsewhere. Every entry the walk meets ends up in the build report: a real file reached a second
time is rejected as a duplicate of the path kept: the one with no symbolic link on the way, else
the first in sorted walk order; a
link that points back to a folder it sits in (a loop), a broken link and anything that is not a
regular file (a FIFO, a socket, a device) are rejected with that reason. Hidden names (starting
with ``.``) are operating-system metadata, not inputs, and are not walked.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Met:
    """One entry the walk met: ``path`` under the root (as met, links not resolved) and either
    ``reason`` (rejected) or None (a regular file to read)."""

    path: Path
    reason: str | None = None


def _resolve(entry: Path) -> tuple[Path | None, str | None]:
    """``(real path, None)``, or ``(None, reason)`` for a broken link or a link loop."""
    try:
        return entry.resolve(strict=True), None
    except FileNotFoundError:
        target = os.readlink(entry) if entry.is_symlink() else entry
        return None, f"broken symbolic link: its target {target} does not exist"
    except (RuntimeError, OSError):  # ELOOP: RuntimeError up to Python 3.12, OSError after
        return None, "symbolic link loop: the link never reaches a file or folder"


def walk(root: Path) -> list[Met]:
    """Every non-hidden entry under ``root`` (a folder), depth first in sorted name order."""
    out: list[Met] = []
    paths_of: dict[Path, list[Path]] = {}  # real file -> the paths it was met under, in order

    def visit(folder: Path, ancestors: dict[Path, Path]) -> None:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError as err:
            out.append(Met(folder, f"cannot list folder: {err.strerror or err}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            real, reason = _resolve(entry)
            if real is None:
                out.append(Met(entry, reason))
            elif real.is_dir():
                if real in ancestors:
                    back = ancestors[real].relative_to(root).as_posix() or "."
                    out.append(Met(entry, f"symbolic link loop: points back to {back}/"))
                else:
                    visit(entry, {**ancestors, real: entry})
            elif not real.is_file():
                out.append(Met(entry, "not a regular file"))
            else:
                paths_of.setdefault(real, []).append(entry)
                out.append(Met(entry))

    real_root = root.resolve()
    visit(root, {real_root: root})
    kept = {}
    for real, paths in paths_of.items():
        direct = [p for p in paths if real_root / p.relative_to(root) == real]
        kept[real] = (direct or paths)[0]
    return [_dedupe(met, kept, root) for met in out]


def _dedupe(met: Met, kept: dict[Path, Path], root: Path) -> Met:
    """``met``, or a rejection when another path to its file is the one kept."""
    if met.reason is not None:
        return met
    first = kept[met.path.resolve()]
    if first == met.path:
        return met
    return Met(met.path, f"same file as {first.relative_to(root).as_posix()} (a symbolic link)")
