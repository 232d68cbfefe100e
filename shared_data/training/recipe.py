"""The training recipe: one frozen dataclass both backends read, and the flags generated from it.

API (for the training loops in ``jax_impl/train.py`` and ``torch_ref/train.py``)::

    add_recipe_flags(parser); recipe = recipe_from_args(args)   # in recipe_flags.py
    recipe = recipe.resolved("jax", accelerator=True)       # fills every None/"auto" default
    recipe.lr, recipe.weight_decay, recipe.t0_epochs         # concrete after resolved()
    recipe.mixup_active(epoch) -> bool                       # Mixup in the first epochs only
    recipe.mixup_epochs -> int
    recipe.micro_batches -> int                              # gradient-accumulation passes per step
    recipe.spec_augment() -> SpecAugmentSpec                  # static config of the masks
    recipe.to_json() / Recipe.from_json(text) / recipe.to_dict() / Recipe.from_dict(d)

Defaults follow the reference report where it speaks: cosine annealing with warm restarts whose
period defaults to the whole run (the report's final models used one cosine without restarts),
SpecAugment time and frequency masks drawn per example inside the batch, Mixup for the first half
of the epochs then plain cross-entropy, and the best-validation checkpoint kept (the training loops
always do that). Where the report is silent the choice is explained beside the field.

Validation and the constants are in ``recipe_checks.py``, the flag generation in
``recipe_flags.py``. ``resolved()`` is the one place defaults that depend on other fields are
filled, so the resolved recipe written to ``recipe.json`` is the complete record of the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared_data.backends import TRAINING_BACKENDS
from shared_data.paths import DATA_DIR_RULE, default_data_dir
from shared_data.training.recipe_checks import (  # noqa: F401 (re-exported)
    DEFAULT_LR,
    DEFAULT_WEIGHT_DECAY,
    MEMORY_EFFICIENT_MODELS,
    OPTIMIZERS,
    PRECISIONS,
    SGD_REFERENCE_BATCH,
    RecipeError,
    default_t0_epochs,
    validate,
)


@dataclass(frozen=True)
class SpecAugmentSpec:
    """Static SpecAugment configuration (hashable, so it can be a static jit argument).

    Widths are drawn uniformly from ``{0, ..., max_*_width}`` per mask and per example, starts
    uniformly from the positions where the mask fits. ``fill_value`` is written into masked cells;
    the batch is normalised with the dataset mean/std before augmentation, so 0.0 is the dataset's
    mean log-mel level: a masked band looks like "average energy", not like silence (a raw 0 dB or
    the minimum would be an out-of-distribution edge the network could key on). It is one constant
    for every example, which keeps the masks independent of the batch statistics.
    """

    num_time_masks: int = 2
    max_time_width: int = 16
    num_freq_masks: int = 2
    max_freq_width: int = 16
    fill_value: float = 0.0


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter and run setting of one training run (validated on construction).

    ``None`` means "derived" (see each field); :meth:`resolved` fills them in.
    """

    # --- what to train on -------------------------------------------------------------------
    model: str = field(default="resnet18", metadata=_help("model name (one of MODEL_NAMES)"))
    dataset: str = field(
        default="synthetic",
        metadata=_help(
            "builder config name of the dataset (synthetic, synthetic_small, "
            "synthetic_instrumental, folder, csv, gtzan)"
        ),
    )
    # None: vocals (the reference report's pipeline) when the dataset stores it, else the one
    # stem a single-stem dataset stores (a mix-only build trains as before); resolved when the
    # data is opened (shared_data.training.split) and recorded in recipe.json.
    stem: str | None = field(
        default=None,
        metadata=_help(
            "stem the model trains on (vocals, accompaniment or mix: a record field of the "
            "dataset); default vocals, or the only stem of a one-stem dataset"
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_help(f"dataset directory; default {DATA_DIR_RULE}"),
    )
    workdir: str | None = field(
        default=None,
        metadata=_help(
            "run directory (checkpoints, metrics.jsonl, recipe.json, curves); "
            "default runs/<backend>/<model>/fold<fold>"
        ),
    )
    fold: int = field(default=0, metadata=_help("validation fold k: train on the others"))
    folds: int = field(
        default=5, metadata=_help("number of song-grouped folds K the dataset was built with")
    )
    seed: int = field(
        default=0,
        metadata=_help("seed of every random draw (init, data order, augmentation, shake-shake)"),
    )
    # --- how long, how big -------------------------------------------------------------------
    # 30 epochs: from-scratch CNNs on a few thousand 3-s clips converge within 20-50 epochs under a
    # single cosine; the CLI demo and tests pass fewer.
    epochs: int = field(default=30, metadata=_help("number of training epochs"))
    # 64 (global, summed over devices): the datasets are small (thousands of clips), so a moderate
    # batch gives many updates per epoch; BN statistics are stable at 64 and AdamW's 1e-3 is the
    # well-trodden setting for 64-256. On N GPUs pass N x the per-device batch you want.
    batch_size: int = field(
        default=64, metadata=_help("global batch size (split evenly over devices/processes)")
    )
    # torchvision's memory_efficient for DenseNet: XLA plans ~1.4 GiB of temporaries per sample
    # for DenseNet-201's train step at 128x128 (BENCHMARKS.md), so batch 256 cannot fit an 80 GB
    # GPU without recomputing the bottlenecks over the growing concatenations.
    memory_efficient: bool = field(
        default=False,
        metadata=_help(
            "densenet201 only: recompute each dense layer's BN-ReLU-conv1x1 bottleneck in the "
            "backward pass instead of storing it (less activation memory, one more forward of "
            "the bottlenecks)"
        ),
    )
    # None: one pass over the whole batch, unless the train step does not fit the accelerator's
    # memory; then the largest micro-batch that does (shared_data/training/memory_fit.py). Both
    # backends accumulate the micro-batches' gradients into ONE optimizer step, so the global
    # batch, the LR schedule, the data order and the per-example SpecAugment draws stay the same;
    # BatchNorm's batch statistics and Mixup's partners are per micro-batch (docs/design.md).
    micro_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "examples per gradient-accumulation micro-batch (global, split over the devices like "
            "--batch_size, which it must divide): one optimizer step per --batch_size, BatchNorm "
            "statistics and Mixup partners per micro-batch; default: the whole batch, or on a "
            "GPU/TPU the largest micro-batch whose train step fits the device's memory"
        ),
    )
    precision: str = field(
        default="auto",
        metadata=_help("compute precision: auto (bf16 on GPU, fp32 on CPU), bf16 or fp32"),
    )
    eval_every: int = field(default=1, metadata=_help("validate every N epochs (and at the end)"))
    log_every: int = field(default=50, metadata=_help("log training metrics every N steps"))
    checkpoint_every: int = field(
        default=0,
        metadata=_help("also save the latest checkpoint every N steps (0: at epoch ends only)"),
    )
    # -1 resolves per machine (default_num_workers): the loader's workers must outrun an
    # accelerator, and on the CPU they would compete with the training itself for the cores.
    num_workers: int = field(
        default=-1,
        metadata=_help(
            "data-loading worker processes; 0 reads in the training process; -1 (default): "
            "0 when training on the CPU, else one per core this process may use, less one for "
            "the training process, at most 16"
        ),
    )
    resume: bool = field(
        default=True,
        metadata=_help(
            "resume from the latest checkpoint in --workdir if there is one; "
            "--resume=false refuses to reuse a workdir that holds a checkpoint"
        ),
    )
    # --- optimizer ---------------------------------------------------------------------------
    # AdamW by default: these are CNNs (and one LSTM) trained from scratch on small data in a
    # few dozen epochs. Adam's per-parameter scaling converges in far fewer steps than SGD early
    # on and is insensitive to the architecture (the same 1e-3 trains ResNeXt, DenseNet,
    # shake-shake and the LSTM, where SGD needs a per-model LR and warm-up). Decoupled weight
    # decay (Loshchilov & Hutter) keeps regularisation independent of the LR schedule. SGD with
    # Nesterov momentum (the classic CIFAR ResNet recipe) stays available for long runs.
    optimizer: str = field(
        default="adamw", metadata=_help("adamw (decoupled decay) or sgd (Nesterov momentum, L2)")
    )
    lr: float | None = field(
        default=None,
        metadata=_help(
            "peak learning rate; default adamw 1e-3, sgd 0.1 x batch_size/128 (linear scaling)"
        ),
    )
    weight_decay: float | None = field(
        default=None,
        metadata=_help(
            "weight decay on all parameters; default adamw 0.05 (decoupled, multiplied by the "
            "scheduled lr), sgd 5e-4 (L2 added to the gradient, torch semantics)"
        ),
    )
    momentum: float = field(default=0.9, metadata=_help("SGD momentum"))
    nesterov: bool = field(default=True, metadata=_help("SGD: use Nesterov momentum"))
    adam_b1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    adam_b2: float = field(default=0.999, metadata=_help("AdamW beta2"))
    adam_eps: float = field(default=1e-8, metadata=_help("AdamW epsilon (outside the sqrt)"))
    # --- schedule: cosine annealing with warm restarts (SGDR), stepped per iteration ---------
    t0_epochs: int | None = field(
        default=None,
        metadata=_help(
            "epochs of the first cosine cycle (T_0); default: the run split into --restarts+1 "
            "cycles (the whole run when --restarts=0)"
        ),
    )
    t_mult: int = field(
        default=1, metadata=_help("cycle length factor after each restart (T_mult)")
    )
    # 0.0: torch's and the SGDR paper's default; the cosine ends at (almost) zero LR, which is
    # where the best-validation checkpoint of a single-cycle run usually is.
    eta_min: float = field(default=0.0, metadata=_help("learning rate floor of every cycle"))
    restarts: int = field(
        default=0,
        metadata=_help(
            "warm restarts within the run when --t0_epochs is not given (the reference report's "
            "final models used none)"
        ),
    )
    # --- augmentation ------------------------------------------------------------------------
    # alpha 0.2: Zhang et al. found 0.1-0.4 best at ImageNet scale and larger alphas under-fit in
    # short schedules; ours is short and Mixup only runs for its first half.
    mixup_alpha: float = field(
        default=0.2, metadata=_help("Mixup lambda ~ Beta(alpha, alpha) per batch; 0 disables")
    )
    mixup_fraction: float = field(
        default=0.5,
        metadata=_help("Mixup in the first floor(fraction x epochs) epochs, then plain CE"),
    )
    # 0.0: the reference report does not use it, and Mixup already softens the first half's targets.
    label_smoothing: float = field(default=0.0, metadata=_help("label smoothing of the targets"))
    # Two masks of up to 16 of 128 bins/frames per axis (SpecAugment's two-mask policy scaled to
    # 128x128 clips of 3 s): at most a quarter of either axis is hidden, so a 3-s clip keeps
    # enough of its vocal line to stay classifiable.
    num_time_masks: int = field(default=2, metadata=_help("SpecAugment time masks per example"))
    max_time_width: int = field(
        default=16, metadata=_help("SpecAugment maximum time-mask width (frames)")
    )
    num_freq_masks: int = field(
        default=2, metadata=_help("SpecAugment frequency masks per example")
    )
    max_freq_width: int = field(
        default=16, metadata=_help("SpecAugment maximum frequency-mask width (mel bins)")
    )

    def __post_init__(self) -> None:
        validate(self)

    # --- derived values ------------------------------------------------------------------------
    @property
    def mixup_epochs(self) -> int:
        """Number of leading epochs trained with Mixup (0 when ``mixup_alpha`` is 0)."""
        if self.mixup_alpha == 0:
            return 0
        return math.floor(self.mixup_fraction * self.epochs)

    @property
    def micro_batches(self) -> int:
        """Gradient-accumulation passes per optimizer step (1 when ``micro_batch_size`` is None)."""
        return self.batch_size // self.micro_batch_size if self.micro_batch_size else 1

    def mixup_active(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) trains with Mixup; afterwards plain cross-entropy."""
        return epoch < self.mixup_epochs

    def model_kwargs(self) -> dict[str, Any]:
        """Extra ``create_model`` arguments of this recipe (the same in both backends)."""
        return {"memory_efficient": True} if self.memory_efficient else {}

    def spec_augment(self) -> SpecAugmentSpec:
        """The static SpecAugment configuration of this recipe."""
        return SpecAugmentSpec(
            num_time_masks=self.num_time_masks,
            max_time_width=self.max_time_width,
            num_freq_masks=self.num_freq_masks,
            max_freq_width=self.max_freq_width,
        )

    def resolved(self, backend: str, *, accelerator: bool | None = None) -> Recipe:
        """A copy with every derived default filled in.

        Args:
            backend: ``"jax"`` or ``"torch"`` (names the default workdir).
            accelerator: whether training runs on a GPU/TPU; resolves ``precision="auto"``
                (bf16 there, fp32 on the CPU). ``None`` leaves ``auto`` as it is.
        """
        if backend not in TRAINING_BACKENDS:
            raise ValueError(f"backend must be one of {TRAINING_BACKENDS}, got {backend!r}")
        changes: dict[str, Any] = {}
        if self.data_dir is None:
            changes["data_dir"] = os.fspath(default_data_dir())
        if self.workdir is None:
            changes["workdir"] = default_workdir(backend, self.model, self.fold)
        lr = self.lr
        if lr is None:
            lr = DEFAULT_LR[self.optimizer]
            if self.optimizer == "sgd":
                lr *= self.batch_size / SGD_REFERENCE_BATCH
            changes["lr"] = lr
        if self.weight_decay is None:
            changes["weight_decay"] = DEFAULT_WEIGHT_DECAY[self.optimizer]
        if self.t0_epochs is None:
            changes["t0_epochs"] = default_t0_epochs(self.epochs, self.restarts, self.t_mult)
        if self.precision == "auto" and accelerator is not None:
            changes["precision"] = "bf16" if accelerator else "fp32"
        if self.num_workers < 0 and accelerator is not None:
            changes["num_workers"] = default_num_workers(accelerator)
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict, in declaration order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`RecipeError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise RecipeError(f"unknown recipe fields {unknown}; known fields: {sorted(names)}")
        return cls(**values)

    def to_json(self) -> str:
        """Indented JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Parse :meth:`to_json` output, or a run's ``recipe.json`` (``{"recipe": {...}, ...}``)."""
        values = json.loads(text)
        if "recipe" in values and isinstance(values["recipe"], dict):
            values = values["recipe"]
        return cls.from_dict(values)


def default_num_workers(accelerator: bool, cores: int | None = None) -> int:
    """What ``--num_workers=-1`` means: 0 on the CPU, else ``min(16, cores - 1)`` (at least 1).

    ``cores``: the cores this process may run on (default: its CPU affinity, which SLURM's
    ``--cpus-per-task`` and ``taskset`` set). On the CPU the model's own computation uses every
    core, so workers would only take cores from it. 16 workers read well over 100,000 clips/s
    (``BENCHMARKS.md``), more than any one accelerator consumes; more only cost memory.
    """
    if not accelerator:
        return 0
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(16, (cores or 1) - 1))


def default_workdir(backend: str, model: str, fold: int) -> str:
    """``runs/<backend>/<model>/fold<fold>`` (relative to the current directory)."""
    return str(Path("runs") / backend / model / f"fold{fold}")
