"""The pieces both training loops share: when to log, validate and checkpoint, records, summary.

``jax_impl.train`` and ``torch_ref.train`` are written as the same named steps
(``create_train_state``, ``restore_or_start``, ``train_epoch``, ``evaluate``, ``save``,
``summarize``); what is the same in both, down to the numbers, lives here, so the two loops cannot
drift: when to write a training scalar point, validate and checkpoint, the per-epoch record of
``metrics.jsonl`` and the summary dict :func:`summarize` returns (one schema, :data:`SUMMARY_KEYS`).
The position a run continues from and its epoch's sums are :mod:`shared_data.training.run_state`'s.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shared_data.errors import UserError
from shared_data.training.metrics_log import METRICS_FILE, read_metrics
from shared_data.training.run_state import EpochSums, RunPosition

#: The keys of the dict both backends' ``train_and_evaluate`` return.
SUMMARY_KEYS = (
    "workdir",
    "model",
    "fold",
    "best_val_acc",
    "best_epoch",
    "final_val_acc",
    "final_val_song_acc",
    "epochs_done",
    "global_step",
    "best_step",
    "latest_step",
    "best_checkpoint",
    "checkpoints",
    "curves",
    "metrics",
)


class TrainingError(UserError):
    """The run cannot go on (diverged loss, a workdir that must not be reused, ...)."""


def next_epoch(position: RunPosition) -> None:
    """Move ``position`` past the epoch it finished: step 0 of the next one, sums cleared."""
    position.epoch, position.step, position.sums = position.epoch + 1, 0, EpochSums()


def last_good(checkpoints: Any) -> str:
    """A sentence on the checkpoint a stopped run leaves (``checkpoints``: either backend's)."""
    step = checkpoints.latest_step()
    if step is None:
        return "No checkpoint was written before."
    return f"The last good checkpoint (step {step}) in {checkpoints.directory} is intact."


def diverged(where: str, lr: float, checkpoints: Any) -> TrainingError:
    """The error of a non-finite training loss at ``where`` (e.g. ``"epoch 2, step 0"``)."""
    return TrainingError(
        f"the training loss became NaN or infinite at {where}, lr {lr:.3g}; the run stopped "
        f"without saving. {last_good(checkpoints)} Lower --lr, check the data, or use "
        "--precision=fp32 if this ran in bf16."
    )


def eval_due(recipe: Any, epoch: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a validation: every ``eval_every``, and last."""
    return (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs


def mid_epoch_checkpoint_due(
    recipe: Any, global_step: int, step: int, steps_per_epoch: int
) -> bool:
    """Whether to checkpoint after step ``step`` of an epoch (not its last: the epoch end saves)."""
    every = recipe.checkpoint_every
    return every > 0 and global_step % every == 0 and step + 1 < steps_per_epoch


def train_point_due(recipe: Any, global_step: int, step: int, steps_per_epoch: int) -> bool:
    """Whether step ``step`` of an epoch (``global_step`` steps done) ends a ``train/`` point:
    every ``--log_every`` global steps, at a mid-epoch checkpoint and at the epoch's end. A
    checkpoint always ends a point, so a resumed run writes the points an uninterrupted one does.
    """
    return (
        global_step % recipe.log_every == 0
        or step + 1 == steps_per_epoch
        or mid_epoch_checkpoint_due(recipe, global_step, step, steps_per_epoch)
    )


def epoch_record(
    epoch: int, position: RunPosition, *, lr: float, mixup: bool, time_s: float
) -> dict[str, Any]:
    """The training half of one epoch's ``metrics.jsonl`` record (validation keys added later)."""
    return {
        "epoch": epoch,
        "step": position.global_step,
        "train_loss": position.sums.train_loss,
        "train_acc": position.sums.train_acc,
        "lr": float(lr),
        "mixup": bool(mixup),
        "time_s": round(time_s, 3),
    }


def epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """The status line printed after an epoch."""
    val = (
        f" | val loss {record['val_loss']:.4f} acc {record['val_acc']:.4f} "
        f"song acc {record['val_song_acc']:.4f}"
        if "val_acc" in record
        else ""
    )
    return (
        f"epoch {record['epoch'] + 1}/{epochs}: train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:.4f}{val} lr {record['lr']:.3g} ({record['time_s']:.1f} s)"
    )


@dataclasses.dataclass(frozen=True)
class EpochSteps:
    """One backend's named steps, as :func:`run_epochs` calls them.

    ``train_epoch(t, data, position, checkpoints, hooks, logger) -> lr`` trains the current
    epoch (updating ``position``), ``evaluate(t, data) -> metrics`` validates,
    ``save(t, checkpoints, position, val_acc=...)`` checkpoints at ``position`` (``val_acc``
    only when the epoch improved the best), ``log(line)`` prints a status line.
    """

    train_epoch: Callable[..., float]
    evaluate: Callable[..., dict[str, float]]
    save: Callable[..., None]
    log: Callable[[str], None]


def run_epochs(
    steps: EpochSteps,
    t: Any,
    data: Any,
    position: RunPosition,
    checkpoints: Any,
    hooks: Any,
    logger: Any,
) -> dict[str, float]:
    """Train ``t`` (a backend's ``TrainState``, with its ``recipe``) from ``position.epoch`` to
    the last epoch, in the order both backends end an epoch: record, validate, advance, log,
    checkpoint, hooks. Returns the last validation metrics ({} if none ran)."""
    recipe, last_val = t.recipe, {}
    for epoch in range(position.epoch, recipe.epochs):
        t0 = time.perf_counter()
        lr = steps.train_epoch(t, data, position, checkpoints, hooks, logger)
        record = epoch_record(epoch, position, lr=lr, mixup=recipe.mixup_active(epoch),
                              time_s=time.perf_counter() - t0)  # fmt: skip
        improved = False
        if eval_due(recipe, epoch):
            last_val = steps.evaluate(t, data)
            record.update(last_val)
            improved = position.record_validation(last_val["val_acc"], epoch)
        next_epoch(position)
        # The record goes out before the checkpoint: a crash in between re-runs the epoch, and
        # the resumed logger drops the record of the epoch it re-runs.
        logger.log_epoch(record, step=position.global_step)
        steps.save(t, checkpoints, position, val_acc=last_val["val_acc"] if improved else None)
        hooks.on_epoch_end(record)
        steps.log(epoch_line(record, recipe.epochs))
    return last_val


def summarize(
    recipe: Any,
    workdir: Path,
    position: RunPosition,
    last_val: Mapping[str, float],
    checkpoints: Any,
    curves: Path | None,
) -> dict[str, Any]:
    """The run's summary (keys :data:`SUMMARY_KEYS`, JSON-able).

    ``last_val``: the last validation of this call ({} when nothing was left to train: the run's
    last recorded validation in ``metrics.jsonl`` is reported). ``checkpoints``: the backend's
    ``Checkpoints`` (``best_step()``, ``latest_step()``, ``path(which)``, ``directory``).
    """
    if not last_val:
        done = [r for r in read_metrics(workdir) if "val_acc" in r]
        last_val = {k: done[-1][k] for k in ("val_acc", "val_song_acc")} if done else {}
    best = checkpoints.path("best")
    return {
        "workdir": str(workdir),
        "model": recipe.model,
        "fold": recipe.fold,
        "best_val_acc": position.best_val_acc,
        "best_epoch": position.best_epoch,
        "final_val_acc": last_val.get("val_acc"),
        "final_val_song_acc": last_val.get("val_song_acc"),
        "epochs_done": position.epoch,
        "global_step": position.global_step,
        "best_step": checkpoints.best_step(),
        "latest_step": checkpoints.latest_step(),
        "best_checkpoint": None if best is None else str(best),
        "checkpoints": str(checkpoints.directory),
        "curves": None if curves is None else str(curves),
        "metrics": str(workdir / METRICS_FILE),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The closing lines of a run: accuracies and where the outputs are."""
    best = summary["best_val_acc"]
    lines = [
        f"validation accuracy: {summary['final_val_acc']:.4f} (last epoch), "
        f"best {best:.4f} at epoch {summary['best_epoch'] + 1}"
        if best is not None
        else "validation accuracy: not evaluated",
        f"checkpoints: {summary['checkpoints']} (best step {summary['best_step']}, "
        f"latest step {summary['latest_step']})",
        f"metrics:     {summary['metrics']}",
        f"curves:      {summary['curves']}",
    ]
    return "\n".join(lines)


def resolve_workdir(recipe: Any, workdir: str | os.PathLike[str] | None) -> Path:
    """``workdir`` (default ``recipe.workdir``), refused when it is an existing non-directory.

    Raises:
        TrainingError: the path exists and is a regular file (or another non-directory).
    """
    path = Path(workdir if workdir is not None else recipe.workdir).expanduser()
    if path.exists() and not path.is_dir():
        raise TrainingError(
            f"--workdir={path} is a file, not a directory; pass a directory for the run's "
            "checkpoints and logs (a new one is created)"
        )
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise TrainingError(
                f"--workdir={path} cannot be created: {parent} is a file, not a directory"
            )
    return path
