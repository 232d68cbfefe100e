"""Flax NNX building blocks with PyTorch's semantics, shared by every JAX model.

Conventions every JAX model in ``jax_impl.models`` follows (they keep ``jax_impl/convert.py`` a
table of rules and the parity tests generic):

* **Layout.** NHWC activations; conv kernels HWIO (``nnx.Conv``), linear kernels ``(in, out)``.
* **Names.** Attribute paths mirror the torch state-dict keys: ``self.layer1 = nnx.List([...])``
  gives the path ``layer1.0.conv1`` exactly like ``nn.Sequential``; plain attributes give
  ``features.denseblock1.denselayer1.norm1``. A torch ``nn.Sequential`` with parameter-free members
  (ReLU, pooling) keeps its numbering by holding ``None`` at those indices of the ``nnx.List``.
* **Leaf kinds.** Parameters live only in the module kinds ``convert.py`` has a rule for:
  ``nnx.Conv`` (from :func:`conv2d`), ``nnx.ConvTranspose`` (from :func:`conv_transpose2d`),
  ``nnx.Linear`` (from :func:`linear`), :class:`BatchNorm` (:mod:`jax_impl.models.batch_norm`)
  — plus the LSTM rule. A new kind needs a new rule in ``convert.RULES``.
* **Precision.** ``dtype`` is the compute dtype (float32 default; bfloat16 on the GPU),
  ``param_dtype`` the storage dtype of parameters and BN statistics (float32).
* **Construction.** Factories take ``(num_classes, in_chans=1, *, dtype=jnp.float32,
  param_dtype=jnp.float32, rngs=None)``; ``rngs=None`` means the keys of ``nnx.Rngs(0)``
  (:func:`default_rngs`). A new model is in
  training mode, like a new torch module.
* **Modes.** Training vs evaluation is an attribute, never a call argument: BN reads
  ``use_running_average``, stochastic layers read ``deterministic``. Switch in place with
  ``model.train()`` / ``model.eval()`` (``nnx.Module.train/eval`` set both attributes
  recursively), or take a non-mutating view sharing the same arrays with
  ``nnx.view(model, use_running_average=True, deterministic=True)`` (every module carrying such an
  attribute should define ``set_view`` so ``nnx.view`` can reach it). Because the mode is static
  graph data, ``nnx.split`` of a train-mode and of an eval-mode view give two graphdefs over one
  state: jit one step function per graphdef.
* **Call.** ``model(x, *, key=None)``; ``key`` (a ``jax.random`` key) feeds the random draws of
  models that have them (shake-shake) in training mode and is ignored otherwise. Models with
  random draws also accept ``draws=`` (injected draws, see ``parity_tests/test_models.py``).
* **Input check.** :func:`check_image_input` raises ``ModelError`` naming the expected shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jax_impl.models.batch_norm import BatchNorm  # noqa: F401 (re-exported: a layer kind)
from jax_impl.models.registry import ModelError

Dtype = Any


# torchvision's ResNet initialisation: kaiming_normal_(mode="fan_out", nonlinearity="relu").
kaiming_normal_fan_out = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torchvision's DenseNet initialisation: kaiming_normal_() (fan_in, gain sqrt(2)).
kaiming_normal_fan_in = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# torch's default for Conv/Linear weights: kaiming_uniform_(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_default_kernel_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class KeyStream:
    """The parameter keys of ``nnx.Rngs(seed)``, for building a model: ``params()`` returns
    ``fold_in(key(seed), n)`` for n = 0, 1, ... exactly as ``nnx.Rngs(seed).params()`` does.

    ``nnx.Rngs`` counts in an ``nnx.Variable``; in flax 0.12.8 each update of a traced Variable
    (under ``nnx.eval_shape`` or ``jit``) builds an error message that walks the whole graph
    traced so far, so tracing a model's construction is quadratic in its depth (15 s for
    DenseNet-201). This stream counts in Python. Layers only call ``rngs.params()``.
    """

    def __init__(self, seed: int = 0):
        self._key = jax.random.key(seed)
        self._count = 0

    def params(self) -> jax.Array:
        """The next parameter key (a typed ``jax.random`` key)."""
        key = jax.random.fold_in(self._key, self._count)
        self._count += 1
        return key


def default_rngs(rngs: nnx.Rngs | KeyStream | None) -> nnx.Rngs | KeyStream:
    """``rngs`` itself, or when None the factories' default: the keys of ``nnx.Rngs(0)``
    (as a :class:`KeyStream`, which traces in linear time)."""
    return KeyStream(0) if rngs is None else rngs


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = False,
    kernel_init: jax.nn.initializers.Initializer = torch_default_kernel_init,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """An ``nnx.Conv`` with ``torch.nn.Conv2d``'s arguments and semantics.

    Padding is explicit and symmetric (``"SAME"`` pads asymmetrically at stride 2, torch does not);
    ``groups`` maps to ``feature_group_count`` (computed by :func:`grouped_conv_general_dilated`).
    Kernel ``[kh, kw, in_channels // groups,
    out_channels]`` in ``param_dtype``; input/output NHWC in ``dtype``. ``bias`` defaults to False
    (every conv here is followed by BN); a bias, when asked for, follows torch's default init.
    """
    ph, pw = _pair(padding)
    fan_in = (in_channels // groups) * _pair(kernel_size)[0] * _pair(kernel_size)[1]
    return nnx.Conv(
        in_channels,
        out_channels,
        _pair(kernel_size),
        strides=_pair(stride),
        padding=((ph, ph), (pw, pw)),
        kernel_dilation=_pair(dilation),
        feature_group_count=groups,
        use_bias=bias,
        kernel_init=kernel_init,
        bias_init=_uniform_bias_init(fan_in),
        dtype=dtype,
        param_dtype=param_dtype,
        conv_general_dilated=grouped_conv_general_dilated
        if groups > 1
        else lax.conv_general_dilated,
        rngs=rngs,
    )


def grouped_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` whose kernel gradient avoids XLA:CPU's grouped-conv path.

    XLA:CPU computes the kernel gradient of a grouped conv (a ``batch_group_count`` conv) with a
    naive loop: about 2 s for one ResNeXt 3x3 layer on a 2x32x32 batch, 50x slower than the
    forward pass. On the CPU this function computes that gradient as image patches contracted
    per group (an einsum); on other platforms (cuDNN is fast here) and for the input gradient it
    uses XLA's own. Same arguments and result as ``lax.conv_general_dilated``; the patch path
    applies to NHWC/HWIO 2-D convs without dilation, others fall back to XLA's gradient.
    """
    conv = functools.partial(
        lax.conv_general_dilated,
        window_strides=tuple(window_strides),
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )
    patchable = (
        feature_group_count > 1
        and lhs.ndim == 4
        and _is_nhwc_hwio(dimension_numbers)
        and all(d == 1 for d in (lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1)))
        and not isinstance(padding, str)
    )
    if not patchable:
        return conv(lhs, rhs)

    @jax.custom_vjp
    def grouped(x: jax.Array, k: jax.Array) -> jax.Array:
        return conv(x, k)

    def fwd(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return conv(x, k), (x, k)

    def bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, k = res
        dx = jax.vjp(lambda x_: conv(x_, k), x)[1](g)[0]

        def xla_dk(x: jax.Array, g: jax.Array) -> jax.Array:
            return jax.vjp(lambda k_: conv(x, k_), k)[1](g)[0]

        def patch_dk(x: jax.Array, g: jax.Array) -> jax.Array:
            return _grouped_kernel_grad(x, g, k, window_strides, padding, precision)

        return dx, lax.platform_dependent(x, g, cpu=patch_dk, default=xla_dk)

    grouped.defvjp(fwd, bwd)
    return grouped(lhs, rhs)


def _is_nhwc_hwio(dimension_numbers: Any) -> bool:
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers or ()) == ("NHWC", "HWIO", "NHWC")


