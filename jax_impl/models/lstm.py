"""A bidirectional LSTM over the log-mel's time frames (the reference report's "LSTM" model), NHWC
input.

The mirror of ``torch_ref/models/lstm.py``. Layout: the input ``[B, n_mels, T, in_chans]``
(H = mel bins, W = time) is read as ``T`` frames of ``in_chans * n_mels`` features, channel-major
(feature ``c * n_mels + m``, as the torch model flattens ``[B, C, n_mels, T]``). Two
bidirectional layers (``nnx.Bidirectional`` of two ``nnx.RNN`` over :class:`TorchLSTMCell`,
hidden 256 per direction, outputs concatenated forward-then-backward like ``nn.LSTM``), the mean
over time and a linear head. ``T`` is free (>= 1); the mel axis must equal ``n_mels`` (128).

Parameters of :class:`BidirectionalLSTM` (at ``lstm``) and the ``nn.LSTM`` keys they mirror
(``k`` = layer; ``d`` = ``forward_rnn`` for torch's plain keys, ``backward_rnn`` for ``_reverse``;
the rule is in ``jax_impl/convert.py``)::

    layers.{k}.{d}.cell.dense_i.kernel [in, 4H]  <- weight_ih_l{k}[_reverse] [4H, in], transposed
    layers.{k}.{d}.cell.dense_i.bias   [4H]      <- bias_ih_l{k}[_reverse]
    layers.{k}.{d}.cell.dense_h.kernel [H, 4H]   <- weight_hh_l{k}[_reverse] [4H, H], transposed
    layers.{k}.{d}.cell.dense_h.bias   [4H]      <- bias_hh_l{k}[_reverse]

Gate blocks along 4H are ``i, f, g, o`` in both libraries (``OptimizedLSTMCell`` splits its
fused projection in torch's order), so no reordering. torch keeps two biases per gate set while
Flax's cell has one; the cell here keeps both (``dense_i`` gets a bias too) instead of summing
them at conversion: summing would make the parameter counts differ and the torch -> JAX -> torch
round trip lossy, and costs one [4H] add per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.layers import Dtype, default_rngs, linear
from jax_impl.models.registry import ModelError, register_model

N_MELS = 128
HIDDEN = 256
NUM_LAYERS = 2


def _torch_lstm_init(hidden: int) -> jax.nn.initializers.Initializer:
    """torch's ``nn.LSTM`` init for every weight and bias: ``U(-1/sqrt(H), 1/sqrt(H))``."""
    bound = 1.0 / hidden**0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchLSTMCell(nnx.OptimizedLSTMCell):
    """``nnx.OptimizedLSTMCell`` with torch's second bias: gates ``x W_i + b_i + h W_h + b_h``.

    Same equations and gate order (i, f, g, o) as ``torch.nn.LSTM``; initialised like it.
    Carry ``(c, h)``, each ``[..., hidden]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        init = _torch_lstm_init(hidden_features)
        super().__init__(
            in_features,
            hidden_features,
            kernel_init=init,
            recurrent_kernel_init=init,
            bias_init=init,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        # The parent's input projection has no bias; torch's has one (bias_ih).
        self.dense_i = nnx.Linear(
            in_features,
            4 * hidden_features,
            use_bias=True,
            kernel_init=init,
            bias_init=init,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )


class BidirectionalLSTM(nnx.Module):
    """The NNX counterpart of ``nn.LSTM(input_size, hidden_size, num_layers, bidirectional=True,
    batch_first=True)``: ``[B, T, input_size] -> [B, T, 2 * hidden_size]`` (forward then backward
    direction along the last axis), zero initial state.

    ``layers.{k}`` is an ``nnx.Bidirectional`` of two ``nnx.RNN`` (``forward_rnn``,
    ``backward_rnn``) over :class:`TorchLSTMCell`; ``jax_impl/convert.py`` maps this whole module to
    the ``nn.LSTM``'s keys (module docstring).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        # The cell's carry comes out in the promotion of its compute dtype with float32 (float32
        # under bf16 compute, float64 under float64); the scan needs the zero carry to match.
        self.carry_dtype = jnp.promote_types(dtype, jnp.float32)
        layers = []
        for k in range(num_layers):
            features = input_size if k == 0 else 2 * hidden_size
            # rngs=False: the zero carry is passed in, so no RNG state joins the model's state.
            fwd, bwd = (
                nnx.RNN(TorchLSTMCell(features, hidden_size, **kw), rngs=False) for _ in range(2)
            )
            layers.append(nnx.Bidirectional(fwd, bwd, rngs=False))
        self.layers = nnx.List(layers)

    def __call__(self, seq: jax.Array) -> jax.Array:
        """``seq [B, T, input_size] -> [B, T, 2 * hidden_size]``."""
        zeros = jnp.zeros((seq.shape[0], self.hidden_size), self.carry_dtype)
        carry = ((zeros, zeros), (zeros, zeros))
        for layer in self.layers:
            seq = layer(seq, initial_carry=carry)
        return seq


class SpectrogramLSTM(nnx.Module):
    """``[B, n_mels, T, in_chans] -> [B, num_classes]`` logits; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        *,
        n_mels: int = N_MELS,
        hidden: int = HIDDEN,
        num_layers: int = NUM_LAYERS,
        name: str = "lstm",
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        rngs = default_rngs(rngs)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.model_name = name
        self.in_chans = in_chans
        self.n_mels = n_mels
        self.lstm = BidirectionalLSTM(in_chans * n_mels, hidden, num_layers, **kw)
        self.fc = linear(2 * hidden, num_classes, **kw)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, num_classes]`` for ``x [B, n_mels, T, in_chans]`` (any ``T >= 1``).

        ``key`` is accepted for the uniform model call and unused (no random draws).
        """
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4 or shape[1] != self.n_mels or shape[2] < 1 or shape[3] != self.in_chans:
            raise ModelError(
                f"model {self.model_name!r} reads time frames of {self.n_mels} mel bins: expected "
                f"NHWC shape [B, {self.n_mels}, T >= 1, {self.in_chans}] (mel bins x time frames), "
                f"got {list(shape)}"
            )
        b, mels, t, c = shape
        seq = jnp.transpose(x, (0, 2, 3, 1)).reshape(b, t, c * mels)
        return self.fc(self.lstm(seq).mean(axis=1))


@register_model("lstm")
def lstm(
    num_classes: int,
    in_chans: int = 1,
    *,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
) -> SpectrogramLSTM:
    """2-layer bidirectional LSTM (hidden 256) over 128-bin mel frames, mean over time, linear."""
    return SpectrogramLSTM(num_classes, in_chans, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
