"""Train one model on one fold: ``python -m jax_impl.train --model=densenet201``.

With no other flag it trains on the ``synthetic`` dataset in the default data directory, building
it first (with a message) when it is absent. Flags: every field of
:class:`shared_data.training.recipe.Recipe` (``--help`` lists them), ``--no_progress``, and the
multi-host ones (:mod:`jax_impl.runtime`).

Structure (as ``flax/examples/imagenet``, and the same named steps as ``torch_ref.train``):
:func:`main` is the thin CLI; :func:`train_and_evaluate` reads as the run:
:func:`create_train_state`, :func:`restore_or_start`, then per epoch :func:`train_epoch`,
:func:`evaluate` and :func:`save`, and :func:`summarize`. What both backends share (run position,
records, summary, lock, hooks) is in :mod:`shared_data.training`.

The run directory (``--workdir``, default ``runs/jax/<model>/fold<k>``) receives:

- ``checkpoints/``: orbax, the latest checkpoint and the best-validation one
  (:mod:`jax_impl.checkpoint`); a run whose workdir holds a checkpoint resumes from it, also in the
  middle of an epoch (``--checkpoint_every=N`` saves every N steps), with the same data order and
  random draws, so the result is bit-identical to an uninterrupted run (on the CPU); an unreadable
  checkpoint is skipped with a warning (and moved to ``unreadable_checkpoints/``);
- ``metrics.jsonl`` (one object per epoch: ``train_loss``, ``train_acc``, ``val_loss``,
  ``val_acc``, ``val_song_acc``, ``lr``, ...), ``tensorboard/`` (event files, no TensorFlow),
  ``recipe.json`` (resolved recipe, backend, versions, git revision), ``curves.png``;
- ``.train.lock`` while a training writes it (a second one is refused).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jax_impl import data as data_lib
from jax_impl import memory_fit
from jax_impl import train_step as ts
from jax_impl.checkpoint import Checkpoints, abstract_like
from jax_impl.models import create_model
from jax_impl.runtime import (
    CACHE_ENV,
    compute_dtypes,
    default_compilation_cache,
    initialize_distributed,
    is_main_process,
    log,
    open_or_build_dataset,
    use_compilation_cache,
)
from jax_impl.schedule import make_schedule
from shared_data.cli import run_main
from shared_data.dataset import splits
from shared_data.errors import DataError
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

BACKEND = "jax"


@dataclasses.dataclass
class TrainState:
    """The model state and what acts on it: the jitted steps, schedule and shardings."""

    recipe: Recipe
    state: ts.TrainArrays
    train_step: Any
    eval_step: Any
    schedule: Any
    mesh: jax.sharding.Mesh
    batch_sharding: jax.sharding.NamedSharding
    norm: data_lib.Normalizer
    feed: data_lib.TrainFeed | None = None  # started by the first train_epoch, at its position
    val_feed: data_lib.EvalFeed | None = None

    def close_feeds(self) -> None:
        """Stop the loaders' threads and worker processes."""
        for feed in (self.feed, self.val_feed):
            if feed is not None:
                feed.close()
        self.feed = self.val_feed = None


