"""A bidirectional LSTM over the log-mel's time frames (the reference report's "LSTM" model), NCHW
input.

Layout: the input ``[B, in_chans, n_mels, T]`` (H = mel bins, W = time, as every model here sees
the log-mel) is read as a sequence of ``T`` frames, each the ``in_chans * n_mels`` values of one
time step (channel-major: feature ``c * n_mels + m``). A 2-layer bidirectional ``nn.LSTM``
(hidden 256 per direction) runs over it; its ``[B, T, 512]`` outputs are averaged over time and
a linear head gives the logits. ``T`` is free (any length >= 1); the mel axis must equal
``n_mels`` (128 by default) because it sets the LSTM's input size.

State-dict keys are ``nn.LSTM``'s (``lstm.weight_ih_l0``, ``lstm.bias_hh_l1_reverse``, ...) and
``fc.weight``/``fc.bias``. The JAX mirror keeps both of torch's biases per gate set (see
``jax_impl/models/lstm.py``), so the parameter counts match and conversion is lossless.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_ref.models.registry import ModelError, register_model

N_MELS = 128
HIDDEN = 256
NUM_LAYERS = 2


class SpectrogramLSTM(nn.Module):
    """``[B, in_chans, n_mels, T] -> [B, num_classes]`` logits; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        *,
        n_mels: int = N_MELS,
        hidden: int = HIDDEN,
        num_layers: int = NUM_LAYERS,
        name: str = "lstm",
    ):
        super().__init__()
        self.model_name = name
        self.in_chans = in_chans
        self.n_mels = n_mels
        self.lstm = nn.LSTM(
            in_chans * n_mels, hidden, num_layers=num_layers, bidirectional=True, batch_first=True
        )
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for ``x [B, in_chans, n_mels, T]`` (any ``T >= 1``)."""
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.in_chans or shape[2] != self.n_mels or shape[3] < 1:
            raise ModelError(
                f"model {self.model_name!r} reads time frames of {self.n_mels} mel bins: expected "
                f"NCHW shape [B, {self.in_chans}, {self.n_mels}, T >= 1] (mel bins x time frames), "
                f"got {list(shape)}"
            )
        b, c, mels, t = shape
        seq = x.permute(0, 3, 1, 2).reshape(b, t, c * mels)
        out, _ = self.lstm(seq)
        return self.fc(out.mean(dim=1))


@register_model("lstm")
def lstm(num_classes: int, in_chans: int = 1) -> SpectrogramLSTM:
    """2-layer bidirectional LSTM (hidden 256) over 128-bin mel frames, mean over time, linear."""
    return SpectrogramLSTM(num_classes, in_chans)
