"""Orbax checkpoints of a training run: the latest one (to resume) and the best-validation one.

One ``CheckpointManager`` under ``workdir/checkpoints`` keeps, by its preservation policy, the most
recent checkpoint and the one with the highest ``val_acc``. Epoch-end checkpoints carry
``{"val_acc": ...}`` as their metrics; mid-epoch ones carry none, so they are kept only while they
are the latest. Orbax writes each step into a temporary directory and renames it when complete, and
deletes older steps only after that, so a crash or a failed write (disk full) leaves the previous
checkpoint readable.

Every checkpoint holds two items: ``state`` (the train state pytree) and ``meta`` (JSON: position in
the run — epoch, step within the epoch, global step — plus the recipe fields that fix the data
order, so a resume with a different order is refused).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from shared_data.training.resume_check import CheckpointError

CHECKPOINT_DIR = "checkpoints"


def _val_acc(metrics: Mapping[str, Any]) -> float:
    return float(metrics["val_acc"])


class Checkpoints:
    """The checkpoints of one run directory.

    Args:
        workdir: the run directory; checkpoints live in ``workdir/checkpoints``.
    """

    def __init__(self, workdir: str | os.PathLike[str]):
        self.directory = Path(workdir).absolute() / CHECKPOINT_DIR
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
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's global step, or None."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """Global step of the checkpoint with the highest ``val_acc`` (the earliest on a tie)."""
        best: tuple[float, int] | None = None
        for step in self._manager.all_steps():
            metrics = self._manager.metrics(step)
            if metrics is None or "val_acc" not in metrics:
                continue
            key = (float(metrics["val_acc"]), -step)
            if best is None or key > best:
                best = key
        return None if best is None else -best[1]

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        meta: Mapping[str, Any],
        *,
        val_acc: float | None = None,
    ) -> None:
        """Write ``state`` and ``meta`` as global step ``step`` (all processes call this).

        Raises:
            CheckpointError: the write failed (e.g. disk full); the previous checkpoint is intact.
        """
        previous = self.latest_step()
        metrics = None if val_acc is None else {"val_acc": float(val_acc)}
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
                ),
                metrics=metrics,
                force=True,
            )
            self._manager.wait_until_finished()
        except Exception as err:  # orbax wraps I/O errors in several types; all mean "not written"
            kept = (
                f"the previous checkpoint (step {previous}) is intact and a rerun resumes from it"
                if previous is not None
                else "there is no earlier checkpoint"
            )
            raise CheckpointError(
                f"writing the checkpoint of step {step} to {self.directory} failed "
                f"({type(err).__name__}: {err}); {kept}. Free disk space or pass another --workdir."
            ) from err

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Read step ``step`` into the structure, dtypes and shardings of ``abstract_state``.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` (with ``sharding``), e.g. from
        :func:`abstract_like`. Returns ``(state, meta)``.
        """
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"])

    def read_meta(self, step: int) -> dict[str, Any]:
        """Only the JSON ``meta`` of step ``step``."""
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def close(self) -> None:
        self._manager.close()


def abstract_like(state: Any) -> Any:
    """``jax.ShapeDtypeStruct`` leaves (shape, dtype, sharding) mirroring a concrete state."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        state,
    )