def create_train_state(recipe: Recipe, data: TrainingData) -> TrainState:
    """Build the model (seeded by ``recipe.seed``), optimizer, schedule and the jitted steps.

    On an accelerator (or with ``$VOCALGENRE_DEVICE_MEMORY_BYTES``) the train step is compiled
    here and fitted into the device's memory (:func:`jax_impl.memory_fit.fit_micro_batch`); the
    returned ``recipe`` holds the micro-batch size the run trains with.
    """
    mesh = ts.make_mesh()
    if recipe.batch_size % mesh.size:
        raise DataError(
            f"--batch_size={recipe.batch_size} must be divisible by the {mesh.size} devices"
        )
    check_micro_batch(recipe, shards=mesh.size)
    dtype, param_dtype = compute_dtypes(recipe.precision)
    model = create_model(recipe.model, data.num_classes, in_chans=1, dtype=dtype,
                         param_dtype=param_dtype, rngs=nnx.Rngs(recipe.seed),
                         **recipe.model_kwargs())  # fmt: skip
    graphs, state = ts.split_model(model)
    schedule = make_schedule(recipe, data.steps_per_epoch)
    tx = ts.make_optimizer(recipe, schedule)
    state["opt_state"] = tx.init(state["params"])
    state = jax.device_put(state, ts.replicated(mesh))
    cfg = ts.StepConfig.from_recipe(recipe, data.num_classes)

    def make_step(micro_batches: int):
        cfg_k = dataclasses.replace(cfg, micro_batches=micro_batches)
        return ts.make_train_step(graphs.train, tx, schedule, cfg_k, mesh)

    micro, train_step = memory_fit.fit_micro_batch(
        recipe, make_step, state, input_hw(data), mesh,
        limit_bytes=memory_fit.device_memory_limit(),
    )  # fmt: skip
    return TrainState(
        recipe=dataclasses.replace(recipe, micro_batch_size=micro),
        state=state,
        train_step=train_step,
        eval_step=ts.make_eval_step(graphs.eval, mesh),
        schedule=schedule,
        mesh=mesh,
        batch_sharding=ts.batch_sharded(mesh),
        norm=data_lib.Normalizer(data.mel_mean, data.mel_std),
    )


def restore_or_start(t: TrainState, checkpoints: Checkpoints) -> RunPosition:
    """Load the newest readable checkpoint into ``t`` (skipping unreadable ones with a warning)
    and return where the run continues; a fresh run starts at epoch 0.

    Raises:
        TrainingError: the workdir holds a checkpoint and ``--resume=false``.
        CheckpointError: the checkpoint was written by another recipe, or none is readable.
    """
    recipe = t.recipe
    if checkpoints.path("latest") is None:
        return RunPosition()
    if not recipe.resume:
        raise TrainingError(
            f"{checkpoints.workdir} already holds a checkpoint (step "
            f"{checkpoints.latest_step()}) and --resume=false; pass another --workdir or drop "
            "--resume=false to continue it"
        )

    def same_run(meta: dict[str, Any]) -> None:
        stored = CheckpointMeta.from_dict(meta, f"the checkpoint in {checkpoints.directory}")
        check_same_run(stored.recipe, recipe.to_dict(), checkpoints.directory)

    got = checkpoints.restore_readable(
        "latest", abstract_like(t.state), warn=log, set_aside=is_main_process(), check=same_run
    )
    t.state = got.state
    position = CheckpointMeta.from_dict(got.meta).position()
    log(
        f"resuming {checkpoints.workdir} from step {got.step} (epoch {position.epoch + 1}, "
        f"step {position.step})"
    )
    return position


def train_epoch(
    t: TrainState,
    data: TrainingData,
    position: RunPosition,
    checkpoints: Checkpoints,
    hooks: Hook,
    logger: MetricsLogger,
) -> float:
    """Train epoch ``position.epoch`` from step ``position.step`` to its end; returns the LR of
    its last step. Updates ``position`` (step, global step, sums) and saves mid-epoch
    checkpoints every ``--checkpoint_every`` steps."""
    recipe, epoch, spe = t.recipe, position.epoch, data.steps_per_epoch
    first, mixup, order = position.step, recipe.mixup_active(epoch), data.epoch_order(epoch)
    if t.feed is None:
        t.feed = data_lib.TrainFeed(data, recipe, t.norm, t.batch_sharding, first=(epoch, first))
    batches = t.feed.epoch(epoch, first)
    hooks.on_epoch_start(epoch, epochs=recipe.epochs, steps=spe, first_step=first, mixup=mixup)
    pending: list[dict[str, jax.Array]] = []
    lr = float(t.schedule(position.global_step))
    for step in range(first, spe):
        t.state, metrics = t.train_step(t.state, next(batches), np.int32(epoch), np.int32(step),
                                        mixup)  # fmt: skip
        pending.append(metrics)
        position.step, position.global_step = step + 1, position.global_step + 1
        rows = splits.batch_indices(order, step, recipe.batch_size).tolist()
        hooks.on_step(StepInfo(epoch, step, position.global_step, rows, metrics["loss"]))
        if loop.train_point_due(recipe, position.global_step, step, spe):
            lr = _fold_in(pending, position, checkpoints, hooks, logger)
            pending = []
        if loop.mid_epoch_checkpoint_due(recipe, position.global_step, step, spe):
            save(t, checkpoints, position)
    return lr


