"""PyTorch reference training: ``python -m torch_ref.train --model=resnet18 [recipe flags]``.

The flags are :mod:`shared_data.training.train_cli`'s (the same as ``jax_impl.train``), plus
``--compile`` (``torch.compile`` the model). Multi-GPU: ``torchrun --nproc_per_node=N -m
torch_ref.train ...`` runs DDP (:mod:`torch_ref.runtime`).

Structure (as torchvision's ``references/classification/train.py``, and the same named steps as
``jax_impl.train``): :func:`train_and_evaluate` reads as the run: :func:`create_train_state`,
:func:`restore_or_start`, then per epoch :func:`train_epoch`, :func:`evaluate` and :func:`save`,
and :func:`summarize`. What both backends share (run position, records, summary, lock, hooks) is
in :mod:`shared_data.training`.

A run directory (``--workdir``, default ``runs/torch/<model>/fold<k>``) holds
``checkpoints/{latest,best}.pt`` (:mod:`torch_ref.checkpoint`), ``metrics.jsonl`` (one object per
epoch: ``epoch`` (0-based), ``step``, ``train_loss``, ``train_acc``, ``lr``, ``mixup``,
``val_loss``, ``val_acc``, ``val_song_acc``, ``time_s``), ``recipe.json`` (resolved recipe,
backend, versions, git revision), TensorBoard events under ``tensorboard/`` (``tensorboardX``: no
TensorFlow), ``curves.png``, and ``.train.lock`` while a training writes it. A run whose workdir
holds a checkpoint resumes from it by default, at the same epoch and step and with the same data
order and random draws; an unreadable ``latest.pt`` is skipped with a warning for ``best.pt``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from shared_data.cli import run_main
from shared_data.training import loop
from shared_data.training.hooks import Hook, Hooks, StepInfo
from shared_data.training.lock import RunLock
from shared_data.training.loop import TrainingError
from shared_data.training.memory_fit import (
    check_micro_batch,
    input_hw,
    micro_batch_note,
    out_of_memory_as_user_error,
)
from shared_data.training.metrics_log import MetricsLogger, plot_curves
from shared_data.training.recipe import Recipe
from shared_data.training.resume_check import check_same_run
from shared_data.training.run_state import CheckpointMeta, EpochSums, RunPosition
from shared_data.training.runinfo import RunFields, write_run_info
from shared_data.training.split import TrainingData, load_training_data
from shared_data.training.train_cli import (
    build_train_parser,
    cli_hooks,
    os_errors_as_user_errors,
)
from shared_data.training.validation import validation_metrics
from torch_ref import augment, memory_fit
from torch_ref import train_step as ts
from torch_ref.checkpoint import Checkpoints, rng_state, set_rng_state
from torch_ref.data import eval_batches, train_batches
from torch_ref.models import create_model
from torch_ref.runtime import (
    Runtime,
    all_reduce,
    gather_logits,
    is_main_process,
    log,
    open_or_build_dataset,
    setup_runtime,
)
from torch_ref.schedule import make_schedule, step_scheduler

BACKEND = "torch"


@dataclasses.dataclass
class TrainState:
    """The model, its optimizer and scheduler, and what feeds them on this process."""

    recipe: Recipe
    rt: Runtime
    model: torch.nn.Module
    train_model: torch.nn.Module  # the model under DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Any
    sampler: Any
    val_loader: Any
    spec: Any
    autocast_dtype: torch.dtype | None
    memory_format: torch.memory_format = torch.channels_last


def create_train_state(
    recipe: Recipe, data: TrainingData, rt: Runtime, *, compile_model: bool = False
) -> TrainState:
    """Build the model (seeded by ``recipe.seed``), optimizer, scheduler and loaders.

    On CUDA (or with ``$VOCALGENRE_DEVICE_MEMORY_BYTES``) a trial step fits the train step into
    the device's memory (:func:`torch_ref.memory_fit.fit_micro_batch`); the returned ``recipe``
    holds the micro-batch size the run trains with.
    """
    check_micro_batch(recipe, shards=rt.world, what="processes")
    ts.seed_init_rng(recipe.seed)
    model = create_model(recipe.model, data.num_classes, in_chans=1, **recipe.model_kwargs())
    model.to(device=rt.device, memory_format=torch.channels_last)
    optimizer = ts.make_optimizer(model.parameters(), recipe)
    autocast_dtype = torch.bfloat16 if recipe.precision == "bf16" else None
    micro = memory_fit.fit_micro_batch(
        recipe, model, optimizer, input_hw(data), rt, num_classes=data.num_classes,
        autocast_dtype=autocast_dtype, limit_bytes=memory_fit.device_memory_limit(rt.device),
    )  # fmt: skip
    recipe = dataclasses.replace(recipe, micro_batch_size=micro)
    train_model: torch.nn.Module = model
    if rt.world > 1:
        ids = [rt.local_rank] if rt.device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile_model:
        train_model = torch.compile(train_model)
    pin = rt.device.type == "cuda"
    loader, sampler = train_batches(data, recipe, rank=rt.rank, world=rt.world, pin_memory=pin)
    return TrainState(
        recipe=recipe, rt=rt, model=model, train_model=train_model, optimizer=optimizer,
        scheduler=make_schedule(recipe, data.steps_per_epoch, optimizer=optimizer),
        loader=loader, sampler=sampler,
        val_loader=eval_batches(data, recipe, rank=rt.rank, world=rt.world, pin_memory=pin),
        spec=recipe.spec_augment(), autocast_dtype=autocast_dtype,
    )  # fmt: skip


def restore_or_start(t: TrainState, checkpoints: Checkpoints) -> RunPosition:
    """Load the newest readable checkpoint into ``t`` (falling back to ``best.pt``, with a
    warning, when ``latest.pt`` is unreadable) and return where the run continues.

    Raises:
        TrainingError: the workdir holds a checkpoint and ``--resume=false``.
        CheckpointError: the checkpoint was written by another recipe, or none is readable.
    """
    recipe = t.recipe
    if checkpoints.path("latest") is None and checkpoints.path("best") is None:
        return RunPosition()
    if not recipe.resume:
        raise TrainingError(
            f"--workdir={checkpoints.workdir} already holds a checkpoint and --resume=false; "
            "use a fresh --workdir, or drop --resume=false to continue that run"
        )

    def same_run(meta: dict[str, Any]) -> None:
        stored = CheckpointMeta.from_dict(meta, f"the checkpoint in {checkpoints.directory}")
        check_same_run(stored.recipe, recipe.to_dict(), checkpoints.directory)

    got = checkpoints.restore_readable(
        "latest", t.rt.device, warn=log, set_aside=t.rt.is_main, check=same_run
    )
    t.model.load_state_dict(got.state["model"])
    t.optimizer.load_state_dict(got.state["optimizer"])
    t.scheduler.load_state_dict(got.state["scheduler"])
    set_rng_state(got.state["rng"])
    position = CheckpointMeta.from_dict(got.meta).position()
    log(
        f"resuming {checkpoints.workdir} from step {got.step} (epoch {position.epoch + 1}, "
        f"step {position.step})"
    )
    return position


class _DeviceSums:
    """The epoch's training sums on the device (no per-step host sync), plus the resumed part."""

    def __init__(self, base: EpochSums, device: torch.device):
        self.base = base
        self.acc = {k: torch.zeros((), dtype=torch.float64, device=device)
                    for k in ("loss_sum", "correct", "count")}  # fmt: skip
        self.bad = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.bad |= ~torch.isfinite(loss)
        self.acc["loss_sum"] += loss.double() * count
        self.acc["correct"] += correct.double()
        self.acc["count"] += count

    def reduced(self, rt: Runtime) -> EpochSums:
        """All processes' sums plus the resumed ones (every rank loaded the same checkpoint)."""
        got = {k: float(all_reduce(v.clone(), rt)) for k, v in self.acc.items()}
        b = self.base
        return EpochSums(b.loss_sum + got["loss_sum"], b.correct + got["correct"],
                         b.count + got["count"])  # fmt: skip

    def check_finite(self, rt: Runtime, where: str, lr: float, checkpoints: Checkpoints) -> None:
        """Stop with :class:`TrainingError` if any process saw a non-finite loss."""
        if bool(all_reduce(self.bad.clone().int(), rt, dist.ReduceOp.MAX).item()):
            raise loop.diverged(where, lr, checkpoints)


