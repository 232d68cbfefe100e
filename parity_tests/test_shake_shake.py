"""Shake-shake's defining property, in both backends: the forward pass mixes the two branches
with alpha, the backward pass with an independent beta, evaluation with 0.5.

Cross-backend logits/gradients with injected draws are in ``parity_tests/test_models.py``; here
each backend is checked against the definition itself (shared numpy references, the same draws).
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl.models.shake_shake as jss
import torch_ref.models.shake_shake as tss
from jax_impl.models.registry import ModelError as JaxModelError
from torch_ref.models.registry import ModelError as TorchModelError

BATCH = 2
SIZE = 32  # the smallest spatial size the models promise
NUM_BLOCKS = 12  # shake_shake26_2x96d: 3 x 4 blocks (the resnext variant shares the code)


def _mix_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    a, b, g = (rng.standard_normal((4, 3, 5, 6)).astype(np.float32) for _ in range(3))
    alpha, beta = rng.random(4, dtype=np.float32), rng.random(4, dtype=np.float32)
    return a, b, g, alpha, beta


def _per_image(v: np.ndarray) -> np.ndarray:
    return v[:, None, None, None]


def _torch_mix(a, b, g, alpha, beta):
    ta, tb = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
    out = tss.shake_mix(ta, tb, torch.from_numpy(alpha), torch.from_numpy(beta))
    out.backward(torch.from_numpy(g))
    return out.detach().numpy(), ta.grad.numpy(), tb.grad.numpy()


def _jax_mix(a, b, g, alpha, beta):
    out, vjp = jax.vjp(jss.shake_mix, *map(jnp.asarray, (a, b, alpha, beta)))
    ga, gb, galpha, gbeta = vjp(jnp.asarray(g))
    # The draws are not trained: their cotangents are zero.
    np.testing.assert_array_equal(np.asarray(galpha), 0.0)
    np.testing.assert_array_equal(np.asarray(gbeta), 0.0)
    return np.asarray(out), np.asarray(ga), np.asarray(gb)


@pytest.mark.parametrize("mix", [_torch_mix, _jax_mix], ids=["torch", "jax"])
def test_shake_mix_forward_uses_alpha_and_gradient_uses_beta(mix):
    a, b, g, alpha, beta = _mix_inputs()
    out, ga, gb = mix(a, b, g, alpha, beta)
    al, be = _per_image(alpha), _per_image(beta)
    # Forward: the alpha mix (a tolerance only for a fused multiply-add's rounding).
    np.testing.assert_allclose(out, al * a + (1 - al) * b, rtol=1e-6, atol=1e-7)
    # Backward: exactly the beta mix of the incoming gradient, not the alpha one.
    np.testing.assert_array_equal(ga, be * g)
    np.testing.assert_array_equal(gb, (1 - be) * g)
    assert not np.allclose(ga, al * g, rtol=1e-3)


# --- whole models: forward depends on alpha only, gradients on beta too ---------------------


def _draws(alpha_seed: int, beta_seed: int) -> dict[str, np.ndarray]:
    """Draws whose alphas come from one seed and betas from another (``[NUM_BLOCKS, BATCH]``)."""
    blocks = SimpleNamespace(num_shake_blocks=NUM_BLOCKS)
    return {
        "alpha": tss.parity_draws(blocks, BATCH, alpha_seed)["alpha"],
        "beta": tss.parity_draws(blocks, BATCH, beta_seed)["beta"],
    }


HALF = {k: np.full((NUM_BLOCKS, BATCH), 0.5, np.float32) for k in ("alpha", "beta")}


def _input(seed: int = 0) -> np.ndarray:
    """NCHW float32 ``[BATCH, 1, SIZE, SIZE]``."""
    return np.random.default_rng(seed).standard_normal((BATCH, 1, SIZE, SIZE)).astype(np.float32)


def _torch_logits_and_grads(model, x, draws, with_grads=True):
    if not with_grads:
        with torch.no_grad():
            return model(torch.from_numpy(x), draws=draws).numpy(), None
    model.zero_grad()
    logits = model(torch.from_numpy(x), draws=draws)
    (logits * torch.arange(1.0, 11.0)).sum().backward()
    grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    return logits.detach().numpy(), grads


def _jax_step(model):
    """Jitted ``(x NCHW, draws) -> (logits, grads)`` of a train-mode model's weighted logit sum."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def step(x, draws):
        def loss(p):
            # Rebuilding the BN statistics inside this trace lets train-mode BN write to them.
            m = nnx.merge(graphdef, p, jax.tree.map(lambda v: v, rest))
            logits = m(x, draws=draws)
            return (logits * jnp.arange(1.0, 11.0)).sum(), logits

        grads, logits = jax.grad(loss, has_aux=True)(params)
        return logits, {".".join(map(str, k)): v[...] for k, v in nnx.to_flat_state(grads)}

    # One compiled function serves every call; ``with_grads`` only matters to torch's cost.
    return lambda x, draws, with_grads=True: step(jnp.asarray(x.transpose(0, 2, 3, 1)), draws)


@pytest.fixture(scope="module")
def torch_step():
    torch.manual_seed(0)
    model = tss.shake_shake26_2x96d(10).train()
    return lambda x, draws, with_grads=True: _torch_logits_and_grads(model, x, draws, with_grads)


