"""Orbax checkpoints of a training run: the latest one (to resume) and the best-validation one.

API (the same methods as ``torch_ref.checkpoint.Checkpoints``)::

    ckpts = Checkpoints(workdir)                       # <workdir>/checkpoints/<step>/
    ckpts.save(step, state, meta, val_acc=0.9)         # val_acc only when it is the new best
    ckpts.latest_step(), ckpts.best_step(), ckpts.all_steps(), ckpts.path("best")
    state, meta = ckpts.restore("latest", abstract_like(state))      # or "best", or a step
    meta = ckpts.read_meta("latest")
    got = ckpts.restore_readable("best", target)       # falls back, warning, past unreadable ones
    ckpts.close()

One ``CheckpointManager`` under ``workdir/checkpoints`` keeps, by its preservation policy, the most
recent checkpoint and the one with the highest ``val_acc``. Epoch-end checkpoints that improved
the best carry ``{"val_acc": ...}`` as their metrics; the others carry none, so they are kept only
while they are the latest. Orbax writes each step into a temporary directory and renames it when
complete, and deletes older steps only after that, so a crash or a failed write (disk full) leaves
the previous checkpoint readable.

Every checkpoint holds two items: ``state`` (the train arrays pytree) and ``meta`` (JSON:
``shared_data.training.run_state.CheckpointMeta``, the same meta as torch's: where the run
continues, its epoch's sums, the best validation so far and the recipe, so a resume with another
recipe is refused).
"""

from __future__ import annotations

import gc
import io
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from shared_data.training.resume_check import CheckpointError

CHECKPOINT_DIR = "checkpoints"
#: Where training moves the step directories it could not read (out of orbax's sight).
UNREADABLE_DIR = "unreadable_checkpoints"


class Restored(NamedTuple):
    """What :meth:`Checkpoints.restore_readable` read: the step, the state and meta, and one line
    per checkpoint it skipped as unreadable."""

    step: int
    state: Any
    meta: dict[str, Any]
    skipped: list[str]


def _val_acc(metrics: Mapping[str, Any]) -> float:
    return float(metrics["val_acc"])


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class _QuietOrbax:
    """Hold back orbax's own reports during a save: a failed write (a full disk) logs the error
    and prints "Event loop is closed" tracebacks from tensorstore's callback threads, hundreds of
    lines before it raises; :class:`CheckpointError` then reports it once. What was printed is
    passed on when the save succeeds, and dropped when it failed (``failed`` set by the caller).
    """

    def __init__(self):
        self.failed = False

    def __enter__(self):
        self.loggers = [logging.getLogger(n) for n in ("absl", "orbax", "asyncio")]
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.CRITICAL)
        self.stderr, self.buffer = sys.stderr, io.StringIO()
        sys.stderr = self.buffer
        return self

    def __exit__(self, exc_type, *exc):
        failed = self.failed or exc_type is not None
        if failed:
            gc.collect()  # the failed write's abandoned tasks report themselves when collected
        sys.stderr = self.stderr
        for lg, level in zip(self.loggers, self.levels, strict=True):
            # asyncio stays muted after a failure: tasks collected later would still log
            # "Task exception was never retrieved" with the same error, once per array.
            if not (failed and lg.name == "asyncio"):
                lg.setLevel(level)
        if exc_type is None and not self.failed and self.buffer.getvalue():
            self.stderr.write(self.buffer.getvalue())


