"""Shake-Shake regularised residual networks (Gastaldi 2017, arXiv:1705.07485), NCHW.

One family class, :class:`ShakeShakeNet`, configured by the residual branch it stacks:

* ``shake_shake26_2x96d`` — Gastaldi's CIFAR-10 "Shake-Shake-26 2x96d": a 3x3 conv (16) + BN stem,
  3 stages x 4 blocks of widths 96/192/384 (strides 1, 2, 2), every block two branches
  ReLU-conv3x3-BN-ReLU-conv3x3-BN, a final ReLU, global average pooling and a linear head.
  26 = 3 stages x 4 blocks x 2 convs + stem + head.
* ``shake_shake_resnext26`` — the same skeleton (stem, 3 x 4 shake blocks, widths 96/192/384,
  shortcuts, head) with ResNeXt bottleneck branches
  ReLU-conv1x1-BN-ReLU-conv3x3(grouped, stride)-BN-ReLU-conv1x1-BN. No reference exists; the choice:

  - cardinality 4 and 64 channels per group in the first stage, doubling per stage (inner widths
    256/512/1024): Gastaldi's own ResNeXt shake-shake variant is "2x4x64d" (2 branches, 4 groups,
    64d), so the bottleneck is his;
  - output widths stay 96/192/384 so the stem, the shortcuts and the head are literally those of
    ``shake_shake26_2x96d`` and only the branch changes. An inner width above the output width is
    what CIFAR ResNeXt-29 does too (8x64d: inner 512, output 256). It also keeps the two variants'
    cost comparable, as the ResNeXt paper compares variants (32.7 M parameters here vs 26.2 M);
  - "26" names the shared skeleton of 12 shake blocks; with three convs per branch the weighted
    depth is 38 (3 x 4 x 3 + 2). Three equal stages cannot give exactly 26 with bottlenecks.

Shake-shake itself: in training mode the two branch outputs are mixed per image as
``alpha * a + (1 - alpha) * b`` in the forward pass while the gradient flows as
``beta * g`` and ``(1 - beta) * g`` with an independent ``beta`` (both ``~ U(0, 1)``, one per image
and block); evaluation uses 0.5. :func:`shake_mix` is a ``torch.autograd.Function`` so both halves
are exact (no ``detach`` trick and its rounding). Where the width or stride changes the shortcut
is Gastaldi's: ReLU, then two half-width paths (stride-s subsampling + 1x1 conv; the same on the
input shifted by one pixel), concatenated, then BN — this includes the first stage (16 -> 96).

Draws: ``{"alpha": [N, B], "beta": [N, B]}`` for the ``N = model.num_shake_blocks`` blocks in
stage-major order. In training mode the model draws them as ``u = torch.rand(2, N, B)``
(``alpha = u[0]``, ``beta = u[1]``) from the global torch RNG, which the training loop seeds per
step from ``(seed, epoch, step)``. Parity tests inject them instead:
``model(x, draws=parity_draws(model, batch_size, seed))``; the JAX model takes the same dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared_data.architecture import shake_shake as spec
from torch_ref.models.layers import check_image_input
from torch_ref.models.registry import ModelError, register_model

# The family module hands out its parity draws (numpy, the same numbers in both backends).
parity_draws = spec.parity_draws

Draws = Mapping[str, np.ndarray | torch.Tensor]  # {"alpha": [N, B], "beta": [N, B]}


class _ShakeMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, alpha, beta):
        ctx.save_for_backward(beta)
        return alpha * a + (1.0 - alpha) * b

    @staticmethod
    def backward(ctx, grad):
        (beta,) = ctx.saved_tensors
        return beta * grad, (1.0 - beta) * grad, None, None


def shake_mix(
    a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """``alpha * a + (1 - alpha) * b`` forward; gradients ``beta * g`` (a), ``(1 - beta) * g`` (b).

    ``a, b``: ``[B, C, H, W]``; ``alpha, beta``: ``[B]`` (one draw per image), cast to ``a.dtype``.
    """
    shape = (-1,) + (1,) * (a.dim() - 1)
    alpha = alpha.to(device=a.device, dtype=a.dtype).reshape(shape)
    beta = beta.to(device=a.device, dtype=a.dtype).reshape(shape)
    return _ShakeMix.apply(a, b, alpha, beta)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


class BasicBranch(nn.Module):
    """ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN: ``[B, cin, H, W] -> [B, cout, H/s, W/s]``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(F.relu(x)))
        return self.bn2(self.conv2(F.relu(x)))


class BottleneckBranch(nn.Module):
    """ReLU-conv1x1-BN-ReLU-conv3x3(groups, stride)-BN-ReLU-conv1x1-BN (ResNeXt, pre-activated)."""

    def __init__(self, cin: int, cout: int, stride: int, inner: int, groups: int):
        super().__init__()
        self.conv1 = _conv(cin, inner, 1)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = _conv(inner, inner, 3, stride, groups)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = _conv(inner, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(F.relu(x)))
        x = self.bn2(self.conv2(F.relu(x)))
        return self.bn3(self.conv3(F.relu(x)))


