"""Where a convolution layer's training time goes, in JAX and in torch: one 3x3 conv's forward,
input gradient and kernel gradient, timed separately.

    python -m benchmarks.conv_grad [--batch_size=8] [--size=128] [--channels=64] [--repeats=3]
                                   [--out=FILE.json]

The layer is the reference report's full-resolution stage-1 convolution (stride 1, padding 1,
NHWC/HWIO in JAX, NCHW in torch, fp32). Each part is its own compiled program (JAX) or autograd
call (torch), timed after one warm-up call over ``--repeats`` calls with one synchronisation at the
end. This is the profile behind ``BENCHMARKS.md``'s CPU reading: on XLA:CPU the kernel gradient
costs about ten forward passes (the input gradient about one), where oneDNN's costs about one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("forward", "input_grad", "kernel_grad")


def _time(fn: Callable[[], Any], sync: Callable[[Any], Any], repeats: int) -> float:
    """Seconds per call: one warm-up call, then ``repeats`` calls and one synchronisation."""
    sync(fn())
    start = time.perf_counter()
    out = None
    for _ in range(repeats):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / repeats


def jax_parts(x: np.ndarray, k: np.ndarray, g: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds per call of each part; ``x [B, H, W, C]``, ``k [3, 3, C, O]``, ``g [B, H, W, O]``."""
    import jax
    from jax import lax

    def conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(
            x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    programs = {
        "forward": jax.jit(conv),
        "input_grad": jax.jit(lambda x, k, g: jax.vjp(lambda x_: conv(x_, k), x)[1](g)[0]),
        "kernel_grad": jax.jit(lambda x, k, g: jax.vjp(lambda k_: conv(x, k_), k)[1](g)[0]),
    }
    xd, kd, gd = (jax.device_put(a) for a in (x, k, g))
    args = {"forward": (xd, kd), "input_grad": (xd, kd, gd), "kernel_grad": (xd, kd, gd)}
    return {
        part: _time(lambda p=part: programs[p](*args[p]), jax.block_until_ready, repeats)
        for part in PARTS
    }


def torch_parts(x: np.ndarray, k: np.ndarray, g: np.ndarray, repeats: int) -> dict[str, float]:
    """:func:`jax_parts` in torch (the same arrays, transposed to NCHW/OIHW)."""
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    kt = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return F.conv2d(xt, kt, padding=1)

    def input_grad() -> torch.Tensor:
        return torch.nn.grad.conv2d_input(xt.shape, kt, gt, padding=1)

    def kernel_grad() -> torch.Tensor:
        return torch.nn.grad.conv2d_weight(xt, kt.shape, gt, padding=1)

    fns = {"forward": forward, "input_grad": input_grad, "kernel_grad": kernel_grad}
    return {part: _time(fns[part], lambda _: None, repeats) for part in PARTS}


def measure(batch_size: int, size: int, channels: int, repeats: int) -> dict[str, Any]:
    """Both backends' seconds per part, plus GFLOP/s (each part is ``2 B H W 9 C O`` FLOPs)."""
    rng = np.random.default_rng(0)
    b, s, c = batch_size, size, channels
    x = rng.standard_normal((b, s, s, c), dtype=np.float32)
    k = (0.05 * rng.standard_normal((3, 3, c, c))).astype(np.float32)
    g = rng.standard_normal((b, s, s, c), dtype=np.float32)
    gflop = 2.0 * b * s * s * 9 * c * c / 1e9
    rows = []
    for backend, fn in (("jax", jax_parts), ("torch", torch_parts)):
        for part, seconds in fn(x, k, g, repeats).items():
            rows.append(
                {
                    "backend": backend,
                    "part": part,
                    "seconds": seconds,
                    "gflop_per_s": gflop / seconds,
                }
            )
    return {"batch_size": b, "size": s, "channels": c, "gflop_per_part": gflop, "rows": rows}


def markdown(record: dict[str, Any]) -> str:
    """A table: one row per part, the two backends' milliseconds and their ratio."""
    by = {(r["backend"], r["part"]): r for r in record["rows"]}
    lines = [
        f"3x3 conv, batch {record['batch_size']}, {record['size']}x{record['size']}, "
        f"{record['channels']} -> {record['channels']} channels, fp32 "
        f"({record['gflop_per_part']:.2f} GFLOP per part)",
        "",
        "| part | JAX ms | torch ms | JAX GFLOP/s | torch GFLOP/s | JAX / torch time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for part in PARTS:
        j, t = by[("jax", part)], by[("torch", part)]
        lines.append(
            f"| {part} | {1e3 * j['seconds']:.1f} | {1e3 * t['seconds']:.1f} | "
            f"{j['gflop_per_s']:.0f} | {t['gflop_per_s']:.0f} | {j['seconds'] / t['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="square input side")
    p.add_argument("--channels", type=int, default=64, help="input = output channels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="JSON record")
    args = p.parse_args(argv)
    for flag in ("batch_size", "size", "channels", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    record = measure(args.batch_size, args.size, args.channels, args.repeats)
    print(markdown(record))
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
