"""SpecAugment and Mixup as pure, jit-compatible functions with injectable draws (NHWC batches).

API (mirrored name for name by ``torch_ref.augment``)::

    spec = recipe.spec_augment()                               # SpecAugmentSpec (static, hashable)
    d = draw_spec_augment(key, spec, batch_size, n_freq=128, n_time=128)   # SpecAugmentDraws
    x = apply_spec_augment(x, d, fill_value=spec.fill_value)  # x: float [B, H=mel, W=time, C]
    m = draw_mixup(key, alpha, batch_size)                     # MixupDraws(lam [], perm [B])
    perm = micro_batch_permutation(m.perm, micro_batches)      # partners within micro-batches
    x, targets = apply_mixup(x, targets, m)                    # targets: float32 [B, num_classes]
    targets = one_hot_targets(labels, num_classes, label_smoothing)

Draws are NamedTuples of arrays (pytrees), so they pass through ``jax.jit`` and can be built by
hand in tests. Nothing here uses Python-side randomness or data-dependent shapes: masks are iota
comparisons, so the functions run inside the jitted train step on the device.

Distributions (per example, per mask; the same in both backends):
    width ~ Uniform{0, ..., max_width};  start ~ Uniform{0, ..., size - width}
    lam ~ Beta(alpha, alpha) once per batch;  perm ~ uniform random permutation of the batch.
Masks of one axis may overlap; a cell is masked if any frequency or any time mask covers it.

Numerics: SpecAugment is a select, bit-identical to torch's for the same draws. Mixup is
``lam * a + (1 - lam) * b`` with each product rounded, as torch and op-by-op JAX compute it; inside
``jax.jit`` XLA contracts one product and the sum into a fused multiply-add (one rounding fewer; the
CPU pipeline drops ``optimization_barrier``, so this cannot be prevented from here), which moves a
jitted mix by at most one float32 ulp from torch's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from shared_data.training.recipe import SpecAugmentSpec


class SpecAugmentDraws(NamedTuple):
    """Mask positions, int32 ``[B, num_masks]`` each; a mask covers ``[start, start + width)``."""

    freq_start: jax.Array
    freq_width: jax.Array
    time_start: jax.Array
    time_width: jax.Array


class MixupDraws(NamedTuple):
    """``lam``: float32 scalar mixing weight; ``perm``: int32 ``[B]`` partner of each example."""

    lam: jax.Array
    perm: jax.Array


def _draw_masks(key: jax.Array, batch_size: int, count: int, max_width: int, size: int):
    if count > 0 and max_width > size:
        raise ValueError(f"mask width up to {max_width} does not fit an axis of {size}")
    width_key, start_key = jax.random.split(key)
    width = jax.random.randint(width_key, (batch_size, count), 0, max_width + 1, dtype=jnp.int32)
    # randint takes an array maxval: start uniform on {0, ..., size - width} for each width.
    start = jax.random.randint(start_key, (batch_size, count), 0, size - width + 1, jnp.int32)
    return start, width


def draw_spec_augment(
    key: jax.Array, spec: SpecAugmentSpec, batch_size: int, n_freq: int = 128, n_time: int = 128
) -> SpecAugmentDraws:
    """Draw every mask of a batch of ``batch_size`` spectrograms ``[n_freq, n_time]``."""
    freq_key, time_key = jax.random.split(key)
    freq_start, freq_width = _draw_masks(
        freq_key, batch_size, spec.num_freq_masks, spec.max_freq_width, n_freq
    )
    time_start, time_width = _draw_masks(
        time_key, batch_size, spec.num_time_masks, spec.max_time_width, n_time
    )
    return SpecAugmentDraws(freq_start, freq_width, time_start, time_width)


def _axis_mask(start: jax.Array, width: jax.Array, size: int) -> jax.Array:
    """bool ``[B, size]``: True where any of the ``[B, n]`` masks covers the position."""
    pos = jax.lax.broadcasted_iota(jnp.int32, (1, 1, size), 2)
    covered = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return jnp.any(covered, axis=1)


def apply_spec_augment(x: jax.Array, draws: SpecAugmentDraws, fill_value: float = 0.0) -> jax.Array:
    """Write ``fill_value`` into the masked mel rows (H) and time columns (W) of NHWC ``x``.

    Args:
        x: ``[B, H (mel), W (time), C]``, normalised (so 0.0 is the dataset mean).
        draws: from :func:`draw_spec_augment` with ``n_freq=H``, ``n_time=W``.
    Returns:
        ``x``'s shape and dtype.
    """
    _, height, width, _ = x.shape
    freq = _axis_mask(draws.freq_start, draws.freq_width, height)  # [B, H]
    time = _axis_mask(draws.time_start, draws.time_width, width)  # [B, W]
    mask = freq[:, :, None, None] | time[:, None, :, None]
    return jnp.where(mask, jnp.asarray(fill_value, x.dtype), x)


def spec_augment(key: jax.Array, x: jax.Array, spec: SpecAugmentSpec) -> jax.Array:
    """Draw and apply SpecAugment to NHWC ``x`` in one call."""
    draws = draw_spec_augment(key, spec, x.shape[0], n_freq=x.shape[1], n_time=x.shape[2])
    return apply_spec_augment(x, draws, spec.fill_value)


def draw_mixup(key: jax.Array, alpha: float, batch_size: int) -> MixupDraws:
    """``lam ~ Beta(alpha, alpha)`` (float32 scalar) and a uniform permutation (int32 ``[B]``)."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam_key, perm_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, alpha, alpha, dtype=jnp.float32)
    perm = jax.random.permutation(perm_key, batch_size).astype(jnp.int32)
    return MixupDraws(lam, perm)


def micro_batch_permutation(perm: jax.Array, micro_batches: int) -> jax.Array:
    """Partners within micro-batches: ``perm`` int ``[B]`` (a uniform permutation) turned into one
    that maps each block of ``B / micro_batches`` contiguous rows onto itself.

    Block j's partners follow the order of ``perm``'s values in that block (their ranks), which is
    a uniform permutation of the block, independent across blocks; with one block it is ``perm``
    itself, so the one-pass step keeps its draws. Returns int ``[B]``, ``perm``'s dtype.
    """
    b = perm.shape[0]
    size = b // micro_batches
    blocks = perm.reshape(micro_batches, size)
    ranks = jnp.argsort(jnp.argsort(blocks, axis=1), axis=1)
    offsets = jnp.arange(micro_batches, dtype=ranks.dtype)[:, None] * size
    return (ranks + offsets).reshape(b).astype(perm.dtype)


def apply_mixup(x: jax.Array, targets: jax.Array, draws: MixupDraws) -> tuple[jax.Array, jax.Array]:
    """Mix every example with its partner ``perm[i]``: ``lam * a + (1 - lam) * b``.

    Args:
        x: ``[B, ...]`` inputs (any layout; the batch axis is first).
        targets: float ``[B, num_classes]`` (one-hot or smoothed).
    Returns:
        mixed ``x`` and mixed ``targets``, same shapes and dtypes.
    """
    lam_x = draws.lam.astype(x.dtype)
    lam_t = draws.lam.astype(targets.dtype)
    mixed_x = lam_x * x + (1 - lam_x) * x[draws.perm]
    mixed_t = lam_t * targets + (1 - lam_t) * targets[draws.perm]
    return mixed_x, mixed_t


def one_hot_targets(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
    """float32 ``[B, num_classes]``: ``(1 - s) * one_hot + s / num_classes``."""
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if label_smoothing == 0:
        return one_hot
    return one_hot * (1 - label_smoothing) + label_smoothing / num_classes