class ShakeShortcut(nn.Module):
    """Gastaldi's projection shortcut: ``[B, cin, H, W] -> [B, cout, ceil(H/s), ceil(W/s)]``.

    ReLU; path 1 subsamples with stride ``s`` (an average pool of size 1) and applies a 1x1 conv
    to ``cout // 2``; path 2 does the same on the input shifted up-left by one pixel (zero filled),
    so the two halves see complementary pixels; concatenation, then BN.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = _conv(cin, cout // 2, 1)
        self.conv2 = _conv(cin, cout - cout // 2, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        s = self.stride
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y1 = self.conv1(x[:, :, ::s, ::s])
        y2 = self.conv2(shifted[:, :, ::s, ::s])
        return self.bn(torch.cat([y1, y2], dim=1))


class ShakeBlock(nn.Module):
    """``shortcut(x) + shake_mix(branch1(x), branch2(x))``."""

    def __init__(self, branch1: nn.Module, branch2: nn.Module, shortcut: nn.Module | None):
        super().__init__()
        self.branch1 = branch1
        self.branch2 = branch2
        self.shortcut = shortcut

    def forward(
        self, x: torch.Tensor, alpha: torch.Tensor | None, beta: torch.Tensor | None
    ) -> torch.Tensor:
        """``alpha``/``beta`` ``[B]`` in training; ``None`` means evaluation (0.5, 0.5)."""
        a, b = self.branch1(x), self.branch2(x)
        if alpha is None or beta is None:
            mixed = 0.5 * (a + b)
        else:
            mixed = shake_mix(a, b, alpha, beta)
        residual = x if self.shortcut is None else self.shortcut(x)
        return residual + mixed


class ShakeShakeNet(nn.Module):
    """Shake-shake ResNet for ``[B, in_chans, H, W]`` inputs, logits ``[B, num_classes]``.

    ``branch`` is ``"basic"`` (shake_shake26_2x96d) or ``"bottleneck"`` (ResNeXt,
    shake_shake_resnext26; ``cardinality`` groups of ``group_widths[stage]`` channels).
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
    ):
        super().__init__()
        self.model_name = name
        self.in_chans = in_chans
        self.conv1 = _conv(in_chans, spec.STEM_WIDTH, 3)
        self.bn1 = nn.BatchNorm2d(spec.STEM_WIDTH)
        cin = spec.STEM_WIDTH
        for stage, (width, stride) in enumerate(zip(widths, strides, strict=True)):
            blocks = []
            for i in range(blocks_per_stage):
                s = stride if i == 0 else 1

                def make_branch(cin=cin, width=width, s=s, stage=stage) -> nn.Module:
                    if branch == "basic":
                        return BasicBranch(cin, width, s)
                    inner = cardinality * group_widths[stage]
                    return BottleneckBranch(cin, width, s, inner, cardinality)

                shortcut = ShakeShortcut(cin, width, s) if (cin != width or s != 1) else None
                blocks.append(ShakeBlock(make_branch(), make_branch(), shortcut))
                cin = width
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.num_shake_blocks = len(widths) * blocks_per_stage
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Gastaldi's init: N(0, 2 / (k * k * out_channels)).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)

    def _draws(self, x: torch.Tensor, draws: Draws | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, beta)``, each ``[N, B]``: injected, or drawn from the global torch RNG."""
        n, batch = self.num_shake_blocks, x.shape[0]
        if draws is None:
            u = torch.rand(2, n, batch, device=x.device)
            return u[0], u[1]
        shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in draws.items()}
        if shapes != {"alpha": (n, batch), "beta": (n, batch)}:
            raise ModelError(
                f"model {self.model_name!r} needs draws {{'alpha': [{n}, {batch}], 'beta': "
                f"[{n}, {batch}]}} (one per shake block and image; see parity_draws), got {shapes}"
            )
        return torch.as_tensor(draws["alpha"]), torch.as_tensor(draws["beta"])

    def forward(self, x: torch.Tensor, draws: Draws | None = None) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for ``x [B, in_chans, H, W]``.

        In training mode the per-block draws come from ``draws`` when given (module docstring),
        otherwise from the global torch RNG; evaluation mode mixes with 0.5 and ignores ``draws``.
        """
        check_image_input(x, self.in_chans, self.model_name)
        if self.training:
            alphas, betas = self._draws(x, draws)
            mix = list(zip(alphas, betas, strict=True))
        else:
            mix = [(None, None)] * self.num_shake_blocks
        x = self.bn1(self.conv1(x))
        blocks = [b for stage in range(self.num_stages) for b in getattr(self, f"layer{stage + 1}")]
        for block, (alpha, beta) in zip(blocks, mix, strict=True):
            x = block(x, alpha, beta)
        x = F.relu(x).mean(dim=(2, 3))
        return self.fc(x)


@register_model("shake_shake26_2x96d")
def shake_shake26_2x96d(num_classes: int, in_chans: int = 1) -> ShakeShakeNet:
    """Shake-Shake-26 2x96d (Gastaldi 2017), 26.2 M parameters at 10 classes."""
    return ShakeShakeNet(num_classes, in_chans, name="shake_shake26_2x96d", branch="basic")


@register_model("shake_shake_resnext26")
def shake_shake_resnext26(num_classes: int, in_chans: int = 1) -> ShakeShakeNet:
    """The shake-shake 26 skeleton with 2x4x64d ResNeXt bottleneck branches (module docstring)."""
    return ShakeShakeNet(num_classes, in_chans, name="shake_shake_resnext26", branch="bottleneck")