@pytest.fixture(scope="module")
def jax_step():
    return _jax_step(jss.shake_shake26_2x96d(10, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_model_forward_ignores_beta_and_gradients_follow_it(backend, request):
    step = request.getfixturevalue(f"{backend}_step")
    x = _input()
    logits1, grads1 = step(x, _draws(alpha_seed=1, beta_seed=2))
    logits2, grads2 = step(x, _draws(alpha_seed=1, beta_seed=3))
    logits3, _ = step(x, _draws(alpha_seed=4, beta_seed=2), with_grads=False)
    # beta never reaches the forward pass: bitwise-identical logits.
    np.testing.assert_array_equal(np.asarray(logits1), np.asarray(logits2))
    # ...but it reaches every gradient below the head; alpha reaches the logits.
    changed = [k for k in grads1 if not np.allclose(grads1[k], grads2[k], rtol=1e-3, atol=0)]
    stem = "conv1.weight" if backend == "torch" else "conv1.kernel"
    assert stem in changed and len(changed) > 0.9 * len(grads1)
    assert np.abs(np.asarray(logits1) - np.asarray(logits3)).max() > 1e-3


# --- evaluation mixes with 0.5 ------------------------------------------------------------------


def test_torch_eval_is_the_half_mix_and_ignores_draws():
    torch.manual_seed(0)
    model = tss.shake_shake26_2x96d(10)
    x = torch.from_numpy(_input())
    with torch.no_grad():
        model.eval()
        evaluated = model(x)
        np.testing.assert_array_equal(model(x, draws=_draws(1, 2)).numpy(), evaluated.numpy())
        # Training-mode mixing with alpha = 0.5 and BN on running statistics is evaluation.
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        np.testing.assert_allclose(model(x, draws=HALF).numpy(), evaluated.numpy(), rtol=1e-6)


def test_jax_eval_is_the_half_mix_and_ignores_key():
    model = jss.shake_shake26_2x96d(10, rngs=nnx.Rngs(0))
    x = jnp.asarray(_input().transpose(0, 2, 3, 1))
    evaluated = nnx.view(model, use_running_average=True, deterministic=True)
    expected = evaluated(x)
    np.testing.assert_array_equal(np.asarray(evaluated(x, key=jax.random.key(3))), expected)
    running_stats_only = nnx.view(model, use_running_average=True)
    np.testing.assert_allclose(running_stats_only(x, draws=HALF), expected, rtol=1e-6)


# --- where the draws come from ------------------------------------------------------------------


def test_torch_draws_come_from_the_global_rng():
    torch.manual_seed(0)
    model = tss.shake_shake26_2x96d(10).train()
    x = torch.from_numpy(_input())
    with torch.no_grad():
        torch.manual_seed(7)
        implicit = model(x)
        torch.manual_seed(7)
        u = torch.rand(2, NUM_BLOCKS, BATCH)
        drawn = {"alpha": u[0], "beta": u[1]}
        np.testing.assert_array_equal(model(x, draws=drawn).numpy(), implicit.numpy())


def test_jax_draws_come_from_the_key():
    model = jss.shake_shake26_2x96d(10, rngs=nnx.Rngs(0))
    x = jnp.asarray(_input().transpose(0, 2, 3, 1))
    key = jax.random.key(7)
    u = jax.random.uniform(key, (2, NUM_BLOCKS, BATCH))
    drawn = {"alpha": u[0], "beta": u[1]}
    # Each call updates BN statistics; logits depend only on batch statistics in training mode.
    np.testing.assert_array_equal(np.asarray(model(x, key=key)), np.asarray(model(x, draws=drawn)))


def test_training_without_draws_or_key_and_malformed_draws_are_model_errors():
    x = _input()
    short = {k: v[:11] for k, v in _draws(1, 2).items()}
    expected = r"draws \{'alpha': \[12, 2\], 'beta': \[12, 2\]\}"
    jax_model = jss.shake_shake26_2x96d(10, rngs=nnx.Rngs(0))
    with pytest.raises(JaxModelError, match="key="):
        jax_model(jnp.asarray(x.transpose(0, 2, 3, 1)))
    with pytest.raises(JaxModelError, match=expected):
        jax_model(jnp.asarray(x.transpose(0, 2, 3, 1)), draws=short)
    torch_model = tss.shake_shake26_2x96d(10).train()
    with pytest.raises(TorchModelError, match=expected):
        torch_model(torch.from_numpy(x), draws={"alpha": _draws(1, 2)["alpha"]})


def test_parity_draws_are_the_same_numbers_in_both_backends():
    jax_model = nnx.eval_shape(lambda: jss.shake_shake_resnext26(10))  # structure only
    with torch.device("meta"):
        torch_model = tss.shake_shake_resnext26(10)
    drawn = jss.parity_draws(jax_model, 3, 5)
    assert drawn.keys() == {"alpha", "beta"}
    for k, v in tss.parity_draws(torch_model, 3, 5).items():
        np.testing.assert_array_equal(drawn[k], v)
        assert v.dtype == np.float32 and v.shape == (12, 3)
        assert ((0 <= v) & (v < 1)).all()
    assert not np.array_equal(drawn["alpha"], drawn["beta"])
