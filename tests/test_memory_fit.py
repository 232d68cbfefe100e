"""Memory that fits by construction: the micro-batch choice (the shared rule, then each backend's
measurement with a device memory injected on the CPU) and the one line an out-of-memory error
becomes."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jax_impl import memory_fit as jax_fit
from jax_impl import train_step as ts
from jax_impl.schedule import make_schedule
from shared_data.cli import run_main
from shared_data.dataset.opened import open_dataset
from shared_data.errors import DataError
from shared_data.training import memory_fit
from shared_data.training.loop import TrainingError
from shared_data.training.recipe import Recipe
from shared_data.training.resume_check import check_same_run
from shared_data.training.split import load_training_data
from tests.support.models import tiny_batchnorm_net
from tests.support.tiny_runs import tiny_flags, tiny_recipe
from torch_ref import memory_fit as torch_fit
from torch_ref import train as torch_train
from torch_ref import train_step as torch_steps
from torch_ref.models import create_model as create_torch_model
from torch_ref.runtime import Runtime

GIB = 1 << 30


# --- the shared rule ---------------------------------------------------------------------------


def test_candidates_halve_through_the_divisors_that_split_over_the_devices():
    assert memory_fit.micro_batch_candidates(64, 64) == [64, 32, 16, 8, 4, 2, 1]
    assert memory_fit.micro_batch_candidates(64, 16, multiple_of=4) == [16, 8, 4]
    # 48 over 4 devices: 6 and 2 are not multiples of 4, so 12 -> 4 (the largest below 6).
    assert memory_fit.micro_batch_candidates(48, 48, multiple_of=4) == [48, 24, 12, 4]
    assert memory_fit.micro_batch_candidates(12, 12) == [12, 6, 3, 1]


def _need(per_example: int, fixed: int = 0):
    """A step whose memory grows linearly with the micro-batch (what XLA's plans do)."""
    return lambda micro: fixed + per_example * micro


def test_the_largest_micro_batch_that_fits_is_chosen_and_reported():
    recipe = Recipe(model="resnet18", batch_size=64)
    seen = []

    def measure(micro):
        seen.append(micro)
        return _need(GIB, fixed=2 * GIB)(micro)

    # 40 GiB, 90 % usable: 36 GiB; 64 needs 66, 32 needs 34.
    fit = memory_fit.choose_micro_batch(
        recipe, shards=1, limit_bytes=40 * GIB, measure=measure, device="GPU-40"
    )
    assert fit.micro_batch_size == 32 and seen == [64, 32]
    assert fit.tried == ((64, 66 * GIB), (32, 34 * GIB))
    line = fit.line
    assert "66.00 GiB" in line and "40.00 GiB per device of GPU-40" in line
    assert "2 micro-batches of 32" in line and "--micro_batch_size=32" in line
    assert "BatchNorm statistics and Mixup partners per micro-batch" in line
    assert "--memory_efficient" not in line  # resnet18 has none

    whole = memory_fit.choose_micro_batch(
        recipe, shards=1, limit_bytes=80 * GIB, measure=measure, device="GPU-80"
    )
    assert whole.micro_batch_size == 64 and "micro-batches" not in whole.line
    assert whole.line.startswith("memory: the train step needs 66.00 GiB of the 80.00 GiB")


def test_densenet201_is_told_about_memory_efficient():
    fit = memory_fit.choose_micro_batch(
        Recipe(model="densenet201", batch_size=64), shards=1, limit_bytes=40 * GIB,
        measure=_need(GIB), device="GPU-40",
    )  # fmt: skip
    assert fit.micro_batch_size == 32
    assert fit.line.endswith(
        "; --memory_efficient (recompute the dense layers' bottlenecks in the backward pass) "
        "would fit larger micro-batches"
    )
    done = Recipe(model="densenet201", batch_size=64, memory_efficient=True)
    fit = memory_fit.choose_micro_batch(
        done, shards=1, limit_bytes=40 * GIB, measure=_need(GIB), device="GPU-40"
    )
    assert "--memory_efficient" not in fit.line


def test_a_step_that_never_fits_is_one_line_naming_the_flags():
    recipe = Recipe(model="densenet201", batch_size=8, micro_batch_size=4)
    tried = []

    def measure(micro):
        tried.append(micro)
        return None if micro == 4 else 30 * GIB  # the first trial itself ran out of memory

    with pytest.raises(TrainingError) as err:
        memory_fit.choose_micro_batch(
            recipe, shards=2, limit_bytes=16 * GIB, measure=measure, device="GPU-16"
        )
    message = str(err.value)
    assert tried == [4, 2]  # from the requested size; 1 does not split over 2 devices
    assert "\n" not in message and "even in micro-batches of 2" in message
    assert "--micro_batch_size=2 is the smallest that splits over 2 device(s)" in message
    assert "use --memory_efficient" in message and "30.00 GiB" in message


def test_micro_batches_must_split_over_the_devices():
    memory_fit.check_micro_batch(Recipe(batch_size=8, micro_batch_size=4), shards=4)
    memory_fit.check_micro_batch(Recipe(batch_size=8), shards=8)
    with pytest.raises(DataError, match="--micro_batch_size=2 must be divisible by the 4 "):
        memory_fit.check_micro_batch(Recipe(batch_size=8, micro_batch_size=2), shards=4)


def test_the_injected_device_memory_is_read_and_checked(monkeypatch):
    monkeypatch.delenv(memory_fit.DEVICE_MEMORY_ENV, raising=False)
    assert memory_fit.injected_device_memory() is None
    monkeypatch.setenv(memory_fit.DEVICE_MEMORY_ENV, "4e9")
    assert memory_fit.injected_device_memory() == 4_000_000_000
    monkeypatch.setenv(memory_fit.DEVICE_MEMORY_ENV, "lots")
    with pytest.raises(DataError, match=memory_fit.DEVICE_MEMORY_ENV):
        memory_fit.injected_device_memory()


def test_a_checkpoint_resumes_with_another_micro_batch_size(tmp_path):
    """A memory setting, which the fit may choose differently on another device; a checkpoint
    written before the field existed (no key) resumes too."""
    old = Recipe(batch_size=64).to_dict()
    del old["micro_batch_size"]
    check_same_run(old, Recipe(batch_size=64, micro_batch_size=16).to_dict(), tmp_path)
    with pytest.raises(Exception, match="--batch_size: 64 -> 32"):
        check_same_run(old, Recipe(batch_size=32, micro_batch_size=16).to_dict(), tmp_path)


# --- out of memory at run time -----------------------------------------------------------------

XLA_OOM = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3.21GiB.\nBuffer 1: ..."
CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.39 GiB total capacity)"


