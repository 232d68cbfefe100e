"""DenseNet in Flax NNX (DenseNet-201 registered), mirroring torchvision's ``DenseNet``.

The reference report's stem: ``features.conv0`` is a 3x3 stride-1 pad-1 conv over ``in_chans`` and
there is no ``pool0``. Attribute paths equal torchvision's state-dict keys
(``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``, ``features.norm5``,
``classifier``). NHWC input ``[B, H, W, in_chans]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.layers import (
    BatchNorm,
    avg_pool2d,
    check_image_input,
    conv2d,
    default_rngs,
    global_avg_pool,
    kaiming_normal_fan_in,
    linear,
)
from jax_impl.models.registry import register_model

Dtype = Any


def _bottleneck(layer: DenseLayer, features: list[jax.Array]) -> jax.Array:
    """norm1-relu-conv1 over the concatenation of ``features`` (each ``[B, H, W, n_i]``):
    ``[B, H, W, bn_size * growth_rate]``."""
    x = features[0] if len(features) == 1 else jnp.concatenate(features, axis=-1)
    return layer.conv1(nnx.relu(layer.norm1(x)))


class DenseLayer(nnx.Module):
    """BN-ReLU-conv1x1 (``bn_size * growth_rate``) then BN-ReLU-conv3x3 (``growth_rate``).

    ``memory_efficient`` (torchvision's flag of the same name) wraps the bottleneck, the
    concatenation of the earlier features included, in ``nnx.remat``: the concatenated input and
    its normalised, rectified copy are recomputed in the backward pass instead of being kept. Those
    grow with every layer of a block, so they are most of DenseNet's activation memory. The
    outputs, gradients and BN statistics are those of the plain layer.
    """

    def __init__(
        self,
        in_features: int,
        growth_rate: int,
        bn_size: int,
        *,
        memory_efficient: bool = False,
        **kw: Any,
    ):
        ck = dict(kernel_init=kaiming_normal_fan_in, **kw)
        self.memory_efficient = memory_efficient
        self.norm1 = BatchNorm(in_features, **kw)
        self.conv1 = conv2d(in_features, bn_size * growth_rate, 1, **ck)
        self.norm2 = BatchNorm(bn_size * growth_rate, **kw)
        self.conv2 = conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, **ck)

    def __call__(self, features: list[jax.Array]) -> jax.Array:
        """The block's features so far (concatenated along channels: ``in_features``) ->
        ``[B, H, W, growth_rate]`` (the new features only)."""
        bottleneck = nnx.remat(_bottleneck) if self.memory_efficient else _bottleneck
        out = bottleneck(self, features)
        return self.conv2(nnx.relu(self.norm2(out)))


class Transition(nnx.Module):
    """BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling (``norm``, ``conv``)."""

    def __init__(self, in_features: int, out_features: int, **kw: Any):
        self.norm = BatchNorm(in_features, **kw)
        self.conv = conv2d(in_features, out_features, 1, kernel_init=kaiming_normal_fan_in, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool2d(self.conv(nnx.relu(self.norm(x))), 2, 2)


def _dense_block(x: jax.Array, block: nnx.Dict[DenseLayer], memory_efficient: bool) -> jax.Array:
    """Each layer sees the block input and all earlier layers' outputs, concatenated in order.

    Plain: one running concatenation (``x = [x, layer(x)]``), equal to torchvision's
    re-concatenation of the list of all features, keeps the traced graph linear in depth (the
    gradient of an n-way concatenation is n slices). Memory-efficient: like torchvision, each layer
    gets the list and concatenates it inside its rematerialised bottleneck, so no concatenation
    is kept for the backward pass; the block's output is concatenated once.
    """
    n = len(block)
    if not memory_efficient:
        for i in range(n):
            x = jnp.concatenate([x, block[f"denselayer{i + 1}"]([x])], axis=-1)
        return x
    features = [x]
    for i in range(n):
        features.append(block[f"denselayer{i + 1}"](features))
    return jnp.concatenate(features, axis=-1)


class DenseNet(nnx.Module):
    """torchvision's DenseNet-BC with the reference report's stem: ``[B, H, W, in_chans] -> [B,
    num_classes]``.

    Args:
        growth_rate, block_config, num_init_features, bn_size: torchvision's arguments.
        num_classes, in_chans: head size and input channels.
        dtype: compute dtype (float32; bfloat16 on the GPU). param_dtype: parameter dtype.
        name: the registry name, used in error messages.
        memory_efficient: rematerialise every dense layer's bottleneck (:class:`DenseLayer`).
    """

    def __init__(
        self,
        growth_rate: int,
        block_config: Sequence[int],
        num_init_features: int,
        num_classes: int,
        in_chans: int = 1,
        *,
        bn_size: int = 4,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
        name: str = "densenet",
        memory_efficient: bool = False,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=default_rngs(rngs))
        self.name = name
        self.in_chans = in_chans
        self.memory_efficient = memory_efficient
        self.n_blocks = len(block_config)
        features: dict[str, nnx.Module] = {
            "conv0": conv2d(
                in_chans, num_init_features, 3, padding=1, kernel_init=kaiming_normal_fan_in, **kw
            ),
            "norm0": BatchNorm(num_init_features, **kw),
        }
        n = num_init_features
        for b, n_layers in enumerate(block_config, start=1):
            layers = {}
            for i in range(n_layers):
                layers[f"denselayer{i + 1}"] = DenseLayer(
                    n + i * growth_rate,
                    growth_rate,
                    bn_size,
                    memory_efficient=memory_efficient,
                    **kw,
                )
            features[f"denseblock{b}"] = nnx.Dict(layers)
            n += n_layers * growth_rate
            if b != len(block_config):
                features[f"transition{b}"] = Transition(n, n // 2, **kw)
                n //= 2
        features["norm5"] = BatchNorm(n, **kw)
        self.features = nnx.Dict(features)
        self.classifier = linear(n, num_classes, zero_bias=True, **kw)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, num_classes]`` (compute dtype) for ``x [B, H, W, in_chans]``.

        ``key`` is accepted for the uniform model call and unused (no random draws).
        """
        check_image_input(x, self.in_chans, self.name)
        f = self.features
        x = nnx.relu(f["norm0"](f["conv0"](x)))
        for b in range(1, self.n_blocks + 1):
            x = _dense_block(x, f[f"denseblock{b}"], self.memory_efficient)
            if b != self.n_blocks:
                x = f[f"transition{b}"](x)
        x = nnx.relu(f["norm5"](x))
        return self.classifier(global_avg_pool(x))


@register_model("densenet201")
def densenet201(num_classes: int, in_chans: int = 1, **kwargs: Any) -> DenseNet:
    """DenseNet-201: growth 32, blocks (6, 12, 48, 32), bn_size 4, 64 initial features."""
    return DenseNet(32, (6, 12, 48, 32), 64, num_classes, in_chans, name="densenet201", **kwargs)
