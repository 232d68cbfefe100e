"""Checkpoints of a torch training run: the latest one (to resume) and the best-validation one.

API (the same methods as ``jax_impl.checkpoint.Checkpoints``)::

    ckpts = Checkpoints(workdir)                       # <workdir>/checkpoints/{latest,best}.pt
    ckpts.save(step, state, meta, val_acc=0.9)         # val_acc only when it is the new best
    ckpts.latest_step(), ckpts.best_step(), ckpts.all_steps(), ckpts.path("best")
    state, meta = ckpts.restore("latest", device)      # or "best", or a step
    meta = ckpts.read_meta("latest")
    got = ckpts.restore_readable("best")               # falls back, warning, past unreadable ones
    ckpts.close()                                      # nothing to release (the mirror's API)

A file is one ``torch.save``-able dict (``weights_only`` loading): the state (``model``,
``optimizer``, ``scheduler`` state dicts and ``rng``, the torch CPU and CUDA generator states) and
the meta (``shared_data.training.run_state.CheckpointMeta``, the same meta as JAX's: where the run
continues, its epoch's sums, the best validation so far and the recipe). Each file is written to
a temporary name in the same directory, fsynced, then ``os.replace``d over the old one, so a crash
or a failed write (disk full) leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from shared_data.training.resume_check import CheckpointError

CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "unreadable_checkpoints"
LATEST_FILE = "latest.pt"
BEST_FILE = "best.pt"
STATE_KEYS = ("model", "optimizer", "scheduler", "rng")


class Restored(NamedTuple):
    """What :meth:`Checkpoints.restore_readable` read (as ``jax_impl.checkpoint.Restored``)."""

    step: int
    state: dict[str, Any]
    meta: dict[str, Any]
    skipped: list[str]


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename over ``path``.

    Raises:
        CheckpointError: the write failed; ``path`` still holds the previous checkpoint.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        previous = f"the previous {path.name} is intact" if path.exists() else "none existed"
        raise CheckpointError(
            f"could not write checkpoint {path}: {err}; {previous}. Free disk space or pass "
            "another --workdir."
        ) from err


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (tensors and plain Python values only).

    Raises:
        CheckpointError: the file is truncated, not a checkpoint, or holds anything but tensors
            and plain values (a pickled object is refused, never executed).
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, UnpicklingError of a foreign pickle, bad magic, ...
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {first[:200]}); it is "
            "truncated, damaged or not a checkpoint of this project: delete it to use the other "
            "checkpoint, or pass another --workdir"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {path} holds no training state; delete it or pass another --workdir"
        )
    return payload


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Checkpoints:
    """The latest and best-validation checkpoints of one run directory."""

    def __init__(self, workdir: str | os.PathLike[str]):
        self.workdir = Path(workdir)
        self.directory = self.workdir / CHECKPOINT_DIR
        self.latest_path = self.directory / LATEST_FILE
        self.best_path = self.directory / BEST_FILE

    def _file(self, which: int | str) -> Path | None:
        if which in ("latest", "best"):
            path = self.latest_path if which == "latest" else self.best_path
            return path if path.exists() else None
        if not isinstance(which, int):
            raise ValueError(f"which must be 'latest', 'best' or a step, got {which!r}")
        return next((p for p in (self.latest_path, self.best_path)
                     if p.exists() and self._step_in(p) == which), None)  # fmt: skip

    @staticmethod
    def _step_in(path: Path) -> int | None:
        try:  # mmap: reads the pickled header, not the tensors
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                       ["global_step"])  # fmt: skip
        except Exception:
            return None

    def latest_step(self) -> int | None:
        """Global step of ``latest.pt`` (None if absent or unreadable)."""
        return self._step_in(self.latest_path) if self.latest_path.exists() else None

    def best_step(self) -> int | None:
        """Global step of ``best.pt`` (None if absent or unreadable)."""
        return self._step_in(self.best_path) if self.best_path.exists() else None

    def all_steps(self) -> list[int]:
        return sorted({s for s in (self.latest_step(), self.best_step()) if s is not None})

    def path(self, which: int | str = "latest") -> Path | None:
        """The file of checkpoint ``which`` (``"latest"``, ``"best"`` or a step), or None."""
        return self._file(which)

    def save(
        self, step: int, state: Mapping[str, Any], meta: Mapping[str, Any], *,
        val_acc: float | None = None,
    ) -> None:  # fmt: skip
        """Write ``latest.pt`` (and ``best.pt`` first when ``val_acc`` is given: the new best).

        Best first: a crash between the two files leaves an older latest, and the resumed run
        redoes that epoch. Only process 0 calls this.
        """
        payload = {**state, **meta}
        if payload.get("global_step") != step:
            raise ValueError(f"meta's global_step {payload.get('global_step')} is not {step}")
        if val_acc is not None:
            save_atomic(payload, self.best_path)
        save_atomic(payload, self.latest_path)

    def restore(
        self, which: int | str = "latest", target: str | torch.device = "cpu"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Read checkpoint ``which``; ``target``: the device its tensors go to (``map_location``).

        Returns:
            ``(state, meta)``: the :data:`STATE_KEYS` entries and the rest.

        Raises:
            CheckpointError: no such checkpoint, or it cannot be read (names the file, the fix).
        """
        path = self._file(which)
        if path is None:
            raise CheckpointError(f"{self.directory} holds no {which} checkpoint")
        payload = load(path, target)
        state = {k: payload[k] for k in STATE_KEYS if k in payload}
        return state, {k: v for k, v in payload.items() if k not in STATE_KEYS}

    def read_meta(self, which: int | str = "latest") -> dict[str, Any]:
        """Only the meta of checkpoint ``which`` (the tensors are memory-mapped, not read)."""
        return self.restore(which, "cpu")[1]

    def restore_readable(
        self,
        which: str = "latest",
        target: str | torch.device = "cpu",
        *,
        warn: Callable[[str], None] | None = _warn,
        set_aside: bool = False,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> Restored:
        """:meth:`restore` ``which``, falling back to the other file with a warning.

        Args:
            which: ``"latest"`` (then ``best.pt``) or ``"best"`` (then ``latest.pt``).
            warn: called with one line per skipped file (None: silent).
            set_aside: move an unreadable file to ``<workdir>/unreadable_checkpoints``.
            check: called with a readable checkpoint's meta; what it raises propagates.

        Raises:
            CheckpointError: no checkpoint at all, or none readable (every one is named).
        """
        order = [self.latest_path, self.best_path]
        order = [p for p in (order if which == "latest" else order[::-1]) if p.exists()]
        if not order:
            raise CheckpointError(f"{self.directory} holds no checkpoint")
        skipped = []
        for path in order:
            try:
                payload = load(path, target)
            except CheckpointError as err:
                line = f"skipping {err}"
                if set_aside:
                    dest = self.workdir / UNREADABLE_DIR / path.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, dest)
                    line += f" (moved to {dest})"
                skipped.append(line)
                if warn is not None:
                    warn(line)
                continue
            state = {k: payload[k] for k in STATE_KEYS if k in payload}
            meta = {k: v for k, v in payload.items() if k not in STATE_KEYS}
            if check is not None:
                check(meta)
            return Restored(int(payload["global_step"]), state, meta, skipped)
        raise CheckpointError(
            f"no checkpoint in {self.directory} can be read ({'; '.join(skipped)}); "
            "remove the folder to train from scratch, or pass another --workdir"
        )

    def close(self) -> None:
        """Nothing to release (files are closed after each read and write)."""


def rng_state() -> dict[str, Any]:
    """The torch CPU (and CUDA, when present) generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` output (CUDA states only where the devices are present)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
