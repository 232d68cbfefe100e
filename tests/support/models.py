"""What the model tests share (``tests/test_models.py``, ``parity_tests/test_models.py``): small
inputs per model and the XLA options that keep compiling full-size models affordable on a CPU.

Every model accepts any spatial size >= 32, except that the LSTM reads the 128 mel bins as its
feature axis (H = 128 is architectural); its time axis may be short.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

# For `jax.jit(..., compiler_options=...)` in tests: XLA:CPU's newer fusion emitters and its
# LLVM optimisation cost far more compile time than they save at test sizes. DenseNet-201 forward
# + backward (2 cores): 64 CPU-s to compile by default, 42 without the fusion emitters, 22 with
# neither; the fp32 run went from 2.1 to 2.2 s.
# Which options exist depends on the XLA build, not on a version number one can predict
# (jaxlib 0.10 has the fusion-emitter flag, 0.11.2 and 0.12 answer "No such compile option"), so
# each option is kept only if the installed XLA compiles a trivial program with it.


def accepted_options(options: dict[str, object]) -> dict[str, object]:
    """The entries of ``options`` the installed XLA accepts as ``compiler_options``."""
    return {k: v for k, v in options.items() if _accepts(k, v)}


@functools.cache
def _accepts(name: str, value: object) -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(1.0).compile()
    except Exception as err:  # noqa: BLE001 - XLA's error types differ from line to line
        if "compile option" in str(err).lower():
            return False
        raise
    return True


_EMITTERS_OFF = accepted_options({"xla_cpu_use_fusion_emitters": False})
FAST_CPU_COMPILE: dict[str, object] = {
    **_EMITTERS_OFF,
    **accepted_options({"xla_backend_optimization_level": 0}),
}
# Without optimisation XLA:CPU runs float64 grouped convolutions ~30x slower (ResNeXt-101's
# float64 gradient step: 17 s -> 527 s), so float64 programs keep LLVM's optimisation.
FAST_CPU_COMPILE_FLOAT64: dict[str, object] = dict(_EMITTERS_OFF)


def small_input_hw(name: str) -> tuple[int, int]:
    """``(H, W)`` of the smallest input the tests feed model ``name``."""
    return (128, 32) if name == "lstm" else (32, 32)


def small_batch(name: str, batch: int, in_chans: int = 1, *, seed: int = 0) -> np.ndarray:
    """A standard-normal NCHW batch ``[batch, in_chans, H, W]`` float32 for model ``name``."""
    h, w = small_input_hw(name)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, in_chans, h, w)).astype(np.float32)


def tiny_batchnorm_net(num_classes: int, *, seed: int = 0, dtype=None):
    """A JAX ``nnx`` model with the project's BatchNorm that compiles in about a second:
    conv 3x3 (8 channels) -> BatchNorm -> ReLU -> spatial mean -> linear. For the train-step tests
    whose subject is the step (micro-batches, the memory fit), not a registered architecture."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jax_impl.models.batch_norm import BatchNorm

    dtype = dtype or jnp.float32
    rngs = nnx.Rngs(seed)

    class TinyBatchNormNet(nnx.Module):
        def __init__(self):
            kw = {"rngs": rngs, "dtype": dtype, "param_dtype": dtype}
            self.conv = nnx.Conv(1, 8, (3, 3), **kw)
            self.bn = BatchNorm(8, **kw)
            self.head = nnx.Linear(8, num_classes, **kw)

        def __call__(self, x, *, key=None):
            h = jax.nn.relu(self.bn(self.conv(x)))
            return self.head(h.mean(axis=(1, 2)))

    return TinyBatchNormNet()
