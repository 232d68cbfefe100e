"""The JAX workloads of the throughput benchmark (the mirror of ``benchmarks/bench_torch.py``).

``JaxWorkload(combo)`` (backend ``jax``) runs exactly what ``jax_impl.train`` runs: the model
split once (``jax_impl.train_step.split_model``), ``make_train_step``'s ``jax.jit`` step with the
state donated, SpecAugment and Mixup drawn and applied inside the step, and ``make_eval_step``
for inference.

``NnxJitWorkload(combo)`` (backend ``jax_nnxjit``) is the same step written the ``nnx.jit`` way
(``docs/design.md`` keeps ``nnx.jit`` as a benchmark comparison only): the model and an
``nnx.Optimizer`` are passed to an ``nnx.jit`` function, which splits and merges them on every
call in Python. The maths is ``jax_impl.train_step.train_step``'s, built from the same pieces
(``draw_step``, ``jax_impl.augment``, the recipe's optimizer and schedule); both variants report
the losses of their first two steps (before and after one update), and for the same seed the
two agree (checked by the smoke test).

Every training step runs under ``jax.transfer_guard_device_to_host("disallow")``: a step that
read a value back to the host (a hidden per-step synchronisation) raises instead of slowing the
loop silently. Warnings raised while stepping (e.g. XLA's "donated buffers were not usable") are
recorded in the result's ``warnings``, and ``state_donated`` records whether the first step
consumed its input parameter buffers (donation in effect: the update happened in place).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.combo import STEPS_PER_EPOCH, Combo, bench_recipe, synthetic_batch
from benchmarks.flops import jax_compiled_flops
from benchmarks.hardware import host_peak_rss_bytes, reset_host_peak_rss
from jax_impl import augment
from jax_impl import train_step as ts
from jax_impl.models import create_model
from jax_impl.runtime import compute_dtypes  # light: jax only, no input pipeline
from jax_impl.schedule import make_schedule

EPOCH = np.int32(0)
MIXUP = True  # the recipe's first epochs: the more expensive branch of the step


class _JaxBase:
    """Shared set-up: recipe, optimizer, schedule, step config, device batch, memory baseline."""

    def __init__(self, combo: Combo):
        self.combo = combo
        self.batch_size = combo.batch_size
        self.device = jax.devices()[0]
        self.rss_before = reset_host_peak_rss()
        self.recipe = bench_recipe(combo)
        self.dtype, self.param_dtype = compute_dtypes(combo.precision)
        self.schedule = make_schedule(self.recipe, STEPS_PER_EPOCH)
        self.tx = ts.make_optimizer(self.recipe, self.schedule)
        self.cfg = ts.StepConfig.from_recipe(self.recipe, combo.num_classes)
        self.mesh = ts.make_mesh([self.device])
        mel, label = synthetic_batch(combo)
        self.batch = jax.device_put(
            {"mel": mel[..., None], "label": label.astype(np.int32)}, ts.batch_sharded(self.mesh)
        )
        self.metrics: Any = None
        self.logits: Any = None
        self.first_losses: list[float] = []
        self._recorded: Any = None
        self.caught: list[str] = []
        self.donated: bool | None = None

    def _model(self) -> nnx.Module:
        return create_model(
            self.combo.model,
            self.combo.num_classes,
            in_chans=1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            rngs=nnx.Rngs(self.combo.seed),
            **self.recipe.model_kwargs(),
        )

    def _record_first_losses(self) -> None:
        """Keep the losses of steps 0 and 1 (synced one by one by the timing protocol)."""
        if len(self.first_losses) < 2 and self.metrics is not None:
            if self.metrics is not self._recorded:
                self.first_losses.append(float(self.metrics["loss"]))
                self._recorded = self.metrics

    def peak_memory(self) -> tuple[int, str]:
        stats = self.device.memory_stats() if self.device.platform != "cpu" else None
        if stats and "peak_bytes_in_use" in stats:
            return int(stats["peak_bytes_in_use"]), "device_peak_bytes_in_use"
        return host_peak_rss_bytes() - self.rss_before, "host_peak_rss_delta"

    def compiled_train(self) -> Any:
        """The train step's ``jax.stages.Compiled`` (from jit's cache once the step has run)."""
        raise NotImplementedError

    def train_flops(self) -> float | None:
        return jax_compiled_flops(self.compiled_train())

    def extra(self) -> dict[str, Any]:
        return {
            "xla_memory": xla_memory(self.compiled_train()),
            "device_name": str(self.device.device_kind),
            "first_losses": self.first_losses,
            "warnings": sorted(set(self.caught)),
            "state_donated": self.donated,
        }

    def _check_donation(self, before: list[jax.Array]) -> None:
        """After the first step: were the input state buffers consumed (donated) by the step?"""
        if self.donated is None:
            self.donated = all(leaf.is_deleted() for leaf in before)

    def _stepping(self):
        """Context of one step: no device-to-host reads allowed, warnings recorded."""
        return _GuardedStep(self.caught)


def xla_memory(compiled: Any) -> dict[str, int] | None:
    """XLA's buffer plan of a compiled step: temporaries, arguments, outputs, aliased bytes.

    ``alias_bytes`` > 0 means donated inputs are reused as outputs; ``temp_bytes`` is the
    activation and workspace memory XLA planned for this device (on the CPU a proxy for what
    DenseNet's concatenations cost; the GPU plan differs in fusion and layout).
    """
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return {
        "temp_bytes": int(stats.temp_size_in_bytes),
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
    }


class _GuardedStep:
    def __init__(self, sink: list[str]):
        self.sink = sink

    def __enter__(self) -> None:
        self.guard = jax.transfer_guard_device_to_host("disallow")
        self.guard.__enter__()
        self.record = warnings.catch_warnings(record=True)
        self.caught = self.record.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: Any) -> None:
        self.record.__exit__(*exc)
        self.guard.__exit__(*exc)
        self.sink.extend(str(w.message) for w in self.caught)


class JaxWorkload(_JaxBase):
    """Backend ``jax``: ``jax_impl.train_step``'s functional ``jax.jit`` step, state donated."""

    def __init__(self, combo: Combo):
        super().__init__(combo)
        graphs, state = ts.split_model(self._model())
        state["opt_state"] = self.tx.init(state["params"])
        self.state = jax.device_put(state, ts.replicated(self.mesh))
        self._train = ts.make_train_step(graphs.train, self.tx, self.schedule, self.cfg, self.mesh)
        self._eval = ts.make_eval_step(graphs.eval, self.mesh)

    def train_step(self, i: int) -> None:
        before = jax.tree.leaves(self.state["params"]) if self.donated is None else []
        with self._stepping():
            self.state, self.metrics = self._train(
                self.state, self.batch, EPOCH, np.int32(i), MIXUP
            )
        self._check_donation(before)

    def infer_step(self, i: int) -> None:
        self.logits = self._eval(self.state, self.batch)

    def sync(self) -> None:
        jax.block_until_ready((self.state, self.metrics, self.logits))
        self._record_first_losses()

    def compiled_train(self) -> Any:
        # The executable is in jit's cache after the first step: this compiles nothing new.
        args = (self.state, self.batch, EPOCH, np.int32(0), MIXUP)
        return self._train.lower(*args).compile()

    def infer_flops(self) -> float | None:
        return jax_compiled_flops(self._eval.lower(self.state, self.batch).compile())


def _nnx_train_step(model, optimizer, batch, epoch, step_in_epoch, cfg, mixup):
    """``jax_impl.train_step.train_step`` with the model and optimizer as NNX objects."""
    draws = ts.draw_step(ts.step_key(cfg.seed, epoch, step_in_epoch), cfg, batch["mel"].shape)
    x = augment.apply_spec_augment(batch["mel"], draws.spec, cfg.spec.fill_value)
    labels = batch["label"]
    targets = augment.one_hot_targets(labels, cfg.num_classes, cfg.label_smoothing)
    if mixup:
        x, targets = augment.apply_mixup(x, targets, draws.mixup)

    def loss_fn(model):
        logits = model(x, key=draws.model_key).astype(jnp.float32)
        return optax.softmax_cross_entropy(logits, targets).mean(), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == labels).astype(jnp.int32)
    return {"loss": loss, "correct": correct}


