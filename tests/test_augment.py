"""SpecAugment and Mixup in each backend on its own: mask placement, identities, jit, draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jax_impl import augment as jaug
from shared_data.training.recipe import SpecAugmentSpec
from torch_ref import augment as taug


def _jax_draws(fs, fw, ts, tw):
    return jaug.SpecAugmentDraws(*(jnp.asarray(v, jnp.int32) for v in (fs, fw, ts, tw)))


def _torch_draws(fs, fw, ts, tw):
    return taug.SpecAugmentDraws(*(torch.as_tensor(v, dtype=torch.int64) for v in (fs, fw, ts, tw)))


def _expected(x_hw: np.ndarray, fs, fw, ts, tw, fill) -> np.ndarray:
    """Reference by loops: x_hw [B, H, W]."""
    out = x_hw.copy()
    for b in range(x_hw.shape[0]):
        for s, w in zip(fs[b], fw[b], strict=True):
            out[b, s : s + w, :] = fill
        for s, w in zip(ts[b], tw[b], strict=True):
            out[b, :, s : s + w] = fill
    return out


MASKS = ([[3, 10], [0, 0]], [[2, 4], [5, 0]], [[7], [12]], [[1], [4]])  # fs, fw, ts, tw (B=2)


def test_jax_spec_augment_masks_exactly_the_drawn_rows_and_columns():
    x = np.random.default_rng(0).standard_normal((2, 16, 20, 1)).astype(np.float32)
    got = np.asarray(jaug.apply_spec_augment(jnp.asarray(x), _jax_draws(*MASKS), 0.0))
    np.testing.assert_array_equal(got[..., 0], _expected(x[..., 0], *MASKS, 0.0))
    # Example 1: freq rows 0..4 and time columns 12..15 masked; everything else untouched.
    assert (got[1, 0:5] == 0).all() and (got[1, :, 12:16] == 0).all()
    assert (got[1, 5:, :12] == x[1, 5:, :12]).all()


def test_torch_spec_augment_masks_exactly_the_drawn_rows_and_columns():
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 20)).astype(np.float32)
    got = taug.apply_spec_augment(torch.from_numpy(x), _torch_draws(*MASKS), 1.5).numpy()
    np.testing.assert_array_equal(got[:, 0], _expected(x[:, 0], *MASKS, 1.5))


def test_zero_widths_and_zero_masks_are_identities():
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32)
    zeros = np.zeros((3, 2), np.int64)
    got = jaug.apply_spec_augment(jnp.asarray(x), _jax_draws(zeros + 4, zeros, zeros + 1, zeros))
    np.testing.assert_array_equal(np.asarray(got), x)
    spec = SpecAugmentSpec(num_time_masks=0, num_freq_masks=0)
    got = jaug.spec_augment(jax.random.key(0), jnp.asarray(x), spec)
    np.testing.assert_array_equal(np.asarray(got), x)
    got_t = taug.spec_augment(torch.Generator().manual_seed(0), torch.from_numpy(x), spec)
    np.testing.assert_array_equal(got_t.numpy(), x)


def test_jax_spec_augment_runs_under_jit_and_differs_per_example():
    spec = SpecAugmentSpec(num_time_masks=2, max_time_width=6, num_freq_masks=2, max_freq_width=6)
    x = jnp.ones((16, 32, 24, 1))
    out = jax.jit(jaug.spec_augment, static_argnums=2)(jax.random.key(3), x, spec)
    masked = np.asarray(out[..., 0] == 0)
    assert masked.any() and not masked.all()
    patterns = {m.tobytes() for m in masked}
    assert len(patterns) > 8  # per-example masks, not one mask for the whole batch
    # Masked cells form whole rows/columns: a cell is masked iff its row or its column is.
    rows, cols = masked.all(axis=2), masked.all(axis=1)
    np.testing.assert_array_equal(masked, rows[:, :, None] | cols[:, None, :])


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_draws_stay_inside_the_spectrogram(backend):
    spec = SpecAugmentSpec(num_time_masks=3, max_time_width=20, num_freq_masks=2, max_freq_width=30)
    if backend == "jax":
        d = jaug.draw_spec_augment(jax.random.key(7), spec, 500, n_freq=40, n_time=25)
        d = {k: np.asarray(v) for k, v in d._asdict().items()}
    else:
        d = taug.draw_spec_augment(torch.Generator().manual_seed(7), spec, 500, 40, 25)
        d = {k: v.numpy() for k, v in d._asdict().items()}
    assert d["freq_start"].shape == (500, 2) and d["time_start"].shape == (500, 3)
    assert (d["freq_width"] <= 30).all() and (d["time_width"] <= 20).all()
    assert (d["freq_start"] + d["freq_width"] <= 40).all()
    assert (d["time_start"] + d["time_width"] <= 25).all()
    assert (d["freq_start"] >= 0).all() and (d["time_start"] >= 0).all()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_mask_wider_than_the_axis_is_refused(backend):
    spec = SpecAugmentSpec(max_time_width=200)
    with pytest.raises(ValueError, match="does not fit"):
        if backend == "jax":
            jaug.draw_spec_augment(jax.random.key(0), spec, 2)
        else:
            taug.draw_spec_augment(torch.Generator(), spec, 2)


def test_same_key_same_draws_different_key_different_draws():
    spec = SpecAugmentSpec()
    a = jaug.draw_spec_augment(jax.random.key(1), spec, 8)
    b = jaug.draw_spec_augment(jax.random.key(1), spec, 8)
    c = jaug.draw_spec_augment(jax.random.key(2), spec, 8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c, strict=True))
    ta = taug.draw_mixup(torch.Generator().manual_seed(4), 0.2, 8)
    tb = taug.draw_mixup(torch.Generator().manual_seed(4), 0.2, 8)
    assert float(ta.lam) == float(tb.lam) and torch.equal(ta.perm, tb.perm)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_mixup_mixes_inputs_and_targets_with_one_lambda(backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    perm = np.array([2, 0, 1, 3])
    lam = 0.25
    if backend == "jax":
        t = jaug.one_hot_targets(jnp.asarray(labels), 3)
        mx, mt = jaug.apply_mixup(
            jnp.asarray(x), t, jaug.MixupDraws(jnp.float32(lam), jnp.asarray(perm))
        )
    else:
        t = taug.one_hot_targets(torch.from_numpy(labels), 3)
        mx, mt = taug.apply_mixup(
            torch.from_numpy(x), t, taug.MixupDraws(torch.tensor(lam), torch.from_numpy(perm))
        )
    mx, mt = np.asarray(mx), np.asarray(mt)
    np.testing.assert_allclose(mx, lam * x + (1 - lam) * x[perm], rtol=1e-6)
    np.testing.assert_allclose(mt[0], [0.25, 0.0, 0.75])  # label 0 mixed with label 2
    np.testing.assert_allclose(mt[3], [0.0, 1.0, 0.0])  # mixed with itself
    np.testing.assert_allclose(mt.sum(axis=1), 1.0, rtol=1e-6)


def test_mixup_with_lambda_one_is_the_identity():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((5, 4, 4, 1)), jnp.float32)
    t = jaug.one_hot_targets(jnp.arange(5) % 3, 3)
    d = jaug.MixupDraws(jnp.float32(1.0), jnp.asarray([4, 3, 2, 1, 0]))
    mx, mt = jax.jit(jaug.apply_mixup)(x, t, d)
    np.testing.assert_array_equal(np.asarray(mx), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(mt), np.asarray(t))


def test_jax_draw_mixup_runs_under_jit():
    d = jax.jit(jaug.draw_mixup, static_argnums=(1, 2))(jax.random.key(0), 0.4, 16)
    assert d.lam.dtype == jnp.float32 and 0 <= float(d.lam) <= 1
    np.testing.assert_array_equal(np.sort(np.asarray(d.perm)), np.arange(16))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_label_smoothing_targets(backend):
    if backend == "jax":
        t = np.asarray(jaug.one_hot_targets(jnp.asarray([1, 0]), 4, 0.2))
    else:
        t = taug.one_hot_targets(torch.tensor([1, 0]), 4, 0.2).numpy()
    np.testing.assert_allclose(t[0], [0.05, 0.85, 0.05, 0.05], rtol=1e-6)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
    assert t.dtype == np.float32


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_mixup_alpha_must_be_positive(backend):
    with pytest.raises(ValueError, match="alpha"):
        if backend == "jax":
            jaug.draw_mixup(jax.random.key(0), 0.0, 4)
        else:
            taug.draw_mixup(torch.Generator(), 0.0, 4)


def test_training_accuracy_under_mixup_credits_both_labels():
    """Example i is lam of clip i and 1 - lam of clip perm[i]: the prediction earns lam for
    label i and 1 - lam for label perm[i]; both backends agree; no Mixup = plain argmax hits."""
    from jax_impl.train_step import credited_correct as jax_credited
    from torch_ref.train_step import credited_correct as torch_credited

    logits = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]], np.float32)  # preds 0,1,2,0
    lam = 0.7
    cases = [
        # labels, perm -> own hits at 0 and 2; partners' labels [2,0,1,2] give no hit
        ([0, 2, 2, 1], [1, 0, 3, 2], 2 * lam),
        # own hits at 2 and 3; partners' labels [0,2,1,0] hit at 0 and 3
        ([1, 0, 2, 0], [3, 2, 0, 1], 2 * lam + 2 * (1 - lam)),
    ]
    for labels, perm, expected in cases:
        labels, perm = np.array(labels), np.array(perm)
        jd = jaug.MixupDraws(jnp.float32(lam), jnp.asarray(perm))
        td = taug.MixupDraws(torch.tensor(lam), torch.as_tensor(perm))
        got_jax = float(jax_credited(jnp.asarray(logits), jnp.asarray(labels), jd))
        got_torch = float(torch_credited(torch.from_numpy(logits), torch.from_numpy(labels), td))
        assert got_jax == pytest.approx(expected) and got_torch == pytest.approx(expected)
    labels = np.array([0, 2, 2, 1])
    assert float(jax_credited(jnp.asarray(logits), jnp.asarray(labels), None)) == 2.0
    assert float(torch_credited(torch.from_numpy(logits), torch.from_numpy(labels), None)) == 2.0
