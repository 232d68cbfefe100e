"""PyTorch reference training: ``python -m torch_ref.train --model=resnet18 [recipe flags]``.

The flags are :mod:`shared_data.training.recipe`'s (the same as ``jax_impl.train``), plus
``--compile`` (``torch.compile`` the model). Multi-GPU: ``torchrun --nproc_per_node=N -m
torch_ref.train ...`` runs DDP (``WORLD_SIZE``/``LOCAL_RANK`` from torchrun; NCCL on GPUs, gloo on
the CPU); the global ``--batch_size`` is split evenly over the processes.

API for tests and ``torch_ref.cv``::

    summary = train_and_evaluate(recipe, compile_model=False, dataset=None, on_step=None)
    # summary: workdir, best_val_acc, best_epoch, final_val_acc, final_val_song_acc, ...

A run directory (``--workdir``, default ``runs/torch/<model>/fold<k>``) holds
``checkpoints/{latest,best}.pt`` (:mod:`torch_ref.checkpoint`), ``metrics.jsonl`` (one object per
epoch: ``epoch`` (0-based), ``step``, ``train_loss``, ``train_acc``, ``lr``, ``mixup``,
``val_loss``, ``val_acc``, ``val_song_acc``, ``time_s``), ``recipe.json`` (resolved recipe,
backend, versions, git revision), TensorBoard events under ``tensorboard/`` (``tensorboardX``: no
TensorFlow) and ``curves.png``. A run whose workdir holds a checkpoint resumes from it by default,
at the same epoch and step and with the same data order and random draws.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from shared_data.cli import run_main
from shared_data.ensemble import core
from shared_data.ensemble.members import DATASET_KEY
from shared_data.errors import UserError
from shared_data.training.metrics_log import MetricsLogger, plot_curves
from shared_data.training.recipe import Recipe, add_recipe_flags, recipe_from_args
from shared_data.training.resume_check import check_same_run
from shared_data.training.runinfo import write_run_info
from torch_ref import augment, steps
from torch_ref.checkpoint import Checkpoints, rng_state, set_rng_state
from torch_ref.data import load_training_data, train_loader, val_loader
from torch_ref.models import create_model
from torch_ref.schedule import build_scheduler, step_scheduler


class TrainingError(UserError):
    """The run cannot go on (a non-finite loss, a workdir that must not be reused)."""


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where this process trains: its DDP rank among ``world`` and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """What ``on_step`` sees after each optimizer step (tests use it to check the data order)."""

    epoch: int
    step: int
    global_step: int
    indices: list[int]
    loss: torch.Tensor


def setup_runtime() -> Runtime:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Runtime(rank=rank, world=world, local_rank=local_rank, device=device)


def _all_reduce(t: torch.Tensor, rt: Runtime, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if rt.world > 1:
        dist.all_reduce(t, op=op)
    return t


_ACCUM_KEYS = ("loss_sum", "correct", "count")


def _zero_accum(device: torch.device) -> dict[str, torch.Tensor]:
    """Running sums of an epoch's training metrics (on the device: no per-step host sync)."""
    return {k: torch.zeros((), dtype=torch.float64, device=device) for k in _ACCUM_KEYS}


