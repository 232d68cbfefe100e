"""Parity runs compare fp32 against fp32: no reduced-precision matmuls in either backend.

Set at import, before any test computes: XLA's CPU default is already fp32, but the flag makes the
intent explicit and also holds if a test is run on an accelerator; torch's TF32 switches only
matter on CUDA, likewise.
"""

import jax
import torch

jax.config.update("jax_default_matmul_precision", "float32")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