def train_epoch(
    t: TrainState,
    data: TrainingData,
    position: RunPosition,
    checkpoints: Checkpoints,
    hooks: Hook,
    logger: MetricsLogger,
) -> float:
    """Train epoch ``position.epoch`` from step ``position.step`` to its end; returns the LR of
    its last step. Updates ``position`` and saves mid-epoch checkpoints (``--checkpoint_every``)."""
    recipe, rt, epoch, spe = t.recipe, t.rt, position.epoch, data.steps_per_epoch
    first, mixup = position.step, recipe.mixup_active(epoch)
    t.sampler.set_epoch(epoch, first)
    sums = _DeviceSums(position.sums, rt.device)
    hooks.on_epoch_start(epoch, epochs=recipe.epochs, steps=spe, first_step=first, mixup=mixup)
    lr = t.optimizer.param_groups[0]["lr"]
    for i, (x, labels, index) in enumerate(t.loader, start=first):
        lr = t.optimizer.param_groups[0]["lr"]
        loss, correct = _train_step(t, x, labels, epoch, i, mixup, data.num_classes)
        step_scheduler(t.scheduler, epoch, i, spe)
        sums.add(loss, correct, labels.numel())
        position.step, position.global_step = i + 1, position.global_step + 1
        hooks.on_step(StepInfo(epoch, i, position.global_step, index.tolist(), loss))
        if loop.train_point_due(recipe, position.global_step, i, spe):
            # A training point: the steps since the previous one (the epoch's last step is one,
            # so position.sums is the whole epoch's when the loop ends).
            sums.check_finite(rt, f"epoch {epoch + 1}, step {i}", lr, checkpoints)
            before, position.sums = position.sums, sums.reduced(rt)
            window = position.sums.since(before)
            hooks.on_scalars(position.global_step,
                             logger.log_train_point(position.global_step, window, lr))  # fmt: skip
        if loop.mid_epoch_checkpoint_due(recipe, position.global_step, i, spe):
            save(t, checkpoints, position)
    return lr