def _nnx_eval_step(model, batch):
    return model(batch["mel"]).astype(jnp.float32)


class NnxJitWorkload(_JaxBase):
    """Backend ``jax_nnxjit``: the same step through ``nnx.jit`` (model and optimizer donated)."""

    def __init__(self, combo: Combo):
        super().__init__(combo)
        self.model = self._model()
        self.model.train()
        self.optimizer = nnx.Optimizer(self.model, self.tx, wrt=nnx.Param)
        self._train = nnx.jit(_nnx_train_step, static_argnums=(5, 6), donate_argnums=(0, 1))
        self._eval = nnx.jit(_nnx_eval_step)
        self.eval_model: nnx.Module | None = None

    def _train_args(self, i: int) -> tuple:
        return (self.model, self.optimizer, self.batch, EPOCH, np.int32(i), self.cfg, MIXUP)

    def train_step(self, i: int) -> None:
        params = nnx.state(self.model, nnx.Param)
        before = jax.tree.leaves(params) if self.donated is None else []
        with self._stepping():
            self.metrics = self._train(*self._train_args(i))
        self._check_donation(before)

    def _eval_view(self) -> nnx.Module:
        # Built after training (the timing protocol trains first), from the trained Variables.
        if self.eval_model is None:
            self.eval_model = nnx.view(
                self.model, use_running_average=True, deterministic=True, raise_if_not_found=False
            )
        return self.eval_model

    def infer_step(self, i: int) -> None:
        self.logits = self._eval(self._eval_view(), self.batch)

    def sync(self) -> None:
        jax.block_until_ready((nnx.state(self.model), self.metrics, self.logits))
        self._record_first_losses()

    def compiled_train(self) -> Any:
        return self._train.lower(*self._train_args(0)).compile()

    def infer_flops(self) -> float | None:
        return jax_compiled_flops(self._eval.lower(self._eval_view(), self.batch).compile())


def make_workload(combo: Combo) -> JaxWorkload | NnxJitWorkload:
    """The workload of a ``jax`` or ``jax_nnxjit`` combination."""
    if combo.backend == "jax":
        return JaxWorkload(combo)
    if combo.backend == "jax_nnxjit":
        return NnxJitWorkload(combo)
    raise ValueError(f"not a JAX backend: {combo.backend!r}")