class _Run:
    """The state of one training run and the steps that advance it."""

    def __init__(self, recipe: Recipe, rt: Runtime, dataset: Any | None, compile_model: bool):
        self.recipe, self.rt = recipe, rt
        self.ckpts = Checkpoints(recipe.workdir)
        if self.ckpts.has_latest() and not recipe.resume:
            raise TrainingError(
                f"--workdir={recipe.workdir} already holds a checkpoint and --resume=false; "
                "use a fresh --workdir, or drop --resume=false to continue that run"
            )
        self.data = load_training_data(recipe, dataset)
        self.device, self.memory_format = rt.device, torch.channels_last
        steps.seed_init_rng(recipe.seed)
        self.model = create_model(
            recipe.model, self.data.num_classes, in_chans=1, **recipe.model_kwargs()
        )
        self.model.to(device=self.device, memory_format=self.memory_format)
        self.optimizer = steps.build_optimizer(self.model.parameters(), recipe)
        self.scheduler = build_scheduler(self.optimizer, recipe)
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.best = (-1.0, -1)  # (val_acc, epoch)
        self.resumed_accum: dict[str, float] | None = None
        self._resume()
        self.train_model: torch.nn.Module = self.model
        if rt.world > 1:
            ids = [rt.local_rank] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if compile_model:
            self.train_model = torch.compile(self.train_model)
        pin = self.device.type == "cuda"
        self.loader, self.sampler = train_loader(
            self.data, recipe, rank=rt.rank, world=rt.world, pin_memory=pin
        )
        self.val_loader = val_loader(
            self.data, recipe, rank=rt.rank, world=rt.world, pin_memory=pin
        )
        _, rows = core.group_songs(self.data.val_songs)
        self.song_labels = core.song_labels(self.data.val_labels, self.data.val_songs)
        self.song_row = torch.full((len(self.data.source),), -1, dtype=torch.int64)
        self.song_row[torch.from_numpy(self.data.val_indices)] = torch.from_numpy(rows)
        self.spec = recipe.spec_augment()
        self.autocast_dtype = torch.bfloat16 if recipe.precision == "bf16" else None

    def _resume(self) -> None:
        state = self.ckpts.load_latest(map_location=self.device) if self.recipe.resume else None
        if state is None:
            return
        check_same_run(state["recipe"], self.recipe.to_dict(), self.ckpts.latest_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.epoch, self.step, self.global_step = (
            state["epoch"],
            state["step"],
            state["global_step"],
        )
        self.best = (state["best_val_acc"], state["best_epoch"])
        # Only rank 0 carries the (all-reduced) sums of the interrupted epoch, so they count once.
        if self.step > 0 and self.rt.is_main:
            self.resumed_accum = state["epoch_accum"]

    def state(self, *, epoch: int, step: int, accum: dict[str, float]) -> dict[str, Any]:
        """The checkpoint of the run continuing at ``(epoch, step)``."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
            "global_step": self.global_step,
            "best_val_acc": self.best[0],
            "best_epoch": self.best[1],
            "epoch_accum": accum,
            "rng": rng_state(),
            "recipe": self.recipe.to_dict(),
        }

    def reduced(self, accum: dict[str, torch.Tensor]) -> dict[str, float]:
        """``accum`` summed over the processes, as floats."""
        return {k: float(_all_reduce(v.clone(), self.rt)) for k, v in accum.items()}

    def check_finite(self, bad: torch.Tensor, where: str, lr: float) -> None:
        """Stop with :class:`TrainingError` if any process saw a non-finite loss."""
        if not bool(_all_reduce(bad.clone().int(), self.rt, dist.ReduceOp.MAX).item()):
            return
        last = (
            f"the last good checkpoint {self.ckpts.latest_path} is left as it was"
            if self.ckpts.has_latest()
            else "no checkpoint had been written yet"
        )
        raise TrainingError(
            f"the training loss became NaN or infinite ({where}, lr {lr:.3g}); training stopped "
            f"and {last}. Lower --lr, or use --precision=fp32 if this ran in bf16."
        )

    def train_epoch(self, epoch: int, on_step: Callable[[StepInfo], None] | None) -> dict[str, Any]:
        """Train epoch ``epoch`` from ``self.step`` to its end; its record's training fields."""
        recipe, rt = self.recipe, self.rt
        n_steps = self.data.steps_per_epoch
        start, self.step = self.step, 0
        self.sampler.set_epoch(epoch, start)
        mixup = recipe.mixup_active(epoch)
        accum = _zero_accum(self.device)
        if self.resumed_accum is not None:
            for k, v in self.resumed_accum.items():
                accum[k] += v
            self.resumed_accum = None
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(
            total=n_steps,
            initial=start,
            desc=f"epoch {epoch + 1}/{recipe.epochs}",
            disable=not rt.is_main,
            file=sys.stderr,
            leave=False,
        )
        for i, (x, labels, index) in enumerate(self.loader, start=start):
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            labels = labels.to(self.device, non_blocking=True)
            g = steps.step_generator(recipe.seed, epoch, i, rt.rank)
            spec_draws = augment.draw_spec_augment(g, self.spec, x.shape[0], x.shape[2], x.shape[3])
            mix = augment.draw_mixup(g, recipe.mixup_alpha, x.shape[0]) if mixup else None
            steps.seed_model_rng(recipe.seed, epoch, i, rt.rank)
            lr = self.optimizer.param_groups[0]["lr"]
            loss, correct = steps.train_step(
                self.train_model,
                self.optimizer,
                x,
                labels,
                spec_draws=spec_draws,
                mixup_draws=mix,
                num_classes=self.data.num_classes,
                label_smoothing=recipe.label_smoothing,
                fill_value=self.spec.fill_value,
                autocast_dtype=self.autocast_dtype,
            )
            step_scheduler(self.scheduler, epoch, i, n_steps)
            self.global_step += 1
            bad |= ~torch.isfinite(loss)
            accum["loss_sum"] += loss.double() * labels.numel()
            accum["correct"] += correct.double()
            accum["count"] += labels.numel()
            bar.update(1)
            if on_step is not None:
                on_step(StepInfo(epoch, i, self.global_step, index.tolist(), loss))
            if self.global_step % recipe.log_every == 0:
                self.check_finite(bad, f"epoch {epoch + 1}, step {i + 1}", lr)
                sums = self.reduced(accum)
                running = {
                    "loss": sums["loss_sum"] / sums["count"],
                    "acc": sums["correct"] / sums["count"],
                    "lr": lr,
                }
                bar.set_postfix(
                    loss=f"{running['loss']:.4f}", acc=f"{running['acc']:.3f}", lr=f"{lr:.2e}"
                )
                self.logger.log_scalars(self.global_step, running, prefix="train")
            every = recipe.checkpoint_every
            if every and self.global_step % every == 0 and i + 1 < n_steps:
                self.check_finite(bad, f"epoch {epoch + 1}, step {i + 1}", lr)
                sums = self.reduced(accum)
                if rt.is_main:
                    self.ckpts.save_latest(self.state(epoch=epoch, step=i + 1, accum=sums))
        bar.close()
        self.check_finite(bad, f"epoch {epoch + 1}", lr)
        sums = self.reduced(accum)
        return {
            "epoch": epoch,
            "step": self.global_step,
            "train_loss": sums["loss_sum"] / sums["count"],
            "train_acc": sums["correct"] / sums["count"],
            "lr": lr,
            "mixup": mixup,
        }

    def validate(self) -> dict[str, float]:
        """``val_loss``, ``val_acc`` and ``val_song_acc`` over the validation fold (all processes).

        Song accuracy sums the clips' softmax probabilities per song (the way the ensemble votes).
        """
        totals = steps.evaluate(
            self.model,
            self.val_loader,
            self.device,
            self.autocast_dtype,
            self.memory_format,
            song_row=self.song_row,
            num_songs=len(self.song_labels),
            num_classes=self.data.num_classes,
        )
        song_probs = _all_reduce(totals.pop("song_probs"), self.rt).cpu().numpy()
        sums = self.reduced(totals)
        return {
            "val_loss": sums["loss_sum"] / sums["count"],
            "val_acc": sums["correct"] / sums["count"],
            "val_song_acc": core.accuracy(song_probs.argmax(-1), self.song_labels),
        }

    def run(self, on_step: Callable[[StepInfo], None] | None) -> dict[str, float]:
        """Train the remaining epochs; returns the last validation metrics ({} if none ran)."""
        recipe, rt = self.recipe, self.rt
        last_val: dict[str, float] = {}
        self.logger = MetricsLogger(recipe.workdir, enabled=rt.is_main, resume_epoch=self.epoch)
        try:
            for epoch in range(self.epoch, recipe.epochs):
                t0 = time.perf_counter()
                record = self.train_epoch(epoch, on_step)
                if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
                    last_val = self.validate()
                    record.update(last_val)
                    if last_val["val_acc"] > self.best[0]:
                        self.best = (last_val["val_acc"], epoch)
                        if rt.is_main:  # best first: a crash before "latest" redoes the epoch
                            self.ckpts.save_best(self.state(epoch=epoch + 1, step=0, accum={}))
                record["time_s"] = round(time.perf_counter() - t0, 3)
                self.epoch = epoch + 1
                if rt.is_main:
                    self.ckpts.save_latest(self.state(epoch=epoch + 1, step=0, accum={}))
                self.logger.log_epoch(record, step=self.global_step)
                if rt.is_main:
                    print(_epoch_line(record, recipe.epochs), flush=True)
        finally:
            self.logger.close()
        return last_val


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    val = (
        f"val_acc {record['val_acc']:.4f}  song acc {record['val_song_acc']:.4f}  "
        if "val_acc" in record
        else ""
    )
    return (
        f"epoch {record['epoch'] + 1}/{epochs}  train_loss {record['train_loss']:.4f}  "
        f"train_acc {record['train_acc']:.4f}  {val}lr {record['lr']:.3g}"
    )


def train_and_evaluate(
    recipe: Recipe,
    *,
    compile_model: bool = False,
    dataset: Any | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` (resuming from its workdir when it holds a checkpoint); see module doc.

    Args:
        recipe: the run's recipe (resolved here for the torch backend and this device).
        compile_model: ``torch.compile`` the model.
        dataset: an opened dataset to use instead of ``open_dataset(data_dir, dataset)``.
        on_step: called after every optimizer step (synchronises the device: tests only).
    Returns:
        a JSON-able summary of the run.
    """
    rt = setup_runtime()
    recipe = recipe.resolved("torch", accelerator=rt.device.type == "cuda")
    run = _Run(recipe, rt, dataset, compile_model)
    if rt.is_main:
        extra = {
            "world_size": rt.world,
            "device": str(rt.device),
            "num_classes": run.data.num_classes,
            "label_names": list(run.data.label_names),
            "train_clips": len(run.data.train_indices),
            "val_clips": len(run.data.val_indices),
            "steps_per_epoch": run.data.steps_per_epoch,
            "compile": compile_model,
            DATASET_KEY: run.data.record,
        }
        write_run_info(recipe.workdir, recipe, "torch", extra=extra)
    last_val = run.run(on_step)
    curves = plot_curves(recipe.workdir) if rt.is_main else None
    best_acc, best_epoch = run.best
    return {
        "workdir": str(recipe.workdir),
        "model": recipe.model,
        "fold": recipe.fold,
        "best_val_acc": best_acc if best_epoch >= 0 else None,
        "best_epoch": best_epoch if best_epoch >= 0 else None,
        "final_val_acc": last_val.get("val_acc"),
        "final_val_song_acc": last_val.get("val_song_acc"),
        "epochs_done": run.epoch,
        "global_step": run.global_step,
        "best_checkpoint": str(run.ckpts.best_path),
        "curves": str(curves) if curves else None,
    }


def build_parser() -> argparse.ArgumentParser:
    """The CLI: the recipe's flags plus ``--compile``."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_ref.train",
        description="Train a vocalgenre model with the PyTorch reference backend.",
    )
    add_recipe_flags(parser)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (torch backend only)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print where the results are."""
    args = build_parser().parse_args(argv)
    summary = train_and_evaluate(recipe_from_args(args), compile_model=args.compile)
    if int(os.environ.get("RANK", "0")) == 0:
        best = summary["best_val_acc"]
        print(
            f"best val_acc {best:.4f} at epoch {summary['best_epoch'] + 1}; "
            f"run directory {summary['workdir']} (checkpoints/, metrics.jsonl, curves.png)"
            if best is not None
            else f"run directory {summary['workdir']}"
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_main(main)
