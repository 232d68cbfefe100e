"""The state of a run a checkpoint carries, the same in both backends: where the run continues,
its epoch's running sums, the best validation so far, and the recipe.

API::

    position = RunPosition()                                  # a fresh run: epoch 0, step 0
    meta = CheckpointMeta.at(position, recipe).to_dict()      # the JSON meta of a checkpoint
    position = CheckpointMeta.from_dict(meta).position()      # ... read back, any format

A checkpoint's meta (the orbax ``meta`` item in JAX; the non-tensor entries of a ``.pt`` file in
torch) is :meth:`CheckpointMeta.to_dict`::

    {"next_epoch": 1, "next_step": 0, "global_step": 6,       # the run continues here (0-based)
     "epoch_sums": {"loss_sum": 0.0, "correct": 0.0, "count": 0.0},  # the epoch so far
     "best_val_acc": 0.5, "best_epoch": 0,                    # null before the first validation
     "recipe": {...}}                                         # Recipe.to_dict()

:meth:`CheckpointMeta.from_dict` also reads the formats written before the backends shared this
one, so their run directories still resume: JAX's (``"best": {"val_acc", "epoch"}``, and before
that ``epoch_sums`` holding the sum of batch-mean losses ``loss`` over ``steps`` batches instead
of ``loss_sum``) and torch's (``epoch``, ``step``, ``epoch_accum`` ({} at an epoch's start) and
``best_val_acc=-1``, ``best_epoch=-1`` before the first validation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared_data.training.resume_check import CheckpointError

_SUM_KEYS = ("loss_sum", "correct", "count")


@dataclasses.dataclass
class EpochSums:
    """Running sums of the current epoch's training metrics (summed over all processes).

    ``loss_sum`` is the sum of per-example losses (batch mean x batch size), so ``train_loss`` is
    the mean over the examples seen, whatever the batch sizes.
    """

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss_mean: float, correct: float, count: float) -> None:
        """Add one batch: its mean loss, its (Mixup-credited) correct count and its size."""
        self.loss_sum += float(loss_mean) * float(count)
        self.correct += float(correct)
        self.count += float(count)

    def since(self, earlier: EpochSums) -> EpochSums:
        """The sums of the examples added after ``earlier`` (a copy of these sums taken then)."""
        return EpochSums(self.loss_sum - earlier.loss_sum, self.correct - earlier.correct,
                         self.count - earlier.count)  # fmt: skip

    @property
    def train_loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def train_acc(self) -> float:
        return self.correct / self.count if self.count else float("nan")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> EpochSums:
        """Read :meth:`to_dict` output ({} or None: zeros)."""
        values = values or {}
        return cls(**{k: float(values.get(k, 0.0)) for k in _SUM_KEYS})


@dataclasses.dataclass
class RunPosition:
    """Where a run continues: step ``step`` of epoch ``epoch`` (both 0-based), global step
    ``global_step`` (optimizer steps done), the interrupted epoch's sums, and the best validation
    accuracy so far with its epoch (None before the first validation)."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: EpochSums = dataclasses.field(default_factory=EpochSums)
    best_val_acc: float | None = None
    best_epoch: int | None = None

    def record_validation(self, val_acc: float, epoch: int) -> bool:
        """Note epoch ``epoch``'s accuracy; True when it beats the best (the first wins ties)."""
        improved = self.best_val_acc is None or val_acc > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = float(val_acc), epoch
        return improved


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's meta: ``run``, the :class:`RunPosition` the run continues from (a copy
    taken when the checkpoint was written: the loop goes on mutating its own), and ``recipe``,
    the recipe that wrote it (``Recipe.to_dict()``, compared on resume). :meth:`to_dict` names
    the position's fields as the module docstring shows (``next_epoch`` is ``run.epoch``, ...)."""

    run: RunPosition
    recipe: dict[str, Any]

    @classmethod
    def at(cls, position: RunPosition, recipe: Any) -> CheckpointMeta:
        """The meta of a checkpoint from which the run continues at ``position``."""
        return cls(run=_copy(position), recipe=recipe.to_dict())

    def position(self) -> RunPosition:
        """The :class:`RunPosition` the run continues from (a fresh copy)."""
        return _copy(self.run)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able meta both backends write (the keys of the module docstring)."""
        run = self.run
        return {
            "next_epoch": run.epoch,
            "next_step": run.step,
            "global_step": run.global_step,
            "epoch_sums": run.sums.to_dict(),
            "best_val_acc": run.best_val_acc,
            "best_epoch": run.best_epoch,
            "recipe": dict(self.recipe),
        }

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any], where: str = "the checkpoint") -> CheckpointMeta:
        """Read :meth:`to_dict` output, or a meta of an earlier format (module docstring).

        Args:
            where: names the checkpoint in an error message.

        Raises:
            CheckpointError: a key is missing or holds a value of the wrong type.
        """
        try:
            current = _current_format(meta)
            best = current["best_val_acc"]
            run = RunPosition(
                epoch=int(current["next_epoch"]),
                step=int(current["next_step"]),
                global_step=int(current["global_step"]),
                sums=EpochSums.from_dict(current["epoch_sums"]),
                best_val_acc=None if best is None else float(best),
                best_epoch=None if best is None else int(current["best_epoch"]),
            )
            return cls(run=run, recipe=dict(current["recipe"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{where} holds no readable run state ({type(err).__name__}: {err}); it was not "
                "written by this project's training: pass another --workdir"
            ) from err


def _copy(position: RunPosition) -> RunPosition:
    """``position`` with sums of its own (a RunPosition's sums are mutated in place)."""
    return dataclasses.replace(position, sums=dataclasses.replace(position.sums))


def _current_format(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` in the keys of :meth:`CheckpointMeta.to_dict`, whichever format wrote it."""
    if "next_epoch" not in meta and "epoch" in meta:  # torch, before the shared format
        has_best = int(meta["best_epoch"]) >= 0  # -1 (and best_val_acc -1.0): none yet
        return {
            "next_epoch": meta["epoch"],
            "next_step": meta["step"],
            "global_step": meta["global_step"],
            "epoch_sums": meta.get("epoch_accum") or {},
            "best_val_acc": meta["best_val_acc"] if has_best else None,
            "best_epoch": meta["best_epoch"] if has_best else None,
            "recipe": meta["recipe"],
        }
    current = dict(meta)
    if "best" in meta:  # JAX, before the shared format
        best = meta["best"] or {}
        current["best_val_acc"], current["best_epoch"] = best.get("val_acc"), best.get("epoch")
    sums = dict(meta["epoch_sums"] or {})
    if "loss" in sums and "loss_sum" not in sums:  # older JAX: sum of batch means over ``steps``
        steps = float(sums.get("steps", 0.0))
        sums["loss_sum"] = float(sums["loss"]) * float(sums["count"]) / steps if steps else 0.0
    current["epoch_sums"] = sums
    return current
