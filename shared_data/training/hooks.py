"""Callbacks of a training loop (both backends): progress bar, per-step observers.

``train_and_evaluate(recipe, workdir, hooks=(ProgressBar(),))``: each hook sees the start of every
epoch, every optimizer step, the periodically logged training scalars and every epoch's record.
A plain callable in ``hooks`` is called with each step's :class:`StepInfo` (tests use that to
check the data order, or raise from it to stand in for a kill).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """One optimizer step: its epoch and step within it (0-based), ``global_step`` (steps done,
    this one included), the batch's record ``indices`` (into the ``train`` split: the global
    batch in JAX, this process's shard of it under torch DDP) and ``loss`` (a device scalar:
    reading it synchronises)."""

    epoch: int
    step: int
    global_step: int
    indices: list[int]
    loss: Any


class Hook:
    """Base class: every method is optional (a no-op here)."""

    def on_epoch_start(self, epoch: int, *, epochs: int, steps: int, first_step: int, mixup: bool):
        """Epoch ``epoch`` (0-based) of ``epochs`` starts at step ``first_step`` of ``steps``."""

    def on_step(self, info: StepInfo) -> None:
        """After each optimizer step."""

    def on_scalars(self, global_step: int, scalars: Mapping[str, float]) -> None:
        """A training point's ``loss``/``acc`` (means over the steps since the previous point)
        and ``lr`` (of its last step), as ``metrics_log.TRAIN_SCALARS`` defines them."""

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        """The epoch's ``metrics.jsonl`` record."""

    def close(self) -> None:
        """The run ended (normally or not)."""


class _StepCallback(Hook):
    def __init__(self, fn: Callable[[StepInfo], None]):
        self.fn = fn

    def on_step(self, info: StepInfo) -> None:
        self.fn(info)


class Hooks(Hook):
    """Several hooks as one (plain callables become :meth:`Hook.on_step` callbacks)."""

    def __init__(self, hooks: Iterable[Hook | Callable[[StepInfo], None]] = ()):
        self.hooks = [h if isinstance(h, Hook) else _StepCallback(h) for h in hooks]

    def on_epoch_start(self, epoch, **kwargs):
        for h in self.hooks:
            h.on_epoch_start(epoch, **kwargs)

    def on_step(self, info):
        for h in self.hooks:
            h.on_step(info)

    def on_scalars(self, global_step, scalars):
        for h in self.hooks:
            h.on_scalars(global_step, scalars)

    def on_epoch_end(self, record):
        for h in self.hooks:
            h.on_epoch_end(record)

    def close(self):
        for h in self.hooks:
            h.close()


class ProgressBar(Hook):
    """A tqdm bar per epoch on stderr, with the logged loss, accuracy and learning rate."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def on_epoch_start(self, epoch, *, epochs, steps, first_step, mixup):
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.close()
        desc = f"epoch {epoch + 1}/{epochs}" + (" mixup" if mixup else "")
        self.bar = tqdm(total=steps, initial=first_step, desc=desc, file=sys.stderr, leave=False,
                        dynamic_ncols=True)  # fmt: skip

    def on_step(self, info):
        if self.bar is not None:
            self.bar.update(1)

    def on_scalars(self, global_step, scalars):
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{scalars['loss']:.4f}",
                acc=f"{scalars['acc']:.3f}",
                lr=f"{scalars['lr']:.2e}",
            )

    def on_epoch_end(self, record):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