def test_out_of_memory_errors_are_recognised():
    assert memory_fit.is_out_of_memory(jax.errors.JaxRuntimeError(XLA_OOM))
    assert memory_fit.is_out_of_memory(torch.OutOfMemoryError(CUDA_OOM))
    assert memory_fit.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not memory_fit.is_out_of_memory(RuntimeError("INVALID_ARGUMENT: shapes"))
    assert not memory_fit.is_out_of_memory(MemoryError())  # the host's, not the device's


def test_out_of_memory_becomes_one_line_naming_the_flags():
    recipe = Recipe(model="densenet201", batch_size=64)
    with pytest.raises(TrainingError) as err:
        with memory_fit.out_of_memory_as_user_error(recipe) as note:
            note.recipe = Recipe(model="densenet201", batch_size=64, micro_batch_size=16)
            raise jax.errors.JaxRuntimeError(XLA_OOM)
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        "out of device memory training densenet201 at --batch_size=64 in micro-batches of 16 "
        "(RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3.21GiB. Buffer 1: ...)"
    )
    assert (
        "a smaller --micro_batch_size (gradient accumulation, same global batch, e.g. "
        "--micro_batch_size=8)" in message
    )
    assert "--memory_efficient" in message and message.endswith("or a smaller --batch_size")
    with pytest.raises(ValueError):  # anything else passes through
        with memory_fit.out_of_memory_as_user_error(recipe):
            raise ValueError("not memory")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_cli_fits_the_injected_memory_then_reports_out_of_memory_in_one_line(
    backend, request, tmp_path, monkeypatch, capsys
):
    """With a device memory injected, the CPU takes the accelerator's path: the step is measured
    before the first one (JAX compiles it) and the choice is printed. The out-of-memory error is
    then injected where the first step would raise it; the line names the micro-batch in use."""
    tiny = request.getfixturevalue(f"{backend}_tiny")
    if backend == "jax":
        from jax_impl import train as train_lib

        error = jax.errors.JaxRuntimeError(XLA_OOM)
    else:
        train_lib = torch_train
        error = torch.OutOfMemoryError(CUDA_OOM)

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(train_lib, "train_epochs", out_of_memory)
    monkeypatch.setenv(memory_fit.DEVICE_MEMORY_ENV, str(1 << 40))
    flags = tiny_flags(tiny, tmp_path, micro_batch_size=2)
    with pytest.raises(SystemExit) as exit_:
        run_main(train_lib.main, [*flags, "--no_progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    (fit,) = [line for line in err if line.startswith("memory: ")]
    assert (
        "of the 1024.00 GiB per device" in fit and "(--batch_size=4 in micro-batches of 2)" in fit
    )
    assert any("steps of 4 (2 accumulated micro-batches of 2) per epoch" in x for x in err)
    assert err[-1].startswith(
        "error: out of device memory training lstm at --batch_size=4 in micro-batches of 2 ("
    )
    assert "e.g. --micro_batch_size=1" in err[-1] and "a smaller --batch_size" in err[-1]
    assert not any("Traceback" in line for line in err)


# --- JAX: XLA's memory analysis of the compiled step ---------------------------------------------


def _jax_fit_parts(batch_size: int):
    recipe = Recipe(model="resnet18", batch_size=batch_size, mixup_alpha=0.0)
    recipe = recipe.resolved("jax", accelerator=False)
    graphs, state = ts.split_model(tiny_batchnorm_net(3))
    schedule = make_schedule(recipe, 4)
    tx = ts.make_optimizer(recipe, schedule)
    state["opt_state"] = tx.init(state["params"])
    mesh = ts.make_mesh()
    cfg = ts.StepConfig.from_recipe(recipe, 3)

    def make_step(k):
        cfg_k = dataclasses.replace(cfg, micro_batches=k)
        return ts.make_train_step(graphs.train, tx, schedule, cfg_k, mesh)

    return recipe, make_step, jax.device_put(state, ts.replicated(mesh)), mesh


def test_jax_fit_compiles_the_step_and_halves_until_it_fits(capsys):
    """The injected limit sits just under what the whole batch needs (by XLA's own analysis),
    so the fit must halve once; the step it returns runs. (Not fitting at all is the shared
    rule's, tested above and through torch's create_train_state below.)"""
    recipe, make_step, state, mesh = _jax_fit_parts(batch_size=8)
    make_step = functools.cache(make_step)  # one jit per k: its compilation is then cached
    hw = (32, 32)
    batch = jax_fit.abstract_batch(8, hw, mesh)
    compiled = make_step(1).lower(state, batch, np.int32(0), np.int32(0), False).compile()
    needed = jax_fit.step_bytes(compiled.memory_analysis())
    assert needed > 0
    whole, _ = jax_fit.fit_micro_batch(recipe, make_step, state, hw, mesh, limit_bytes=1 << 40)
    assert whole == 8 and "memory: the train step needs" in capsys.readouterr().err

    limit = int((needed - 1) / memory_fit.HEADROOM)
    micro, step = jax_fit.fit_micro_batch(recipe, make_step, state, hw, mesh, limit_bytes=limit)
    line = capsys.readouterr().err
    assert micro == 4 and "2 micro-batches of 4" in line and "--micro_batch_size=4" in line
    batch = {"mel": jnp.ones((8, *hw, 1)), "label": jnp.arange(8, dtype=jnp.int32) % 3}
    state, metrics = step(state, batch, np.int32(0), np.int32(0), False)
    assert int(metrics["count"]) == 8 and np.isfinite(float(metrics["loss"]))


# --- torch: a trial step ------------------------------------------------------------------------


def test_torch_trial_step_counts_activations_and_leaves_no_trace():
    """resnet18 (BatchNorm, whose running statistics a train-mode forward would move) at 32x16."""
    model = create_torch_model("resnet18", 3, in_chans=1).to(memory_format=torch.channels_last)
    recipe = Recipe(model="resnet18").resolved("torch")
    optimizer = torch_steps.make_optimizer(model.parameters(), recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    sizes = {m: torch_fit.trial_bytes(model, optimizer, m, (32, 16), num_classes=3) for m in (4, 2)}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    weights = sum(p.numel() * 4 for p in model.parameters())
    # Parameters, gradients and AdamW's two moments, plus the saved activations (which grow
    # with the micro-batch: 4 examples save more than 2, and more than nothing).
    assert sizes[4] > sizes[2] > 4 * weights


def test_torch_create_train_state_fits_the_injected_memory(torch_tiny, tmp_path, monkeypatch):
    recipe = tiny_recipe(torch_tiny, tmp_path).resolved("torch")  # lstm, batch 4
    data = load_training_data(recipe, open_dataset(torch_tiny["data_dir"], torch_tiny["config"]))
    hw = memory_fit.input_hw(data)
    assert hw == (128, 16)
    model = create_torch_model("lstm", 3, in_chans=1)
    optimizer = torch_steps.make_optimizer(model.parameters(), recipe)
    needs_2 = torch_fit.trial_bytes(model, optimizer, 2, hw, num_classes=3)

    # The injected memory fits 2 examples per pass but not 4.
    monkeypatch.setenv(memory_fit.DEVICE_MEMORY_ENV, str(int(needs_2 / memory_fit.HEADROOM) + 1))
    rt = Runtime(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    t = torch_train.create_train_state(recipe, data, rt)
    assert t.recipe.micro_batch_size == 2 and t.recipe.micro_batches == 2
    monkeypatch.setenv(memory_fit.DEVICE_MEMORY_ENV, "1000")
    with pytest.raises(TrainingError, match="even in micro-batches of 1 .*--micro_batch_size"):
        torch_train.create_train_state(recipe, data, rt)