def _train_step(t: TrainState, x, labels, epoch: int, i: int, mixup: bool, num_classes: int):
    """One optimizer step on a CPU batch, with the draws of ``(seed, epoch, i, rank)``."""
    recipe, rt = t.recipe, t.rt
    x = x.to(rt.device, non_blocking=True, memory_format=t.memory_format)
    labels = labels.to(rt.device, non_blocking=True)
    g = ts.step_generator(recipe.seed, epoch, i, rt.rank)
    spec_draws = augment.draw_spec_augment(g, t.spec, x.shape[0], x.shape[2], x.shape[3])
    mix = augment.draw_mixup(g, recipe.mixup_alpha, x.shape[0]) if mixup else None
    k = recipe.micro_batches
    if mix is not None and k > 1:
        mix = mix._replace(perm=augment.micro_batch_permutation(mix.perm, k))
    ts.seed_model_rng(recipe.seed, epoch, i, rt.rank)
    return ts.train_step(
        t.train_model, t.optimizer, x, labels, spec_draws=spec_draws, mixup_draws=mix,
        num_classes=num_classes, label_smoothing=recipe.label_smoothing,
        fill_value=t.spec.fill_value, autocast_dtype=t.autocast_dtype, micro_batches=k,
    )  # fmt: skip


def evaluate(t: TrainState, data: TrainingData) -> dict[str, float]:
    """``val_loss``, ``val_acc`` and ``val_song_acc`` on the validation fold: every rank scores
    its clips, the logits are gathered, and :func:`validation_metrics` scores them (as JAX)."""
    logits, indices = ts.eval_logits(
        t.model, t.val_loader, t.rt.device, t.autocast_dtype, t.memory_format
    )
    gathered = gather_logits(logits, indices, data.val_indices, t.rt)
    return validation_metrics(gathered, data.val_labels, data.val_songs)


def save(
    t: TrainState, checkpoints: Checkpoints, position: RunPosition, *, val_acc: float | None = None
) -> None:
    """Checkpoint the run at ``position`` (rank 0 writes; ``val_acc`` marks a new best)."""
    if not t.rt.is_main:
        return
    state = {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
             "scheduler": t.scheduler.state_dict(), "rng": rng_state()}  # fmt: skip
    meta = CheckpointMeta.at(position, t.recipe).to_dict()
    checkpoints.save(position.global_step, state, meta, val_acc=val_acc)


def train_epochs(
    t: TrainState,
    data: TrainingData,
    position: RunPosition,
    checkpoints: Checkpoints,
    hooks: Hook,
    logger: MetricsLogger,
) -> dict[str, float]:
    """Train the remaining epochs (:func:`shared_data.training.loop.run_epochs` of this
    backend's :data:`STEPS`); returns the last validation metrics ({} if none ran)."""
    return loop.run_epochs(STEPS, t, data, position, checkpoints, hooks, logger)


STEPS = loop.EpochSteps(train_epoch=train_epoch, evaluate=evaluate, save=save, log=log)