def _fold_in(
    pending: list[dict[str, jax.Array]],
    position: RunPosition,
    checkpoints: Checkpoints,
    hooks: Hook,
    logger: MetricsLogger,
) -> float:
    """Fetch the pending steps' metrics (a training point: the steps since the previous one),
    stop on a non-finite loss, add them to the epoch's sums and log the point; returns the last
    step's LR."""
    fetched = jax.device_get(pending)
    losses = [float(m["loss"]) for m in fetched]
    bad = next((i for i, v in enumerate(losses) if not np.isfinite(v)), None)
    if bad is not None:
        at = position.step - len(losses) + bad
        where = f"epoch {position.epoch + 1}, step {at} (loss {losses[bad]})"
        raise loop.diverged(where, float(fetched[bad]["lr"]), checkpoints)
    window = EpochSums()
    for m in fetched:
        window.add(m["loss"], m["correct"], m["count"])
        position.sums.add(m["loss"], m["correct"], m["count"])
    lr = float(fetched[-1]["lr"])
    hooks.on_scalars(position.global_step, logger.log_train_point(position.global_step, window, lr))
    return lr


def evaluate(t: TrainState, data: TrainingData) -> dict[str, float]:
    """``val_loss``, ``val_acc`` and ``val_song_acc`` of ``t`` on the validation fold
    (:func:`shared_data.training.validation.validation_metrics` of the gathered logits)."""
    if t.val_feed is None:
        batches = data_lib.EvalBatches(
            data.source, data.val_indices, t.recipe.batch_size, t.norm,
            process_index=jax.process_index(), process_count=jax.process_count(),
        )  # fmt: skip
        t.val_feed = data_lib.EvalFeed(batches, t.batch_sharding, t.recipe.num_workers)
    # The eval step's output is replicated: every process holds all logits, in fold order.
    outputs = [t.eval_step(t.state, b) for b in t.val_feed.once()]
    logits = np.concatenate([np.asarray(o) for o in outputs])[: len(data.val_indices)]
    return validation_metrics(logits, data.val_labels, data.val_songs)


def save(
    t: TrainState, checkpoints: Checkpoints, position: RunPosition, *, val_acc: float | None = None
) -> None:
    """Checkpoint the run at ``position`` (all processes write their shards).

    ``val_acc`` only when this epoch improved the best: orbax then keeps the first epoch that
    reached the best accuracy (as ``torch_ref`` does), and other checkpoints only while latest.
    """
    if not bool(ts.all_finite(t.state["params"])):
        raise TrainingError(
            f"the parameters hold NaN/inf at step {position.global_step}; not saving them. "
            f"{loop.last_good(checkpoints)} Lower --lr."
        )
    meta = CheckpointMeta.at(position, t.recipe).to_dict()
    checkpoints.save(position.global_step, t.state, meta, val_acc=val_acc)


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
    curves = plot_curves(workdir) if is_main_process() else None
    return loop.summarize(t.recipe, workdir, position, last_val, checkpoints, curves)