class Checkpoints:
    """The checkpoints of one run directory.

    Args:
        workdir: the run directory; checkpoints live in ``workdir/checkpoints``.
    """

    def __init__(self, workdir: str | os.PathLike[str]):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / CHECKPOINT_DIR
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        policy = ocm.AnyPreservationPolicy(
            [
                ocm.LatestN(n=1),
                ocm.BestN(get_metric_fn=_val_acc, n=1, keep_checkpoints_without_metrics=False),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            # best_fn makes orbax store the metrics beside each step; the policy above uses them.
            best_fn=_val_acc,
            best_mode="max",
            # Synchronous writes: a write error surfaces at the save that caused it, with its step.
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
            create=True,
        )
        return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's global step, or None."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """Global step of the checkpoint with the highest ``val_acc`` (the earliest on a tie)."""
        best: tuple[float, int] | None = None
        for step in self._manager.all_steps():
            try:
                metrics = self._manager.metrics(step)
            except Exception:  # an unreadable metrics file: that step cannot be the best
                metrics = None
            if not metrics or "val_acc" not in metrics:
                continue
            key = (float(metrics["val_acc"]), -step)
            if best is None or key > best:
                best = key
        return None if best is None else -best[1]

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def path(self, which: int | str = "latest") -> Path | None:
        """The directory of checkpoint ``which`` (``"latest"``, ``"best"`` or a step), or None."""
        step = self._step(which, required=False)
        return None if step is None else self.directory / str(step)

    def _step(self, which: int | str, *, required: bool = True) -> int | None:
        if which == "latest":
            step = self.latest_step()
        elif which == "best":
            step = self.best_step()
        elif isinstance(which, int):
            step = which if which in self._manager.all_steps() else None
        else:
            raise ValueError(f"which must be 'latest', 'best' or a step, got {which!r}")
        if step is None and required:
            raise CheckpointError(f"{self.directory} holds no {which} checkpoint")
        return step

    def save(
        self, step: int, state: Any, meta: Mapping[str, Any], *, val_acc: float | None = None
    ) -> None:
        """Write ``state`` and ``meta`` as global step ``step`` (all processes call this).

        ``val_acc``: only for a checkpoint that improved the best validation accuracy.

        Raises:
            CheckpointError: the write failed (e.g. disk full); the previous checkpoint is intact.
        """
        previous = self.latest_step()
        metrics = None if val_acc is None else {"val_acc": float(val_acc)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
        )
        try:
            with _QuietOrbax() as quiet:
                try:
                    self._manager.save(step, args=args, metrics=metrics, force=True)
                    self._manager.wait_until_finished()
                except Exception:
                    quiet.failed = True
                    # Let the callback threads of the failed write finish while muted.
                    self._close_quietly()
                    self._manager = self._open()
                    raise
        except Exception as err:  # orbax wraps I/O errors in several types; all mean "not written"
            kept = (
                f"the previous checkpoint (step {previous}) is intact and a rerun resumes from it"
                if previous is not None
                else "there is no earlier checkpoint"
            )
            raise CheckpointError(
                f"writing the checkpoint of step {step} to {self.directory} failed "
                f"({_reason(err)}); {kept}. Free disk space or pass another --workdir."
            ) from err

    def restore(self, which: int | str = "latest", target: Any = None) -> tuple[Any, dict]:
        """Read checkpoint ``which`` (``"latest"``, ``"best"`` or a global step).

        Args:
            target: a pytree of ``jax.ShapeDtypeStruct`` (with ``sharding``, e.g. from
                :func:`abstract_like`) to restore into; None restores the stored arrays as they
                are (numpy-compatible, no optimizer structure needed).

        Returns:
            ``(state, meta)``.

        Raises:
            CheckpointError: there is no such checkpoint, or it cannot be read (the message names
                the step directory and the fix).
        """
        step = self._step(which)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        try:
            restored = self._manager.restore(step, args=args)
            meta = dict(restored["meta"])
        except Exception as err:  # truncated data, missing manifest/metadata, bad JSON, ...
            raise self._unreadable(step, err) from err
        return restored["state"], meta

    def read_meta(self, which: int | str = "latest") -> dict[str, Any]:
        """Only the JSON ``meta`` of checkpoint ``which``."""
        step = self._step(which)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            return dict(restored["meta"])
        except Exception as err:
            raise self._unreadable(step, err) from err

    def restore_readable(
        self,
        which: str = "latest",
        target: Any = None,
        *,
        warn: Callable[[str], None] | None = _warn,
        set_aside: bool = False,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> Restored:
        """:meth:`restore` ``which``, falling back past unreadable checkpoints with a warning.

        The order tried: ``"latest"``: the newest step, then older ones; ``"best"``: the best
        step, then the newest, then older ones.

        Args:
            warn: called with one line per skipped checkpoint (None: silent).
            check: called with a readable checkpoint's meta before its state is read; what it
                raises propagates (training refuses a checkpoint of another recipe with it).
            set_aside: move each unreadable step directory to ``<workdir>/unreadable_checkpoints``
                (training does, so that later saves are not ordered after a broken step).

        Raises:
            CheckpointError: no checkpoint at all, or none readable (every one is named).
        """
        order = sorted(self._manager.all_steps(), reverse=True)
        if which == "best" and self.best_step() is not None:
            order.remove(self.best_step())
            order.insert(0, self.best_step())
        if not order:
            raise CheckpointError(f"{self.directory} holds no checkpoint")
        skipped = []
        for step in order:
            try:
                if check is not None:
                    check(self.read_meta(step))
                state, meta = self.restore(step, target)
            except CheckpointError as err:
                if err.__cause__ is None:  # not a read failure (e.g. check's refusal)
                    raise
                line = f"skipping the unreadable checkpoint {self.directory / str(step)}: {err}"
                if set_aside:
                    line += f" (moved to {self._set_aside(step)})"
                skipped.append(line)
                if warn is not None:
                    warn(line)
                continue
            if skipped and set_aside:
                self._manager.reload()
            return Restored(step, state, meta, skipped)
        raise CheckpointError(
            f"no checkpoint in {self.directory} can be read ({'; '.join(skipped)}); "
            "remove the folder to train from scratch, or pass another --workdir"
        )

    def _set_aside(self, step: int) -> Path:
        dest = self.workdir / UNREADABLE_DIR / str(step)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(self.directory / str(step), dest)
        return dest

    def _unreadable(self, step: int, err: BaseException) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {self.directory / str(step)} cannot be read ({_reason(err)}); it is "
            "incomplete or damaged: delete that step directory to use an older checkpoint, or "
            "pass another --workdir"
        )

    def _close_quietly(self) -> None:
        try:
            self._manager.close()
        except Exception:  # a manager whose write failed may fail to close; nothing to keep
            pass

    def close(self) -> None:
        self._manager.close()


def _reason(err: BaseException) -> str:
    """The innermost cause's type and first line (orbax nests the I/O error several levels)."""
    while err.__cause__ is not None and err.__cause__ is not err:
        err = err.__cause__
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}{'...' if len(first) > 300 else ''}"


def abstract_like(state: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves (shape, dtype, sharding) mirroring a concrete state."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        state,
    )
