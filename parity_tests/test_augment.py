"""SpecAugment and Mixup across backends: identical outputs for injected draws, and the draws'
distributions as specified (KS tests at fixed seeds, so the p-values are fixed numbers, not flaky).

Integer draws are made continuous for KS by adding independent U(0, 1) jitter: if
``w ~ Uniform{0..W}`` then ``w + u ~ Uniform[0, W + 1)`` exactly, and
``(start + u) / (size - w + 1) ~ Uniform[0, 1)`` exactly when ``start | w ~ Uniform{0..size - w}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch

from jax_impl import augment as jaug
from shared_data.training.recipe import SpecAugmentSpec
from torch_ref import augment as taug

B, H, W, C = 6, 128, 128, 1
NUM_CLASSES = 10


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(0, 2, 3, 1)


def _random_spec_draws(rng: np.random.Generator, nf: int, nt: int) -> dict[str, np.ndarray]:
    fw = rng.integers(0, 40, (B, nf))
    tw = rng.integers(0, 40, (B, nt))
    return {
        "freq_start": rng.integers(0, H - fw + 1),
        "freq_width": fw,
        "time_start": rng.integers(0, W - tw + 1),
        "time_width": tw,
    }


@pytest.mark.parametrize("nf,nt", [(2, 2), (0, 3), (1, 0)])
def test_spec_augment_identical_for_injected_draws(nf, nt):
    rng = np.random.default_rng(nf * 10 + nt)
    x = rng.standard_normal((B, H, W, C)).astype(np.float32)
    draws = _random_spec_draws(rng, nf, nt)
    jdraws = jaug.SpecAugmentDraws(**{k: jnp.asarray(v, jnp.int32) for k, v in draws.items()})
    tdraws = taug.SpecAugmentDraws(**{k: torch.from_numpy(v) for k, v in draws.items()})
    got_jax = np.asarray(jax.jit(jaug.apply_spec_augment)(jnp.asarray(x), jdraws, -0.5))
    got_torch = _nhwc(taug.apply_spec_augment(_nchw(x), tdraws, -0.5))
    np.testing.assert_array_equal(got_jax, got_torch)
    # Not vacuous: the masks changed cells whenever any width is positive.
    if draws["freq_width"].sum() + draws["time_width"].sum() > 0:
        assert (got_jax != x).any()


def test_spec_augment_channels_last_torch_input():
    """torch's channels_last memory format (the training layout) gives the same values."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, H, W, C)).astype(np.float32)
    draws = _random_spec_draws(rng, 2, 2)
    tdraws = taug.SpecAugmentDraws(**{k: torch.from_numpy(v) for k, v in draws.items()})
    dense = taug.apply_spec_augment(_nchw(x), tdraws)
    cl = taug.apply_spec_augment(_nchw(x).to(memory_format=torch.channels_last), tdraws)
    np.testing.assert_array_equal(dense.numpy(), cl.numpy())


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.123456789, 0.999, 1.0])
def test_mixup_identical_for_injected_draws(lam):
    rng = np.random.default_rng(int(lam * 1e6))
    x = rng.standard_normal((B, H, W, C)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, B)
    perm = rng.permutation(B)
    jt = jaug.one_hot_targets(jnp.asarray(labels), NUM_CLASSES, 0.1)
    tt = taug.one_hot_targets(torch.from_numpy(labels), NUM_CLASSES, 0.1)
    np.testing.assert_array_equal(np.asarray(jt), tt.numpy())
    jd = jaug.MixupDraws(jnp.float32(lam), jnp.asarray(perm, jnp.int32))
    td = taug.MixupDraws(torch.tensor(lam, dtype=torch.float32), torch.from_numpy(perm))
    tx, tt_mixed = taug.apply_mixup(_nchw(x), tt, td)
    # Op by op (each product rounded) the two are bit-identical.
    jx, jt_mixed = jaug.apply_mixup(jnp.asarray(x), jt, jd)
    np.testing.assert_array_equal(np.asarray(jx), _nhwc(tx))
    np.testing.assert_array_equal(np.asarray(jt_mixed), tt_mixed.numpy())
    # Under jit XLA fuses one product into an FMA, skipping that product's rounding: the results
    # differ by at most one rounding of the terms, eps * (|lam a| + |(1 - lam) b|) (module doc).
    jx_jit, jt_jit = jax.jit(jaug.apply_mixup)(jnp.asarray(x), jt, jd)
    for got, want, a in ((jx_jit, _nhwc(tx), x), (jt_jit, tt_mixed.numpy(), np.asarray(jt))):
        lam32 = np.float32(lam)
        bound = np.finfo(np.float32).eps * (np.abs(lam32 * a) + np.abs((1 - lam32) * a[perm]))
        assert (np.abs(np.asarray(got) - want) <= bound).all()