def _write_run_info(workdir: Path, recipe: Recipe, t: TrainState, data: TrainingData) -> None:
    if not is_main_process():
        return
    fields = RunFields(
        devices=t.mesh.size, processes=jax.process_count(), platform=jax.default_backend(),
        device_kind=jax.devices()[0].device_kind, steps_per_epoch=data.steps_per_epoch,
        train_clips=len(data.train_indices), val_clips=len(data.val_indices),
        dataset=data.record,  # so the run stays usable as an ensemble member
    )  # fmt: skip
    write_run_info(workdir, recipe, BACKEND, extra=fields.to_dict())
    log(
        f"training {recipe.model} on {recipe.dataset} {data.held_out}: "
        f"{len(data.train_indices)} train / {len(data.val_indices)} val clips, "
        f"{data.steps_per_epoch} steps of {recipe.batch_size}{micro_batch_note(recipe)} per "
        f"epoch, {recipe.precision} on "
        f"{t.mesh.size} {jax.default_backend()} device(s); workdir {workdir}"
    )


def train_and_evaluate(
    recipe: Recipe,
    workdir: str | os.PathLike[str] | None = None,
    *,
    dataset: Any = None,
    hooks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Train ``recipe`` in ``workdir`` (default ``recipe.workdir``), resuming if it holds a run.

    Args:
        recipe: the run's recipe (resolved here: data_dir, workdir, lr, ... get their defaults).
        dataset: an opened dataset; default :func:`jax_impl.runtime.open_or_build_dataset`.
        hooks: :class:`shared_data.training.hooks.Hook` objects (e.g. ``ProgressBar()``), or
            callables called with each step's ``StepInfo``.

    Returns:
        the summary, keys :data:`shared_data.training.loop.SUMMARY_KEYS` (as ``torch_ref``'s).

    Raises:
        UserError subclasses: bad flag or model (``RecipeError``/``ModelError``), missing dataset
        (``DataError``), diverged loss, locked or unusable workdir, a step that does not fit or
        runs out of device memory (``TrainingError``), mismatched, unreadable or unwritable
        checkpoint (``CheckpointError``).
    """
    recipe = recipe.resolved(BACKEND, accelerator=jax.default_backend() != "cpu")
    workdir = loop.resolve_workdir(recipe, workdir)
    recipe, hooks = dataclasses.replace(recipe, workdir=str(workdir)), Hooks(hooks)
    with RunLock(workdir, enabled=is_main_process()), out_of_memory_as_user_error(recipe) as oom:
        dataset = dataset if dataset is not None else open_or_build_dataset(recipe)
        data = load_training_data(recipe, dataset)
        recipe = dataclasses.replace(recipe, stem=data.stem)  # recorded in recipe.json
        checkpoints = Checkpoints(workdir)
        t = None
        try:
            t = create_train_state(recipe, data)
            oom.recipe = t.recipe  # an out-of-memory line names the micro-batch in use
            position = restore_or_start(t, checkpoints)
            _write_run_info(workdir, t.recipe, t, data)
            logger = MetricsLogger(workdir, enabled=is_main_process(), resume_epoch=position.epoch)
            try:
                last_val = train_epochs(t, data, position, checkpoints, hooks, logger)
            finally:
                logger.close()
            return summarize(t, workdir, position, last_val, checkpoints)
        finally:
            if t is not None:
                t.close_feeds()
            hooks.close()
            checkpoints.close()


# --- CLI --------------------------------------------------------------------------------------


def build_parser():
    """The CLI: the shared training flags plus the multi-host ones."""
    parser = build_train_parser(
        "python -m jax_impl.train", "Train a vocal-genre classifier in JAX/Flax (one fold)."
    )
    group = parser.add_argument_group("multi-host (see docs/slurm.md)")
    group.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    group.add_argument("--num_processes", type=int, default=None, help="processes in the run")
    group.add_argument("--process_id", type=int, default=None, help="this process's index")
    parser.add_argument(
        "--jax_cache", default=None, metavar="DIR|off",
        help="directory of JAX's persistent compilation cache, or off (default "
        f"${CACHE_ENV}, else {default_compilation_cache()})",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shared_data.training.recipe_flags import recipe_from_args

    recipe = recipe_from_args(args)
    use_compilation_cache(args.jax_cache)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's per-save info lines
    with os_errors_as_user_errors():
        summary = train_and_evaluate(recipe, hooks=cli_hooks(args, is_main=is_main_process()))
    if is_main_process():
        print(loop.format_summary(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
