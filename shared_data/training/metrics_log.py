"""Run outputs: ``metrics.jsonl`` (one object per epoch), TensorBoard scalars, the curves PNG.

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

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"


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

    def log_scalars(self, step: int, scalars: Mapping[str, float], *, prefix: str) -> None:
        """TensorBoard scalars ``prefix/name`` at global ``step``."""
        if self._tb is None:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(f"{prefix}/{name}", float(value), step)

    def log_epoch(self, record: Mapping[str, Any], *, step: int) -> None:
        """Append one epoch's record (holding ``epoch``); numeric val_/train_ keys also go to TB."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        with (self.workdir / METRICS_FILE).open("a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for key, value in record.items():
            if isinstance(value, int | float) and key.startswith(("val_", "train_", "lr")):
                group, _, name = key.partition("_")
                self.log_scalars(step, {name or group: value}, prefix=f"epoch_{group}")
        if self._tb is not None:
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
