"""Validation of a :class:`~shared_data.training.recipe.Recipe`, its constants and the derived
cycle length (kept apart from the dataclass so each module stays readable)."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from shared_data.architecture.names import MODEL_NAMES, known_model_names
from shared_data.errors import UserError

#: Models whose factories take ``memory_efficient`` (rematerialised DenseNet bottlenecks).
MEMORY_EFFICIENT_MODELS: tuple[str, ...] = ("densenet201",)
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
#: The stems a model may train on (the record fields ``mel_<stem>`` of a dataset).
TRAIN_STEMS: tuple[str, ...] = ("vocals", "accompaniment", "mix")

# Per-optimizer defaults (see the ``optimizer`` field for why AdamW is the default).
DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.1}  # sgd: per 128 examples, scaled linearly with the batch
SGD_REFERENCE_BATCH = 128
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}


class RecipeError(UserError):
    """A recipe value that cannot be used; the message names the flag and the allowed values."""


def default_t0_epochs(epochs: int, restarts: int, t_mult: int) -> int:
    """The first cycle's length so that ``restarts + 1`` cycles cover ``epochs``.

    Cycles last ``T_0, T_0*m, T_0*m^2, ...``; the sum of ``restarts + 1`` of them is
    ``T_0 * (m^(r+1) - 1) / (m - 1)`` (``T_0 * (r+1)`` for ``m = 1``). ``T_0`` must be an integer
    number of epochs (torch's scheduler demands it), so it is rounded up: the run then ends inside
    its last cycle, never at the peak of an extra one.
    """
    cycles = restarts + 1
    total_units = cycles if t_mult == 1 else (t_mult**cycles - 1) // (t_mult - 1)
    return max(1, math.ceil(epochs / total_units))


# --- validation ------------------------------------------------------------------------------


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RecipeError(message)


def validate(r: Any) -> None:
    """Raise :class:`RecipeError` naming the first flag with an unusable value."""
    _check_types(r)
    _check(
        r.model in known_model_names(),
        f"--model={r.model!r} is not a known model; valid models: {', '.join(MODEL_NAMES)}",
    )
    _check(bool(r.dataset), "--dataset must name a builder config (e.g. synthetic)")
    _check(
        r.stem is None or r.stem in TRAIN_STEMS,
        f"--stem must be one of {'|'.join(TRAIN_STEMS)} (got {r.stem!r})",
    )
    _check(r.epochs >= 1, f"--epochs must be >= 1 (got {r.epochs})")
    _check(r.batch_size >= 1, f"--batch_size must be >= 1 (got {r.batch_size})")
    _check_micro_batch(r)
    _check(r.folds >= 2, f"--folds must be >= 2 (got {r.folds})")
    _check(0 <= r.fold < r.folds, f"--fold must be in [0, --folds={r.folds}) (got {r.fold})")
    _check(r.seed >= 0, f"--seed must be >= 0 (got {r.seed})")
    _check(
        r.precision in PRECISIONS, f"--precision must be one of {PRECISIONS} (got {r.precision!r})"
    )
    _check(r.eval_every >= 1, f"--eval_every must be >= 1 (got {r.eval_every})")
    _check(r.log_every >= 1, f"--log_every must be >= 1 (got {r.log_every})")
    _check(r.checkpoint_every >= 0, f"--checkpoint_every must be >= 0 (got {r.checkpoint_every})")
    _check(r.num_workers >= -1, f"--num_workers must be >= 0, or -1 for auto (got {r.num_workers})")
    _check(
        r.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS} (got {r.optimizer!r})"
    )
    _check(r.lr is None or r.lr > 0, f"--lr must be > 0 (got {r.lr})")
    _check(
        r.weight_decay is None or r.weight_decay >= 0,
        f"--weight_decay must be >= 0 (got {r.weight_decay})",
    )
    _check(0 <= r.momentum < 1, f"--momentum must be in [0, 1) (got {r.momentum})")
    _check(0 <= r.adam_b1 < 1, f"--adam_b1 must be in [0, 1) (got {r.adam_b1})")
    _check(0 <= r.adam_b2 < 1, f"--adam_b2 must be in [0, 1) (got {r.adam_b2})")
    _check(r.adam_eps > 0, f"--adam_eps must be > 0 (got {r.adam_eps})")
    _check(r.t0_epochs is None or r.t0_epochs >= 1, f"--t0_epochs must be >= 1 (got {r.t0_epochs})")
    _check(r.t_mult >= 1, f"--t_mult must be an integer >= 1 (got {r.t_mult})")
    _check(r.eta_min >= 0, f"--eta_min must be >= 0 (got {r.eta_min})")
    _check(
        r.lr is None or r.eta_min < r.lr,
        f"--eta_min={r.eta_min} must be below --lr={r.lr}",
    )
    _check(r.restarts >= 0, f"--restarts must be >= 0 (got {r.restarts})")
    _check(
        r.t0_epochs is None
        or r.restarts == 0
        or r.t0_epochs == default_t0_epochs(r.epochs, r.restarts, r.t_mult),
        "--t0_epochs and --restarts both set and they disagree: give one "
        "(--restarts derives --t0_epochs from --epochs and --t_mult)",
    )
    _check(
        not r.memory_efficient or r.model in MEMORY_EFFICIENT_MODELS,
        f"--memory_efficient applies to {', '.join(MEMORY_EFFICIENT_MODELS)} only "
        f"(got --model={r.model})",
    )
    _check_augmentation(r)


def _check_micro_batch(r: Any) -> None:
    m = r.micro_batch_size
    if m is None:
        return
    _check(m >= 1, f"--micro_batch_size must be >= 1 (got {m})")
    divisor = max(d for d in range(1, min(m, r.batch_size) + 1) if r.batch_size % d == 0)
    _check(
        r.batch_size % m == 0,
        f"--micro_batch_size={m} must divide --batch_size={r.batch_size} "
        f"(e.g. --micro_batch_size={divisor})",
    )


def _check_augmentation(r: Any) -> None:
    _check(r.mixup_alpha >= 0, f"--mixup_alpha must be >= 0 (got {r.mixup_alpha})")
    _check(
        0 <= r.mixup_fraction <= 1, f"--mixup_fraction must be in [0, 1] (got {r.mixup_fraction})"
    )
    _check(
        0 <= r.label_smoothing < 1,
        f"--label_smoothing must be in [0, 1) (got {r.label_smoothing})",
    )
    for name in ("num_time_masks", "max_time_width", "num_freq_masks", "max_freq_width"):
        value = getattr(r, name)
        _check(value >= 0, f"--{name} must be >= 0 (got {value})")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def base_type(annotation: Any) -> tuple[type, bool]:
    """``(int, True)`` for ``int | None``; ``(int, False)`` for ``int``."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        return non_none[0], True
    return annotation, False


def _check_types(r: Any) -> None:
    for name, annotation in field_types(type(r)).items():
        value = getattr(r, name)
        base, optional = base_type(annotation)
        if value is None:
            _check(optional, f"--{name} must be set (got None)")
            continue
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(r, name, float(value))  # JSON writes 1.0 as 1; accept it
            continue
        ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
        _check(ok, f"--{name} must be of type {base.__name__} (got {value!r})")
