"""Shake-Shake regularised residual networks (Gastaldi 2017, arXiv:1705.07485) in Flax NNX, NHWC.

The mirror of ``torch_ref/models/shake_shake.py`` (whose docstring records the architecture and
the ``shake_shake_resnext26`` design choice: cardinality 4, 64 channels per group doubling per
stage, output widths 96/192/384). Attribute paths equal the torch state-dict keys
(``layer2.0.branch1.conv1``, ``layer2.0.shortcut.bn``), so ``jax_impl/convert.py`` maps them
by rule.

Shake-shake: :func:`shake_mix` is a ``jax.custom_vjp``, so the forward pass is exactly
``alpha * a + (1 - alpha) * b`` and the cotangents are exactly ``beta * g`` and ``(1 - beta) * g``
(the ``stop_gradient`` trick would round the forward value). Mode: ``deterministic`` (set by
``model.train()`` / ``model.eval()`` or ``nnx.view(model, deterministic=...)``); evaluation mixes
with 0.5.

Draws: ``{"alpha": [N, B], "beta": [N, B]}`` for the ``N = model.num_shake_blocks`` blocks in
stage-major order. In training mode ``model(x, key=key)`` draws
``u = jax.random.uniform(key, (2, N, B))`` (``alpha = u[0]``, ``beta = u[1]``); the training loop
derives ``key`` from ``(seed, epoch, step)``. ``model(x, draws=draws)`` injects them instead:
``parity_draws(model, batch_size, seed)`` gives the same numbers as the torch module's
``parity_draws``, and ``torch_model(x_nchw, draws=draws)`` takes the same dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.layers import (
    BatchNorm,
    Dtype,
    check_image_input,
    conv2d,
    default_rngs,
    global_avg_pool,
    kaiming_normal_fan_out,
    linear,
)
from jax_impl.models.registry import ModelError, register_model
from shared_data.architecture import shake_shake as spec

# The family module hands out its parity draws (numpy, the same numbers in both backends).
parity_draws = spec.parity_draws

Draws = Mapping[str, Any]  # {"alpha": [N, B], "beta": [N, B]}


def _per_image(v: jax.Array, like: jax.Array) -> jax.Array:
    return v.astype(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))


@jax.custom_vjp
def shake_mix(a: jax.Array, b: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
    """``alpha * a + (1 - alpha) * b`` forward; cotangents ``beta * g`` and ``(1 - beta) * g``.

    ``a, b``: ``[B, H, W, C]``; ``alpha, beta``: ``[B]`` float (one draw per image), cast to
    ``a.dtype``. The draws get zero cotangents.
    """
    alpha = _per_image(alpha, a)
    return alpha * a + (1.0 - alpha) * b


def _shake_mix_fwd(a, b, alpha, beta):
    return shake_mix(a, b, alpha, beta), (alpha, beta)


def _shake_mix_bwd(res, g):
    alpha, beta = res
    bb = _per_image(beta, g)
    return bb * g, (1.0 - bb) * g, jnp.zeros_like(alpha), jnp.zeros_like(beta)


shake_mix.defvjp(_shake_mix_fwd, _shake_mix_bwd)


def _conv(cin, cout, k, stride=1, groups=1, *, dtype, param_dtype, rngs) -> nnx.Conv:
    # Gastaldi's init: N(0, 2 / (k * k * out_channels)).
    return conv2d(
        cin,
        cout,
        k,
        stride=stride,
        padding=k // 2,
        groups=groups,
        kernel_init=kaiming_normal_fan_out,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


class BasicBranch(nnx.Module):
    """ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN: ``[B, H, W, cin] -> [B, H/s, W/s, cout]``."""

    def __init__(self, cin: int, cout: int, stride: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = _conv(cin, cout, 3, stride, **kw)
        self.bn1 = BatchNorm(cout, **kw)
        self.conv2 = _conv(cout, cout, 3, **kw)
        self.bn2 = BatchNorm(cout, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.bn1(self.conv1(jax.nn.relu(x)))
        return self.bn2(self.conv2(jax.nn.relu(x)))


class BottleneckBranch(nnx.Module):
    """ReLU-conv1x1-BN-ReLU-conv3x3(groups, stride)-BN-ReLU-conv1x1-BN (ResNeXt, pre-activated)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        inner: int,
        groups: int,
        *,
        dtype,
        param_dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = _conv(cin, inner, 1, **kw)
        self.bn1 = BatchNorm(inner, **kw)
        self.conv2 = _conv(inner, inner, 3, stride, groups, **kw)
        self.bn2 = BatchNorm(inner, **kw)
        self.conv3 = _conv(inner, cout, 1, **kw)
        self.bn3 = BatchNorm(cout, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.bn1(self.conv1(jax.nn.relu(x)))
        x = self.bn2(self.conv2(jax.nn.relu(x)))
        return self.bn3(self.conv3(jax.nn.relu(x)))


class ShakeShortcut(nnx.Module):
    """Gastaldi's projection shortcut: ``[B, H, W, cin] -> [B, ceil(H/s), ceil(W/s), cout]``.

    ReLU; path 1 subsamples with stride ``s`` and applies a 1x1 conv to ``cout // 2``; path 2 does
    the same on the input shifted up-left by one pixel (zero filled); concatenation, then BN.
    """

    def __init__(self, cin: int, cout: int, stride: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.stride = stride
        self.conv1 = _conv(cin, cout // 2, 1, **kw)
        self.conv2 = _conv(cin, cout - cout // 2, 1, **kw)
        self.bn = BatchNorm(cout, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(x)
        s = self.stride
        shifted = jnp.pad(x[:, 1:, 1:, :], ((0, 0), (0, 1), (0, 1), (0, 0)))
        y1 = self.conv1(x[:, ::s, ::s, :])
        y2 = self.conv2(shifted[:, ::s, ::s, :])
        return self.bn(jnp.concatenate([y1, y2], axis=-1))


class ShakeBlock(nnx.Module):
    """``shortcut(x) + shake_mix(branch1(x), branch2(x))``."""

    def __init__(self, branch1: nnx.Module, branch2: nnx.Module, shortcut: nnx.Module | None):
        self.branch1 = branch1
        self.branch2 = branch2
        self.shortcut = shortcut

    def __call__(self, x: jax.Array, alpha: jax.Array | None, beta: jax.Array | None) -> jax.Array:
        """``alpha``/``beta`` ``[B]`` in training; ``None`` means evaluation (0.5, 0.5)."""
        a, b = self.branch1(x), self.branch2(x)
        if alpha is None or beta is None:
            mixed = 0.5 * (a + b)
        else:
            mixed = shake_mix(a, b, alpha, beta)
        residual = x if self.shortcut is None else self.shortcut(x)
        return residual + mixed


class ShakeShakeNet(nnx.Module):
    """Shake-shake ResNet for NHWC ``[B, H, W, in_chans]`` inputs, logits ``[B, num_classes]``.

    ``branch`` is ``"basic"`` (shake_shake26_2x96d) or ``"bottleneck"`` (ResNeXt,
    shake_shake_resnext26; ``cardinality`` groups of ``group_widths[stage]`` channels).
    Starts in training mode (``deterministic=False``, BN on batch statistics).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        *,
        name: str,
        branch: str = "basic",
        widths: Sequence[int] = spec.STAGE_WIDTHS,
        strides: Sequence[int] = spec.STAGE_STRIDES,
        blocks_per_stage: int = spec.BLOCKS_PER_STAGE,
        cardinality: int = spec.RESNEXT_CARDINALITY,
        group_widths: Sequence[int] = spec.RESNEXT_GROUP_WIDTHS,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = default_rngs(rngs)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.model_name = name
        self.in_chans = in_chans
        self.deterministic = False
        self.conv1 = _conv(in_chans, spec.STEM_WIDTH, 3, **kw)
        self.bn1 = BatchNorm(spec.STEM_WIDTH, **kw)
        cin = spec.STEM_WIDTH
        for stage, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            blocks = []
            for i in range(blocks_per_stage):
                s = stride if i == 0 else 1

                def make_branch(cin=cin, width=width, s=s, stage=stage) -> nnx.Module:
                    if branch == "basic":
                        return BasicBranch(cin, width, s, **kw)
                    inner = cardinality * group_widths[stage]
                    return BottleneckBranch(cin, width, s, inner, cardinality, **kw)

                shortcut = ShakeShortcut(cin, width, s, **kw) if (cin != width or s != 1) else None
                blocks.append(ShakeBlock(make_branch(), make_branch(), shortcut))
                cin = width
            setattr(self, f"layer{stage + 1}", nnx.List(blocks))
        self.num_stages = len(widths)
        self.num_shake_blocks = len(widths) * blocks_per_stage
        self.fc = linear(cin, num_classes, zero_bias=True, **kw)

    def set_view(self, deterministic: bool | None = None) -> None:
        """``nnx.view`` hook: ``deterministic=True`` mixes with 0.5 (evaluation)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def _draws(
        self, batch: int, key: jax.Array | None, draws: Draws | None
    ) -> tuple[jax.Array, jax.Array]:
        """``(alpha, beta)``, each ``[N, B]`` float32: injected, or drawn from ``key``."""
        n = self.num_shake_blocks
        if draws is not None:
            shapes = {k: tuple(jnp.shape(v)) for k, v in draws.items()}
            if shapes != {"alpha": (n, batch), "beta": (n, batch)}:
                raise ModelError(
                    f"model {self.model_name!r} needs draws {{'alpha': [{n}, {batch}], 'beta': "
                    f"[{n}, {batch}]}} (one per shake block and image; see parity_draws), "
                    f"got {shapes}"
                )
            return jnp.asarray(draws["alpha"], jnp.float32), jnp.asarray(draws["beta"], jnp.float32)
        if key is None:
            raise ModelError(
                f"model {self.model_name!r} in training mode draws its shake-shake alpha/beta from "
                "a key: call model(x, key=jax.random.key(...)), pass draws=..., or switch to "
                "evaluation with model.eval()"
            )
        u = jax.random.uniform(key, (2, n, batch))
        return u[0], u[1]

    def __call__(
        self, x: jax.Array, *, key: jax.Array | None = None, draws: Draws | None = None
    ) -> jax.Array:
        """Logits ``[B, num_classes]`` (compute dtype) for ``x [B, H, W, in_chans]``.

        Training mode needs ``key`` or ``draws`` (module docstring); evaluation ignores both.
        """
        check_image_input(x, self.in_chans, self.model_name)
        if self.deterministic:
            mix = [(None, None)] * self.num_shake_blocks
        else:
            alphas, betas = self._draws(x.shape[0], key, draws)
            mix = [(alphas[i], betas[i]) for i in range(self.num_shake_blocks)]
        x = self.bn1(self.conv1(x))
        blocks = [b for stage in range(self.num_stages) for b in getattr(self, f"layer{stage + 1}")]
        for block, (alpha, beta) in zip(blocks, mix, strict=True):
            x = block(x, alpha, beta)
        return self.fc(global_avg_pool(jax.nn.relu(x)))


@register_model("shake_shake26_2x96d")
def shake_shake26_2x96d(
    num_classes: int,
    in_chans: int = 1,
    *,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
) -> ShakeShakeNet:
    """Shake-Shake-26 2x96d (Gastaldi 2017), 26.2 M parameters at 10 classes."""
    return ShakeShakeNet(
        num_classes,
        in_chans,
        name="shake_shake26_2x96d",
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


@register_model("shake_shake_resnext26")
def shake_shake_resnext26(
    num_classes: int,
    in_chans: int = 1,
    *,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
) -> ShakeShakeNet:
    """The shake-shake 26 skeleton with 2x4x64d ResNeXt bottleneck branches (32.7 M parameters)."""
    return ShakeShakeNet(
        num_classes,
        in_chans,
        name="shake_shake_resnext26",
        branch="bottleneck",
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )
