"""FLOP counts of a step (XLA cost analysis for JAX, ``FlopCounterMode`` for torch) and MFU.

API::

    flops = jax_compiled_flops(jitted.lower(*args).compile())    # float | None
    flops = torch_flops(lambda: step(...))                         # int, runs the callable once
    peak = dense_peak_flops("NVIDIA H100 80GB HBM3", "bf16")       # 989e12 | None
    u = mfu(flops_per_sample, samples_per_s, peak)                 # float | None

What the two counters count (so the per-sample figures of the two backends differ slightly):

- XLA's ``HloCostAnalysis`` counts every HLO op of the *optimised* program: convolutions and dots
  at 2 FLOPs per multiply-add, plus one per element of elementwise ops, reductions (BatchNorm's
  statistics), the optimizer update and the augmentation. Recomputation (``jax.checkpoint``) is
  counted again, so this is a hardware FLOP count.
- torch's ``FlopCounterMode`` counts only the ops it has formulas for: convolutions, matmuls and
  their backward passes (2 FLOPs per multiply-add); elementwise ops, BatchNorm and the optimizer
  are not counted. For these convolutional nets the convolutions dominate, so the two agree to
  a few per cent. Its formula for a convolution's weight gradient ignores ``groups`` (a ResNeXt
  training step came out at 4.7 forward passes instead of 3); :func:`torch_flops` registers a
  corrected formula.

MFU (model FLOPs utilisation) = ``flops_per_sample * samples_per_s / peak``, where ``peak`` is the
device's dense (no sparsity) tensor-core peak for the precision: bf16 for ``bf16`` runs, TF32 for
``fp32`` runs (both libraries run fp32 convolutions on TF32 tensor cores by default on Ampere and
later: cuDNN's ``allow_tf32`` for convolutions, XLA's default precision). A CPU has no entry, so
its MFU is ``None`` by design.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Dense tensor-core peaks in FLOP/s from the vendors' data sheets, matched by substring of the
# device name in order (so "H100 PCIe" is tried before the SXM "H100").
DENSE_PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756e12, "fp32": 378e12}),
    ("H100", {"bf16": 989e12, "fp32": 494.7e12}),  # SXM (HBM3)
    ("H200", {"bf16": 989e12, "fp32": 494.7e12}),
    ("A100", {"bf16": 312e12, "fp32": 156e12}),
)


# Training GFLOP per sample at 128x128 of the models benchmarks.gpu_check measures
# (benchmarks/results/cpu_2core_fp32_b4.json).
TRAIN_GFLOP_PER_SAMPLE = {
    "resnet18": 52.0,
    "resnext50_32x4d": 134.0,
    "densenet201": 144.0,
    "shake_shake26_2x96d": 356.0,
}


def dense_peak_flops(device_name: str, precision: str) -> float | None:
    """The dense peak FLOP/s of ``device_name`` at ``precision`` (bf16/fp32); None if unknown."""
    for needle, peaks in DENSE_PEAK_FLOPS:
        if needle.lower() in device_name.lower():
            return peaks.get(precision)
    return None


def mfu(flops_per_sample: float | None, samples_per_s: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over ``peak`` (a fraction); None when either count is unknown."""
    if flops_per_sample is None or peak is None or peak <= 0:
        return None
    return flops_per_sample * samples_per_s / peak


def jax_compiled_flops(compiled: Any) -> float | None:
    """The ``flops`` entry of a ``jax.stages.Compiled``'s cost analysis (None if absent).

    Older JAX returned a list with one dict per partition; current JAX returns one dict.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    flops = float(analysis["flops"])
    return flops if flops > 0 else None


def _grouped_conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape=None,
    **_: Any,
) -> int:
    """torch's ``convolution_backward`` formula with the weight gradient divided by ``groups``.

    torch's own formula counts a grouped convolution's weight gradient as if it were dense
    (``groups`` times too many: 32x for ResNeXt's 3x3 convolutions); its input gradient is right.
    """
    from torch.utils.flop_counter import conv_backward_flop

    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed)
    args += (output_padding, groups)
    flops = 0
    # torch's module-level formula is wrapped by its ``shape_wrapper``: the output goes as out_val.
    if output_mask[0]:
        flops += conv_backward_flop(*args, [True, False, False], out_val=out_shape)
    if output_mask[1]:
        flops += conv_backward_flop(*args, [False, True, False], out_val=out_shape) // groups
    return flops


def torch_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs torch's ``FlopCounterMode`` records while running ``fn()`` once.

    With one correction: grouped convolutions' weight gradients are counted per group
    (:func:`_grouped_conv_backward_flop`).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fix = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop}
    counter = FlopCounterMode(display=False, custom_mapping=fix)
    with counter:
        fn()
    return int(counter.get_total_flops())
