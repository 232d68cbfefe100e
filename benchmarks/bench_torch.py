"""The torch workloads of the throughput benchmark (the mirror of ``benchmarks/bench_jax.py``).

``TorchWorkload(combo)`` runs what one iteration of ``torch_ref.train`` runs: the step's draws
from its seeded CPU generator (``torch_ref.train_step.step_generator``), the model RNG seeded
(``seed_model_rng``), ``torch_ref.train_step.train_step`` (SpecAugment, Mixup, bf16 autocast when
asked, backward, optimizer step) and the scheduler step, with the model in ``channels_last``.
Backend ``torch_compile`` wraps the model in ``torch.compile`` as ``torch_ref.train --compile``
does (the default inductor backend and mode). Inference is the eval-mode forward under
``torch.no_grad`` (and autocast), as ``torch_ref.train_step.eval_logits``.

On CUDA, ``cudnn.benchmark`` is on (as in ``torch_ref.train``); fp32 runs keep torch's defaults
(TF32 convolutions, fp32 matmuls).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from benchmarks.combo import STEPS_PER_EPOCH, Combo, bench_recipe, synthetic_batch
from benchmarks.flops import torch_flops
from benchmarks.hardware import host_peak_rss_bytes, reset_host_peak_rss
from torch_ref import augment
from torch_ref import train_step as ts
from torch_ref.models import create_model
from torch_ref.schedule import make_schedule, step_scheduler

EPOCH = 0


class TorchWorkload:
    """Backends ``torch`` (eager) and ``torch_compile``; see the module doc."""

    def __init__(self, combo: Combo):
        if combo.backend not in ("torch", "torch_compile"):
            raise ValueError(f"not a torch backend: {combo.backend!r}")
        self.combo = combo
        self.batch_size = combo.batch_size
        cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if cuda else "cpu")
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats()
        self.rss_before = reset_host_peak_rss()
        self.recipe = bench_recipe(combo)
        self.spec = self.recipe.spec_augment()
        self.autocast_dtype = torch.bfloat16 if combo.precision == "bf16" else None
        torch.manual_seed(combo.seed)
        self.model = create_model(
            combo.model, combo.num_classes, in_chans=1, **self.recipe.model_kwargs()
        )
        self.model.to(device=self.device, memory_format=torch.channels_last)
        self.optimizer = ts.make_optimizer(self.model.parameters(), self.recipe)
        self.scheduler = make_schedule(self.recipe, STEPS_PER_EPOCH, optimizer=self.optimizer)
        compiled = combo.backend == "torch_compile"
        self.step_model = torch.compile(self.model) if compiled else self.model
        mel, label = synthetic_batch(combo)
        self.x = torch.from_numpy(mel[:, None]).to(self.device, memory_format=torch.channels_last)
        self.labels = torch.from_numpy(label).to(self.device)
        self.loss: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.first_losses: list[float] = []
        self._recorded: torch.Tensor | None = None

    def _step(self, model: torch.nn.Module, i: int) -> torch.Tensor:
        """One iteration of ``torch_ref.train``'s loop (draws, step, scheduler); the loss."""
        g = ts.step_generator(self.recipe.seed, EPOCH, i)
        b, _, h, w = self.x.shape
        spec_draws = augment.draw_spec_augment(g, self.spec, b, h, w)
        mix = augment.draw_mixup(g, self.recipe.mixup_alpha, b)
        ts.seed_model_rng(self.recipe.seed, EPOCH, i)
        loss, _ = ts.train_step(
            model,
            self.optimizer,
            self.x,
            self.labels,
            spec_draws=spec_draws,
            mixup_draws=mix,
            num_classes=self.combo.num_classes,
            label_smoothing=self.recipe.label_smoothing,
            fill_value=self.spec.fill_value,
            autocast_dtype=self.autocast_dtype,
        )
        step_scheduler(self.scheduler, EPOCH, i, STEPS_PER_EPOCH)
        return loss

    def _forward_eval(self, model: torch.nn.Module) -> torch.Tensor:
        model.eval()
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.no_grad(), autocast:
            return model(self.x)

    def train_step(self, i: int) -> None:
        self.loss = self._step(self.step_model, i)

    def infer_step(self, i: int) -> None:
        self.logits = self._forward_eval(self.step_model)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if len(self.first_losses) < 2 and self.loss is not None and self.loss is not self._recorded:
            self.first_losses.append(float(self.loss))
            self._recorded = self.loss

    def train_flops(self) -> float | None:
        # Counted on the eager module (FlopCounterMode sees the aten ops; the compiled graph
        # computes the same ones). The extra optimizer step happens after the timing.
        return float(torch_flops(lambda: self._step(self.model, 0)))

    def infer_flops(self) -> float | None:
        return float(torch_flops(lambda: self._forward_eval(self.model)))

    def peak_memory(self) -> tuple[int, str]:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated()), "cuda_max_memory_allocated"
        return host_peak_rss_bytes() - self.rss_before, "host_peak_rss_delta"

    def extra(self) -> dict[str, Any]:
        name = torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu"
        # Donation is a JAX notion: torch updates its parameters in place by construction.
        return {
            "device_name": name,
            "first_losses": self.first_losses,
            "warnings": [],
            "state_donated": None,
            "xla_memory": None,
        }


def make_workload(combo: Combo) -> TorchWorkload:
    """The workload of a ``torch`` or ``torch_compile`` combination."""
    return TorchWorkload(combo)