def summarize(
    t: TrainState, workdir: Path, position: RunPosition, last_val: dict, checkpoints: Checkpoints
) -> dict[str, Any]:
    """The run's summary (:data:`shared_data.training.loop.SUMMARY_KEYS`); draws the curves."""
    curves = plot_curves(workdir) if t.rt.is_main else None
    return loop.summarize(t.recipe, workdir, position, last_val, checkpoints, curves)


def _write_run_info(workdir: Path, recipe: Recipe, t: TrainState, data: TrainingData, compiled):
    if not t.rt.is_main:
        return
    cuda = t.rt.device.type == "cuda"
    fields = RunFields(
        devices=t.rt.world, processes=t.rt.world, platform="gpu" if cuda else t.rt.device.type,
        device_kind=torch.cuda.get_device_name(t.rt.device) if cuda else t.rt.device.type,
        steps_per_epoch=data.steps_per_epoch, train_clips=len(data.train_indices),
        val_clips=len(data.val_indices), backend_options={"compile": compiled},
        dataset=data.record,  # so the run stays usable as an ensemble member
    )  # fmt: skip
    write_run_info(workdir, recipe, BACKEND, extra=fields.to_dict())
    log(
        f"training {recipe.model} on {recipe.dataset} {data.held_out}: "
        f"{len(data.train_indices)} train / {len(data.val_indices)} val clips, "
        f"{data.steps_per_epoch} steps of {recipe.batch_size}{micro_batch_note(recipe)} per "
        f"epoch, {recipe.precision} on "
        f"{t.rt.world} process(es), {t.rt.device}; workdir {workdir}"
    )


def train_and_evaluate(
    recipe: Recipe,
    workdir: str | os.PathLike[str] | None = None,
    *,
    dataset: Any = None,
    hooks: Iterable[Any] = (),
    compile_model: bool = False,
) -> dict[str, Any]:
    """Train ``recipe`` in ``workdir`` (default ``recipe.workdir``), resuming if it holds a run.

    Args:
        recipe: the run's recipe (resolved here for the torch backend and this device).
        dataset: an opened dataset; default :func:`torch_ref.runtime.open_or_build_dataset`.
        hooks: :class:`shared_data.training.hooks.Hook` objects, or callables called with each
            step's ``StepInfo``.
        compile_model: ``torch.compile`` the model (the backend-only ``--compile``).

    Returns:
        the summary, keys :data:`shared_data.training.loop.SUMMARY_KEYS` (as ``jax_impl``'s).
    """
    rt = setup_runtime()
    recipe = recipe.resolved(BACKEND, accelerator=rt.device.type == "cuda")
    workdir = loop.resolve_workdir(recipe, workdir)
    recipe, hooks = dataclasses.replace(recipe, workdir=str(workdir)), Hooks(hooks)
    with RunLock(workdir, enabled=rt.is_main), out_of_memory_as_user_error(recipe) as oom:
        dataset = dataset if dataset is not None else open_or_build_dataset(recipe)
        data = load_training_data(recipe, dataset)
        recipe = dataclasses.replace(recipe, stem=data.stem)  # recorded in recipe.json
        checkpoints = Checkpoints(workdir)
        t = create_train_state(recipe, data, rt, compile_model=compile_model)
        oom.recipe = t.recipe  # an out-of-memory line names the micro-batch in use
        position = restore_or_start(t, checkpoints)
        _write_run_info(workdir, t.recipe, t, data, compile_model)
        logger = MetricsLogger(workdir, enabled=rt.is_main, resume_epoch=position.epoch)
        try:
            last_val = train_epochs(t, data, position, checkpoints, hooks, logger)
        finally:
            logger.close()
            hooks.close()
        return summarize(t, workdir, position, last_val, checkpoints)


def build_parser():
    """The CLI: the shared training flags plus ``--compile``."""
    parser = build_train_parser(
        "python -m torch_ref.train",
        "Train a vocalgenre model with the PyTorch reference backend.",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (torch backend only)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print where the results are."""
    from shared_data.training.recipe_flags import recipe_from_args

    args = build_parser().parse_args(argv)
    rt_main = is_main_process()
    try:
        with os_errors_as_user_errors():
            summary = train_and_evaluate(
                recipe_from_args(args), hooks=cli_hooks(args, is_main=rt_main),
                compile_model=args.compile,
            )  # fmt: skip
        if rt_main:
            print(loop.format_summary(summary))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_main(main)
