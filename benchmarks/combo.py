"""One benchmark combination (model, backend, precision, batch) and what both backends share.

The backends: ``jax`` (the functional ``nnx.split`` + ``jax.jit`` step of ``jax_impl.train_step``
with donated state, what ``jax_impl.train`` runs), ``jax_nnxjit`` (the same step written the
``nnx.jit`` way, as a comparison), ``torch`` (eager ``torch_ref.train_step.train_step``) and
``torch_compile`` (the same with the model ``torch.compile``d, as ``torch_ref.train --compile``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared_data.errors import UserError
from shared_data.training.recipe import Recipe

BACKENDS: tuple[str, ...] = ("jax", "jax_nnxjit", "torch", "torch_compile")
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")
# The schedule's epoch length: long enough that the benchmark's steps stay in the first cosine.
STEPS_PER_EPOCH = 10_000


class BenchmarkError(UserError):
    """A benchmark flag or input that cannot be used; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class Combo:
    """One row of the benchmark: ``input_size`` is the square mel-by-frames input side."""

    model: str
    backend: str
    precision: str
    batch_size: int
    input_size: int = 128
    num_classes: int = 10
    seed: int = 0
    memory_efficient: bool = False  # DenseNet's rematerialised bottlenecks (Recipe field)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """The model column of the tables: the model name, marked when memory-efficient."""
        return f"{self.model}[memory_efficient]" if self.memory_efficient else self.model


def bench_recipe(combo: Combo) -> Recipe:
    """The default training recipe for ``combo`` (SpecAugment and Mixup on), resolved.

    ``data_dir``/``workdir`` are placeholders: the benchmark reads no dataset and writes no run.
    """
    backend = "jax" if combo.backend.startswith("jax") else "torch"
    recipe = Recipe(
        model=combo.model,
        batch_size=combo.batch_size,
        precision=combo.precision,
        seed=combo.seed,
        memory_efficient=combo.memory_efficient,
        data_dir="unused-by-benchmark",
        workdir="unused-by-benchmark",
    )
    return recipe.resolved(backend)


def synthetic_batch(combo: Combo) -> tuple[np.ndarray, np.ndarray]:
    """``(mel float32 [B, H, W], label int64 [B])``: normalised-looking noise and labels.

    The same arrays for every backend (``numpy`` from ``combo.seed``); each backend adds its
    channel axis (NHWC for JAX, NCHW for torch).
    """
    rng = np.random.default_rng(combo.seed)
    b, s = combo.batch_size, combo.input_size
    mel = rng.standard_normal((b, s, s), dtype=np.float32)
    label = rng.integers(0, combo.num_classes, size=b, dtype=np.int64)
    return mel, label
