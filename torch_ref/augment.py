"""SpecAugment and Mixup as pure functions with injectable draws (NCHW batches).

API (mirrors ``jax_impl.augment`` name for name)::

    spec = recipe.spec_augment()
    g = torch.Generator().manual_seed(seed)                       # one per (seed, epoch, step)
    d = draw_spec_augment(g, spec, batch_size, n_freq=128, n_time=128)   # SpecAugmentDraws
    x = apply_spec_augment(x, d, fill_value=spec.fill_value)   # x: float [B, C, H=mel, W=time]
    m = draw_mixup(g, alpha, batch_size)                        # MixupDraws(lam [], perm [B])
    perm = micro_batch_permutation(m.perm, micro_batches)       # partners within micro-batches
    x, targets = apply_mixup(x, targets, m)                     # targets: float32 [B, num_classes]
    targets = one_hot_targets(labels, num_classes, label_smoothing)

Draws are made on the CPU from the given ``torch.Generator`` (so they derive from the seed and
not from the global RNG) and are moved to ``x``'s device by ``apply_*``. Distributions:
``width ~ Uniform{0..max_width}``, ``start ~ Uniform{0..size - width}``,
``lam ~ Beta(alpha, alpha)`` per batch, ``perm`` a uniform permutation.
``torch.distributions.Beta`` cannot take a generator, so ``lam`` is drawn by inverting Beta's CDF
(``scipy.special.betaincinv``) at a uniform draw of the generator: exact in distribution and
reproducible from the seed.
"""

from __future__ import annotations

from typing import NamedTuple

import scipy.special
import torch

from shared_data.training.recipe import SpecAugmentSpec


class SpecAugmentDraws(NamedTuple):
    """Mask positions, int64 ``[B, num_masks]`` each; a mask covers ``[start, start + width)``."""

    freq_start: torch.Tensor
    freq_width: torch.Tensor
    time_start: torch.Tensor
    time_width: torch.Tensor


class MixupDraws(NamedTuple):
    """``lam``: float32 scalar tensor; ``perm``: int64 ``[B]`` partner of each example."""

    lam: torch.Tensor
    perm: torch.Tensor


def _draw_masks(
    generator: torch.Generator, batch_size: int, count: int, max_width: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if count > 0 and max_width > size:
        raise ValueError(f"mask width up to {max_width} does not fit an axis of {size}")
    width = torch.randint(0, max_width + 1, (batch_size, count), generator=generator)
    # torch.randint has no per-element upper bound; floor(u * n) with float64 u is uniform on
    # {0..n-1} to within 2**-53, and the clamp guards the u * n == n rounding edge.
    positions = size - width + 1
    u = torch.rand((batch_size, count), generator=generator, dtype=torch.float64)
    start = torch.minimum((u * positions).floor().long(), positions - 1)
    return start, width


def draw_spec_augment(
    generator: torch.Generator,
    spec: SpecAugmentSpec,
    batch_size: int,
    n_freq: int = 128,
    n_time: int = 128,
) -> SpecAugmentDraws:
    """Draw every mask of a batch of ``batch_size`` spectrograms ``[n_freq, n_time]``."""
    freq_start, freq_width = _draw_masks(
        generator, batch_size, spec.num_freq_masks, spec.max_freq_width, n_freq
    )
    time_start, time_width = _draw_masks(
        generator, batch_size, spec.num_time_masks, spec.max_time_width, n_time
    )
    return SpecAugmentDraws(freq_start, freq_width, time_start, time_width)


def _axis_mask(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """bool ``[B, size]``: True where any of the ``[B, n]`` masks covers the position."""
    pos = torch.arange(size, device=start.device).view(1, 1, size)
    covered = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return covered.any(dim=1)


def apply_spec_augment(
    x: torch.Tensor, draws: SpecAugmentDraws, fill_value: float = 0.0
) -> torch.Tensor:
    """Write ``fill_value`` into the masked mel rows (H) and time columns (W) of NCHW ``x``.

    Args:
        x: ``[B, C, H (mel), W (time)]``, normalised (so 0.0 is the dataset mean).
        draws: from :func:`draw_spec_augment` with ``n_freq=H``, ``n_time=W``.
    Returns:
        a new tensor of ``x``'s shape, dtype and memory format.
    """
    height, width = x.shape[2], x.shape[3]
    draws = SpecAugmentDraws(*(t.to(x.device) for t in draws))
    freq = _axis_mask(draws.freq_start, draws.freq_width, height)  # [B, H]
    time = _axis_mask(draws.time_start, draws.time_width, width)  # [B, W]
    mask = freq[:, None, :, None] | time[:, None, None, :]
    return torch.where(mask, torch.tensor(fill_value, dtype=x.dtype, device=x.device), x)


def spec_augment(
    generator: torch.Generator, x: torch.Tensor, spec: SpecAugmentSpec
) -> torch.Tensor:
    """Draw and apply SpecAugment to NCHW ``x`` in one call."""
    draws = draw_spec_augment(generator, spec, x.shape[0], n_freq=x.shape[2], n_time=x.shape[3])
    return apply_spec_augment(x, draws, spec.fill_value)


def draw_mixup(generator: torch.Generator, alpha: float, batch_size: int) -> MixupDraws:
    """``lam ~ Beta(alpha, alpha)`` (float32 scalar) and a uniform permutation (int64 ``[B]``)."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    lam = torch.tensor(scipy.special.betaincinv(alpha, alpha, u), dtype=torch.float32)
    perm = torch.randperm(batch_size, generator=generator)
    return MixupDraws(lam, perm)


def micro_batch_permutation(perm: torch.Tensor, micro_batches: int) -> torch.Tensor:
    """Partners within micro-batches: ``perm`` int ``[B]`` turned into a permutation that maps each
    block of ``B / micro_batches`` contiguous rows onto itself, by the ranks of ``perm``'s values in
    the block (the mirror of ``jax_impl.augment.micro_batch_permutation``, which says why)."""
    b = perm.shape[0]
    size = b // micro_batches
    blocks = perm.reshape(micro_batches, size)
    ranks = torch.argsort(torch.argsort(blocks, dim=1), dim=1)
    offsets = torch.arange(micro_batches, dtype=ranks.dtype, device=perm.device)[:, None] * size
    return (ranks + offsets).reshape(b).to(perm.dtype)


def apply_mixup(
    x: torch.Tensor, targets: torch.Tensor, draws: MixupDraws
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every example with its partner ``perm[i]``: ``lam * a + (1 - lam) * b``.

    Args:
        x: ``[B, ...]`` inputs (the batch axis is first).
        targets: float ``[B, num_classes]`` (one-hot or smoothed).
    Returns:
        mixed ``x`` and mixed ``targets``, same shapes and dtypes.
    """
    perm = draws.perm.to(x.device)
    lam_x = draws.lam.to(device=x.device, dtype=x.dtype)
    lam_t = draws.lam.to(device=targets.device, dtype=targets.dtype)
    mixed_x = lam_x * x + (1 - lam_x) * x[perm]
    mixed_t = lam_t * targets + (1 - lam_t) * targets[perm.to(targets.device)]
    return mixed_x, mixed_t


def one_hot_targets(
    labels: torch.Tensor, num_classes: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """float32 ``[B, num_classes]``: ``(1 - s) * one_hot + s / num_classes``."""
    one_hot = torch.nn.functional.one_hot(labels.long(), num_classes).float()
    if label_smoothing == 0:
        return one_hot
    return one_hot * (1 - label_smoothing) + label_smoothing / num_classes