# --- distributions of the draws ------------------------------------------------------------------

SPEC = SpecAugmentSpec(num_time_masks=3, max_time_width=20, num_freq_masks=2, max_freq_width=27)
N_DRAW = 4000


def _jax_spec_draws():
    d = jax.jit(jaug.draw_spec_augment, static_argnums=(1, 2))(jax.random.key(0), SPEC, N_DRAW)
    return {k: np.asarray(v) for k, v in d._asdict().items()}


def _torch_spec_draws():
    g = torch.Generator().manual_seed(0)
    d = taug.draw_spec_augment(g, SPEC, N_DRAW)
    return {k: v.numpy() for k, v in d._asdict().items()}


@pytest.mark.parametrize("draw", [_jax_spec_draws, _torch_spec_draws], ids=["jax", "torch"])
def test_spec_augment_draw_distributions(draw):
    d = draw()
    jitter = np.random.default_rng(123)
    assert d["freq_width"].shape == (N_DRAW, SPEC.num_freq_masks)
    assert d["time_width"].shape == (N_DRAW, SPEC.num_time_masks)
    for axis, max_w, size in (("freq", SPEC.max_freq_width, H), ("time", SPEC.max_time_width, W)):
        w, s = d[f"{axis}_width"].ravel(), d[f"{axis}_start"].ravel()
        assert w.min() == 0 and w.max() == max_w  # both ends of the support occur
        assert (s >= 0).all() and (s + w <= size).all()
        widths = w + jitter.random(w.shape)
        p_w = scipy.stats.kstest(widths, scipy.stats.uniform(0, max_w + 1).cdf).pvalue
        starts = (s + jitter.random(s.shape)) / (size - w + 1)
        p_s = scipy.stats.kstest(starts, scipy.stats.uniform(0, 1).cdf).pvalue
        assert p_w > 0.01, (axis, "width", p_w)
        assert p_s > 0.01, (axis, "start", p_s)
    # Masks are independent across examples and mask slots: neighbours are uncorrelated.
    fw = d["freq_width"].astype(float)
    assert abs(np.corrcoef(fw[:, 0], fw[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(fw[:-1, 0], fw[1:, 0])[0, 1]) < 0.05


def test_ks_detects_a_wrong_width_distribution():
    """The KS check above can fail: widths from {0..W-1} (an off-by-one) are rejected."""
    rng = np.random.default_rng(0)
    w = rng.integers(0, 27, N_DRAW * 2)  # max 26 instead of 27
    p = scipy.stats.kstest(w + rng.random(w.shape), scipy.stats.uniform(0, 28).cdf).pvalue
    assert p < 0.01


N_LAM = 1500


def _jax_mixup_draws(alpha):
    keys = jax.random.split(jax.random.key(1), N_LAM)
    d = jax.jit(jax.vmap(lambda k: jaug.draw_mixup(k, alpha, 8)))(keys)
    return np.asarray(d.lam, np.float64), np.asarray(d.perm)


def _torch_mixup_draws(alpha):
    g = torch.Generator().manual_seed(1)
    draws = [taug.draw_mixup(g, alpha, 8) for _ in range(N_LAM)]
    return (
        np.array([float(d.lam) for d in draws]),
        np.stack([d.perm.numpy() for d in draws]),
    )


@pytest.mark.parametrize("alpha", [0.2, 1.0])
@pytest.mark.parametrize("draw", [_jax_mixup_draws, _torch_mixup_draws], ids=["jax", "torch"])
def test_mixup_draw_distributions(draw, alpha):
    lam, perm = draw(alpha)
    assert ((lam >= 0) & (lam <= 1)).all()
    p_lam = scipy.stats.kstest(lam, scipy.stats.beta(alpha, alpha).cdf).pvalue
    assert p_lam > 0.01, p_lam
    np.testing.assert_array_equal(np.sort(perm, axis=1), np.tile(np.arange(8), (N_LAM, 1)))
    # Every position receives every partner equally often (chi-square over the 8 x 8 table).
    counts = np.stack([np.bincount(perm[:, i], minlength=8) for i in range(8)])
    p_perm = scipy.stats.chisquare(counts.ravel()).pvalue
    assert p_perm > 0.01, p_perm
