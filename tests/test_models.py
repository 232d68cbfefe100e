"""The model zoo on its own: registries, parameter counts, bf16 training steps, input checks."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from jax import lax

import jax_impl.models as jax_models
import torch_ref.models as torch_models
from jax_impl.convert import torch_to_jax
from jax_impl.models.layers import grouped_conv_general_dilated
from shared_data.architecture.names import MODEL_NAMES
from shared_data.errors import UserError
from tests.support.models import FAST_CPU_COMPILE, small_batch, small_input_hw

NUM_CLASSES = 5

BACKENDS = pytest.mark.parametrize("zoo", [jax_models, torch_models], ids=["jax", "torch"])


@BACKENDS
def test_registry_holds_exactly_the_model_names(zoo) -> None:
    assert zoo.available_models() == tuple(sorted(MODEL_NAMES))


@BACKENDS
def test_duplicate_registration_raises(zoo) -> None:
    with pytest.raises(zoo.ModelError, match="resnet18.*registered twice"):
        zoo.register_model("resnet18")(lambda num_classes, in_chans=1: None)
    assert zoo.available_models() == tuple(sorted(MODEL_NAMES))


@BACKENDS
def test_unknown_name_lists_the_valid_ones(zoo) -> None:
    with pytest.raises(zoo.ModelError) as info:
        zoo.create_model("resnet19", NUM_CLASSES)
    assert isinstance(info.value, UserError)
    assert "resnet19" in str(info.value)
    for name in MODEL_NAMES:
        assert name in str(info.value)


def _numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _jax_param_count(model: nnx.Module) -> int:
    return sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_match_across_backends(name: str) -> None:
    abstract = nnx.eval_shape(lambda: jax_models.create_model(name, NUM_CLASSES, in_chans=2))
    torch_model = torch_models.create_model(name, NUM_CLASSES, in_chans=2)
    torch_count = sum(p.numel() for p in torch_model.parameters())
    assert _jax_param_count(abstract) == torch_count


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_jitted_bf16_training_step_is_finite(name: str) -> None:
    """fp32 parameters and BN statistics, bf16 activations: logits are bf16, gradients fp32.

    The weights are torch's initialisation, converted: initialising DenseNet-201 eagerly in JAX
    compiles one random-number program per parameter shape (about 20 s on 2 cores).
    """
    torch_state = _numpy_state(torch_models.create_model(name, NUM_CLASSES))
    model = torch_to_jax(name, torch_state, NUM_CLASSES, dtype=jnp.bfloat16)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(small_batch(name, 2).transpose(0, 2, 3, 1))
    y = jnp.array([0, 1])

    @functools.partial(jax.jit, compiler_options=FAST_CPU_COMPILE)
    def step(params: nnx.State, rest: nnx.State, key: jax.Array):
        def loss_fn(params: nnx.State, rest: nnx.State):
            m = nnx.merge(graphdef, params, rest, copy=True)
            logits = m(x, key=key)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
            return loss.mean(), (logits, nnx.state(m, ...))

        return jax.value_and_grad(loss_fn, has_aux=True)(params, rest)

    (loss, (logits, new_state)), grads = step(params, rest, jax.random.key(0))
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, NUM_CLASSES)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(np.asarray(logits, np.float32)))
    # Checked in numpy: eager jnp reductions would compile one program per parameter shape.
    grad_leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(g.dtype == np.float32 and np.all(np.isfinite(g)) for g in grad_leaves)
    assert any(np.any(g != 0) for g in grad_leaves)
    for path, v in nnx.to_flat_state(nnx.state(new_state, nnx.BatchStat)):
        stat = np.asarray(v.get_value())
        assert stat.dtype == np.float32 and np.all(np.isfinite(stat)), path


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_input_shape_names_the_expected_shape(name: str) -> None:
    h, w = small_input_hw(name)
    jax_model = nnx.eval_shape(lambda: jax_models.create_model(name, NUM_CLASSES))
    # The LSTM names its own layout (mel bins x time frames) instead of a generic image shape.
    jax_shape = r"\[B, 128, T >= 1, 1\]" if name == "lstm" else r"\[B, H, W, 1\]"
    torch_shape = r"\[B, 1, 128, T" if name == "lstm" else r"\[B, 1, H, W\]"
    for bad in [(2, h, w), (2, h, w, 3)]:
        with pytest.raises(jax_models.ModelError, match=jax_shape):
            jax.eval_shape(jax_model, jax.ShapeDtypeStruct(bad, jnp.float32))
    torch_model = torch_models.create_model(name, NUM_CLASSES)
    for bad in [(2, h, w), (2, 3, h, w)]:
        with pytest.raises(torch_models.ModelError, match=torch_shape):
            torch_model(torch.zeros(bad))


@pytest.mark.parametrize("stride", [1, 2])
def test_grouped_conv_kernel_gradient_matches_xla(stride: int) -> None:
    """The CPU patch-based kernel gradient equals XLA's own grouped-conv gradient."""
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 9, 8, 8))
    k = jax.random.normal(kk, (3, 3, 2, 12))
    kw = dict(
        window_strides=(stride, stride),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=4,
    )

    def loss(conv):
        return lambda x, k: jnp.sum(jnp.sin(conv(x, k, **kw)))

    want = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, k)
    got = jax.grad(loss(grouped_conv_general_dilated), (0, 1))(x, k)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