def _grouped_kernel_grad(
    x: jax.Array,
    g: jax.Array,
    kernel: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    precision: Any,
) -> jax.Array:
    """d(loss)/d(kernel) ``[kh, kw, Cin/G, Cout]`` (``kernel``'s dtype) of a grouped NHWC/HWIO
    conv from its input ``x [B, H, W, Cin]`` and output cotangent ``g [B, H', W', Cout]``."""
    kh, kw, cg, cout = kernel.shape
    b, _, _, cin = x.shape
    _, ho, wo, _ = g.shape
    sh, sw = window_strides
    groups = cin // cg
    # Patches by strided slicing, features ordered (channel, kh, kw). Not
    # lax.conv_general_dilated_patches: an identity-kernel conv, 200x slower in float64 on CPU.
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    taps = [
        xp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = jnp.stack(taps, axis=-1).reshape(b, ho, wo, groups, cg, kh, kw)
    g = g.reshape(b, ho, wo, groups, cout // groups)
    acc = jnp.promote_types(kernel.dtype, jnp.float32)
    dk = jnp.einsum(
        "bhwgcij,bhwgo->ijcgo", patches, g, precision=precision, preferred_element_type=acc
    )
    return dk.reshape(kh, kw, cg, cout).astype(kernel.dtype)


def conv_transpose2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    bias: bool = True,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.ConvTranspose:
    """An ``nnx.ConvTranspose`` computing ``torch.nn.ConvTranspose2d`` (groups=1, dilation=1).

    torch's output size is ``(i - 1) * s - 2 p + k + output_padding``; ``lax.conv_transpose``
    pads the stride-dilated input, so torch's ``padding`` p becomes ``(k - 1 - p, k - 1 - p +
    output_padding)`` there. The kernel is stored ``[kh, kw, in, out]`` and applied without the
    spatial flip torch's transposed conv implies: ``convert.py`` flips it when converting.
    """
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    oh, ow = _pair(output_padding)
    fan_in = out_channels * kh * kw  # torch computes fan_in on its (in, out, kh, kw) weight's dim 1
    return nnx.ConvTranspose(
        in_channels,
        out_channels,
        (kh, kw),
        strides=_pair(stride),
        padding=((kh - 1 - ph, kh - 1 - ph + oh), (kw - 1 - pw, kw - 1 - pw + ow)),
        use_bias=bias,
        kernel_init=jax.nn.initializers.variance_scaling(
            1.0 / 3.0, "fan_in", "uniform", in_axis=-1, out_axis=-2
        ),
        bias_init=_uniform_bias_init(fan_in),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def linear(
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    zero_bias: bool = False,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """An ``nnx.Linear`` initialised like ``torch.nn.Linear`` (kernel ``[in, out]``).

    ``zero_bias`` reproduces initialisers that zero the bias (torchvision's DenseNet).
    """
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        kernel_init=torch_default_kernel_init,
        bias_init=jax.nn.initializers.zeros if zero_bias else _uniform_bias_init(in_features),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def _uniform_bias_init(fan_in: int) -> jax.nn.initializers.Initializer:
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def global_avg_pool(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, C]`` (torch's ``AdaptiveAvgPool2d(1)`` + flatten)."""
    return x.mean(axis=(1, 2))


def avg_pool2d(
    x: jax.Array, kernel_size: int, stride: int | None = None, padding: int = 0
) -> jax.Array:
    """``torch.nn.AvgPool2d(kernel_size, stride, padding)`` (count_include_pad=True) on NHWC."""
    stride = kernel_size if stride is None else stride
    return nnx.avg_pool(
        x,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        count_include_pad=True,
    )


def check_image_input(x: jax.Array, in_chans: int, model_name: str) -> None:
    """Raise ``ModelError`` unless ``x`` is ``[B, H, W, in_chans]`` (NHWC).

    Checked at trace time on static shapes, so it costs nothing under ``jax.jit``.
    """
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) == 4 and shape[-1] == in_chans:
        return
    fix = (
        f"build the model with in_chans={shape[-1]} or pass {in_chans} channel(s)"
        if len(shape) == 4
        else "add the channel axis last (x[..., None])"
    )
    raise ModelError(
        f"model {model_name!r} expects an NHWC batch of shape [B, H, W, {in_chans}] "
        f"(H, W >= 32), got shape {list(shape)}; {fix}"
    )
