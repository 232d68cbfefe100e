"""Run outputs: ``metrics.jsonl`` (one object per epoch), TensorBoard scalars, the curves PNG.

What they hold is defined here once, and both backends write it through :class:`MetricsLogger`:
the keys of an epoch's record (:data:`RECORD_FIELDS`), the scalars of a training point during an
epoch (:data:`TRAIN_SCALARS`, written at the steps ``loop.train_point_due`` names) and the
TensorBoard tags of an epoch's record (:data:`EPOCH_SCALARS`).

TensorBoard event files come from ``tensorboardX``, which writes the event protocol buffers itself,
so no TensorFlow is needed. Only the process that owns the run directory (process 0) writes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared_data.training.run_state import EpochSums

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"

#: The keys of an epoch's ``metrics.jsonl`` record and what they mean (the ``val_`` ones only
#: after an epoch that validated, ``--eval_every``).
RECORD_FIELDS: dict[str, str] = {
    "epoch": "the epoch, 0-based",
    "step": "optimizer steps done at its end (the global step)",
    "train_loss": "mean per-example training loss over the epoch (the loss the steps minimised: "
    "smoothed and, while Mixup is on, mixed targets)",
    "train_acc": "training accuracy over the epoch (a mixed example credited by its Mixup weights)",
    "lr": "the LR of the epoch's last step",
    "mixup": "whether Mixup was on",
    "time_s": "wall time of the epoch's training, seconds",
    "val_loss": "mean cross-entropy on the validation clips",
    "val_acc": "clip accuracy on the validation clips",
    "val_song_acc": "song accuracy of the mean clip probabilities per song",
}

#: The TensorBoard scalars of a training point (``loop.train_point_due``: every ``--log_every``
#: global steps, at a mid-epoch checkpoint and at each epoch's end), at the global step.
TRAIN_SCALARS: dict[str, str] = {
    "train/loss": "mean per-example training loss of the steps since the previous point (at most "
    "--log_every of them, never across an epoch's start)",
    "train/acc": "training accuracy of the same steps",
    "train/lr": "the LR of the point's last step",
}

#: ``metrics.jsonl`` record key -> its TensorBoard tag, written at the epoch's last global step.
EPOCH_SCALARS: dict[str, str] = {
    "train_loss": "epoch_train/loss",
    "train_acc": "epoch_train/acc",
    "lr": "epoch_lr/lr",
    "val_loss": "epoch_val/loss",
    "val_acc": "epoch_val/acc",
    "val_song_acc": "epoch_val/song_acc",
}


def _jsonable(value: Any) -> Any:
    """Numbers as plain floats/ints (numpy scalars are not JSON); NaN kept as a string for JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(workdir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch records of ``workdir/metrics.jsonl`` in file order ([] if there is none)."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLogger:
    """Appends per-epoch metrics to ``metrics.jsonl`` and scalars to TensorBoard.

    Args:
        workdir: the run directory.
        enabled: False on every process but the first, so multi-host runs write one copy.
        resume_epoch: the epoch a resumed run starts in; records of that epoch and later (written by
            the interrupted run after its last checkpoint) are dropped so every epoch appears once.
    """

    def __init__(
        self, workdir: str | os.PathLike[str], *, enabled: bool = True, resume_epoch: int = 0
    ):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.workdir) if r.get("epoch", -1) < resume_epoch]
        tmp = self.workdir / (METRICS_FILE + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.workdir / METRICS_FILE)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(self.workdir / TENSORBOARD_DIR))

    def log_train_point(self, step: int, window: EpochSums, lr: float) -> dict[str, float]:
        """Write a training point's :data:`TRAIN_SCALARS` at global ``step``: ``window`` holds the
        sums of its steps, ``lr`` the LR of its last one. Returns ``{"loss", "acc", "lr"}`` (what
        ``Hook.on_scalars`` receives); every process gets them, only the writing one writes."""
        scalars = {"loss": window.train_loss, "acc": window.train_acc, "lr": float(lr)}
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(f"train/{name}", value, step)
        return scalars

    def log_epoch(self, record: Mapping[str, Any], *, step: int) -> None:
        """Append one epoch's record (:data:`RECORD_FIELDS`) and write its :data:`EPOCH_SCALARS`."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        with (self.workdir / METRICS_FILE).open("a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            for key, tag in EPOCH_SCALARS.items():
                if key in record:
                    self._tb.add_scalar(tag, float(record[key]), step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def plot_curves(workdir: str | os.PathLike[str]) -> Path | None:
    """Draw loss and accuracy per epoch (train and validation) into ``workdir/curves.png``.

    Returns the PNG path, or None when there is no epoch to plot.
    """
    records = read_metrics(workdir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if all(isinstance(r.get(key), int | float) for r in records):
            ax_loss.plot(epochs, [r[key] for r in records], marker="o", label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "validation")):
        if all(isinstance(r.get(key), int | float) for r in records):
            ax_acc.plot(epochs, [r[key] for r in records], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = Path(workdir) / CURVES_FILE
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