_SHORT_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64",
                 "i32": "int32", "i8": "int8", "u8": "uint8"}  # fmt: skip
_RESIDUAL = re.compile(r"^(\w+)\[([\d,]*)\] (.*)$")


def _saved_activation_bytes(loss_fn, params) -> int:
    """Bytes of the activations JAX keeps for the backward pass of ``loss_fn`` (parameters and
    constants excluded), from ``jax.ad_checkpoint.print_saved_residuals``'s listing."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(loss_fn, params)
    total = 0
    for line in out.getvalue().splitlines():
        match = _RESIDUAL.match(line)
        if match is None or "from the argument" in line or "from a" in match.group(3):
            continue
        dtype, dims = match.group(1), match.group(2)
        size = int(np.prod([int(d) for d in dims.split(",") if d]))
        total += size * jnp.dtype(_SHORT_DTYPES.get(dtype, dtype)).itemsize
    return total


def test_memory_efficient_densenet_recomputes_the_bottlenecks_with_the_same_numbers() -> None:
    """``memory_efficient`` (every bottleneck, its concatenation included, under ``nnx.remat``)
    changes what is kept for the backward pass, not the maths: the same train-mode logits,
    gradients and BN statistics, and fewer saved activation bytes. A small DenseNet (the same
    layers, fewer of them) keeps it fast; DenseNet-201's figures are in BENCHMARKS.md."""
    from jax_impl.models.densenet import DenseNet

    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 32, 32, 1)), jnp.float32)
    y = jnp.arange(8) % NUM_CLASSES
    results = {}
    for memory_efficient in (False, True):
        model = DenseNet(8, (4, 4), 16, NUM_CLASSES, memory_efficient=memory_efficient)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params: nnx.State, graphdef=graphdef, rest=rest):
            m = nnx.merge(graphdef, params, rest, copy=True)
            logits = m(x)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (logits, nnx.state(m, nnx.BatchStat))

        grads, (logits, stats) = jax.jit(jax.grad(loss_fn, has_aux=True))(params)
        results[memory_efficient] = {
            "saved": _saved_activation_bytes(lambda p, f=loss_fn: f(p)[0], params),
            "logits": np.asarray(logits),
            "grads": [np.asarray(g) for g in jax.tree.leaves(grads)],
            "stats": [np.asarray(s) for s in jax.tree.leaves(stats)],
        }
    plain, remat = results[False], results[True]
    np.testing.assert_allclose(remat["logits"], plain["logits"], rtol=1e-5, atol=1e-6)
    for a, b in zip(remat["grads"] + remat["stats"], plain["grads"] + plain["stats"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert 0 < remat["saved"] < 0.75 * plain["saved"], (remat["saved"], plain["saved"])


def test_memory_efficient_is_torchvision_s_flag_and_a_densenet_only_recipe_option() -> None:
    from shared_data.training.recipe import Recipe, RecipeError
    from shared_data.training.recipe_flags import add_recipe_flags, recipe_from_args

    model = torch_models.create_model("densenet201", NUM_CLASSES, memory_efficient=True)
    assert model.features.denseblock1.denselayer1.memory_efficient is True
    plain = torch_models.create_model("densenet201", NUM_CLASSES)
    assert plain.features.denseblock1.denselayer1.memory_efficient is False
    assert Recipe(model="densenet201", memory_efficient=True).model_kwargs() == {
        "memory_efficient": True
    }
    assert Recipe(model="densenet201").model_kwargs() == {}
    parser = argparse.ArgumentParser()
    add_recipe_flags(parser)
    args = parser.parse_args(["--model=densenet201", "--memory_efficient"])
    assert recipe_from_args(args).model_kwargs() == {"memory_efficient": True}
    with pytest.raises(RecipeError, match="--memory_efficient applies to densenet201 only"):
        Recipe(model="resnet18", memory_efficient=True)
