"""Train one model on one fold: ``python -m jax_impl.train --model=densenet201``.

With no other flag it trains on the ``synthetic`` dataset in the default data directory, building
it first (with a message) when it is absent. Flags: every field of
:class:`shared_data.training.recipe.Recipe` (``--help`` lists them), plus the multi-host ones below.

Structure (as ``flax/examples/imagenet``): :func:`main` is the thin CLI; :func:`train_and_evaluate`
is the testable loop, ``(recipe, workdir) -> summary dict``.

The run directory (``--workdir``, default ``runs/jax/<model>/fold<k>``) receives:

- ``checkpoints/``: orbax, the latest checkpoint and the best-validation one
  (:mod:`jax_impl.checkpoint`); a run whose workdir holds a checkpoint resumes from it, also in the
  middle of an epoch (``--checkpoint_every=N`` saves every N steps), with the same data order and
  random draws, so the result is bit-identical to an uninterrupted run (on the CPU);
- ``metrics.jsonl`` (one object per epoch: ``train_loss``, ``train_acc``, ``val_loss``,
  ``val_acc``, ``val_song_acc``, ``lr``, ...), ``tensorboard/`` (event files, no TensorFlow),
  ``recipe.json`` (resolved recipe, backend, versions, git revision), ``curves.png``.

Multi-host: under SLURM with more than one task, ``jax.distributed.initialize()`` reads the
cluster from the environment; elsewhere pass ``--coordinator_address=host:port --num_processes=N
--process_id=i`` (see ``docs/slurm.md``). Every process runs the same command; process 0 writes
the logs, all processes write their checkpoint shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jax_impl import data as data_lib
from jax_impl import train_step as ts
from jax_impl.checkpoint import Checkpoints, abstract_like
from jax_impl.models import create_model
from jax_impl.schedule import schedule_from_recipe
from shared_data.cli import run_main
from shared_data.ensemble import core
from shared_data.ensemble.members import DATASET_KEY, dataset_record
from shared_data.errors import DataError, UserError
from shared_data.training.metrics_log import MetricsLogger, plot_curves, read_metrics
from shared_data.training.recipe import Recipe, add_recipe_flags, recipe_from_args
from shared_data.training.resume_check import check_same_run
from shared_data.training.runinfo import write_run_info

SYNTHETIC_CONFIGS = ("synthetic", "synthetic_small")


class TrainingError(UserError):
    """The run cannot go on (diverged loss, a checkpoint from another recipe, ...)."""


# --- setup ------------------------------------------------------------------------------------


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process JAX run when one is configured; returns whether it did.

    Explicit flags win; otherwise a SLURM job step with more than one task auto-configures
    (``jax.distributed.initialize()`` reads ``SLURM_*``). A single process does nothing.
    """
    explicit = coordinator_address is not None or num_processes is not None
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", os.environ.get("SLURM_NPROCS", "1")) or 1)
    if not explicit and slurm_tasks <= 1:
        return False
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise UserError(
            "multi-host runs need all three of --coordinator_address, --num_processes and "
            "--process_id (or none of them under SLURM)"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return True


def open_or_build_dataset(recipe: Recipe, *, log=print) -> Any:
    """``open_dataset(recipe.data_dir, recipe.dataset)``, building a synthetic config if absent.

    Other configs (folder, csv) need input files, so their absence raises the builder's
    ``DataError``, which names the build command. In a multi-process run process 0 builds and
    the others wait for it.
    """
    from shared_data.dataset.builder import build_command, build_dataset, open_dataset

    try:
        return open_dataset(recipe.data_dir, recipe.dataset)
    except DataError:
        if recipe.dataset not in SYNTHETIC_CONFIGS:
            raise
    if jax.process_index() == 0:
        log(
            f"dataset {recipe.dataset!r} is not built in {recipe.data_dir}: building it now "
            f"(the same as `{build_command(recipe.dataset, recipe.data_dir)}`)"
        )
        build_dataset(recipe.data_dir, recipe.dataset)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("vocalgenre dataset built")
    return open_dataset(recipe.data_dir, recipe.dataset)


def compute_dtypes(precision: str) -> tuple[Any, Any]:
    """``(compute dtype, parameter dtype)`` of a resolved ``--precision``."""
    return (jnp.bfloat16 if precision == "bf16" else jnp.float32), jnp.float32


def _meta(
    recipe: Recipe,
    *,
    next_epoch: int,
    next_step: int,
    global_step: int,
    epoch_sums: dict[str, float],
    best: dict[str, Any],
) -> dict[str, Any]:
    return {
        "next_epoch": next_epoch,
        "next_step": next_step,
        "global_step": global_step,
        "epoch_sums": epoch_sums,
        "best": best,
        "recipe": recipe.to_dict(),
    }


# --- evaluation -------------------------------------------------------------------------------


def evaluate(
    eval_fn: Any,
    state: ts.TrainState,
    data: data_lib.TrainingData,
    batch_sharding: jax.sharding.NamedSharding,
    *,
    global_batch: int,
) -> dict[str, float]:
    """Validation loss and clip- and song-level accuracy of ``state`` on the validation fold.

    Song accuracy averages the clips' softmax probabilities per song (the ensemble's song rule).
    """
    batches = data_lib.eval_batches(
        data.source,
        data.val_indices,
        global_batch=global_batch,
        norm=data.norm,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    outputs = [eval_fn(state, b) for b in data_lib.to_device(batches, batch_sharding)]
    logits = np.concatenate([np.asarray(o) for o in outputs])[: len(data.val_indices)]
    labels = data.val_labels
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    val_loss = float(-logp[np.arange(len(labels)), labels].mean())
    val_acc = float((logits.argmax(-1) == labels).mean())
    _, song_probs = core.aggregate_songs(np.exp(logp), data.val_songs)
    song_labels = core.song_labels(labels, data.val_songs)
    song_acc = core.accuracy(song_probs.argmax(-1), song_labels)
    return {"val_loss": val_loss, "val_acc": val_acc, "val_song_acc": song_acc}


# --- the loop ---------------------------------------------------------------------------------


def _is_finite(x: float) -> bool:
    return math.isfinite(x)


def train_and_evaluate(
    recipe: Recipe,
    workdir: str | os.PathLike[str] | None = None,
    *,
    dataset: Any = None,
    progress: bool = True,
    log=None,
) -> dict[str, Any]:
    """Train ``recipe`` in ``workdir`` (default ``recipe.workdir``), resuming if it holds a run.

    Args:
        recipe: the run's recipe (resolved here: data_dir, workdir, lr, ... get their defaults).
        dataset: an opened dataset; default :func:`open_or_build_dataset`.
        progress: show the tqdm bar (process 0 only).
        log: ``print``-like function for status lines (default: print to stderr on process 0).

    Returns:
        ``{"workdir", "model", "fold", "best_val_acc", "best_epoch", "final_val_acc",
        "final_val_song_acc", "epochs_done", "global_step", "best_step", "latest_step",
        "best_checkpoint", "checkpoints", "curves", "metrics"}`` (as ``torch_ref.train``'s, plus
        the orbax steps).

    Raises:
        UserError subclasses: unknown model or bad flag (``RecipeError``/``ModelError``), missing
        dataset (``DataError``), diverged loss or mismatched checkpoint (``TrainingError``), failed
        checkpoint write (``CheckpointError``).
    """
    is_main = jax.process_index() == 0
    if log is None:

        def log(message: str) -> None:
            if is_main:
                print(message, file=sys.stderr, flush=True)

    accelerator = jax.default_backend() != "cpu"
    recipe = recipe.resolved("jax", accelerator=accelerator)
    workdir = Path(workdir if workdir is not None else recipe.workdir).expanduser()
    recipe = dataclasses.replace(recipe, workdir=str(workdir))

    dataset = dataset if dataset is not None else open_or_build_dataset(recipe, log=log)
    data = data_lib.load_training_data(recipe, dataset)
    spe = data.steps_per_epoch
    total_steps = spe * recipe.epochs

    mesh = ts.make_mesh()
    if recipe.batch_size % mesh.size:
        raise DataError(
            f"--batch_size={recipe.batch_size} must be divisible by the {mesh.size} devices"
        )
    rep, batch_sharding = ts.replicated(mesh), ts.batch_sharded(mesh)

    dtype, param_dtype = compute_dtypes(recipe.precision)
    model = create_model(
        recipe.model,
        data.num_classes,
        in_chans=1,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=nnx.Rngs(recipe.seed),
        **recipe.model_kwargs(),
    )
    graphs, state = ts.split_model(model)
    del model
    schedule = schedule_from_recipe(recipe, spe)
    tx = ts.make_optimizer(recipe, schedule)
    state["opt_state"] = tx.init(state["params"])
    state = jax.device_put(state, rep)

    checkpoints = Checkpoints(workdir)
    start_epoch, start_step = 0, 0
    epoch_sums = {"loss": 0.0, "correct": 0.0, "count": 0.0, "steps": 0.0}
    best: dict[str, Any] = {"val_acc": None, "epoch": None}
    latest = checkpoints.latest_step()
    if latest is not None:
        try:
            if not recipe.resume:
                raise TrainingError(
                    f"{workdir} already holds a checkpoint (step {latest}) and --resume=false; "
                    "pass another --workdir or drop --resume=false to continue it"
                )
            meta = checkpoints.read_meta(latest)
            check_same_run(meta["recipe"], recipe.to_dict(), checkpoints.directory / str(latest))
            state, meta = checkpoints.restore(latest, abstract_like(state))
        except BaseException:
            checkpoints.close()
            raise
        start_epoch, start_step = int(meta["next_epoch"]), int(meta["next_step"])
        epoch_sums = {k: float(v) for k, v in meta["epoch_sums"].items()}
        best = dict(meta["best"])
        log(f"resuming {workdir} from step {latest} (epoch {start_epoch + 1}, step {start_step})")

    logger = MetricsLogger(workdir, enabled=is_main, resume_epoch=start_epoch)
    if is_main:
        write_run_info(
            workdir,
            recipe,
            "jax",
            extra={
                "devices": mesh.size,
                "processes": jax.process_count(),
                "platform": jax.default_backend(),
                "device_kind": jax.devices()[0].device_kind,
                "steps_per_epoch": spe,
                "num_train": len(data.train_indices),
                "num_val": len(data.val_indices),
                # So the run stays usable as an ensemble member without its dataset.
                DATASET_KEY: dataset_record(dataset),
            },
        )
    log(
        f"training {recipe.model} on {recipe.dataset} fold {recipe.fold}: "
        f"{len(data.train_indices)} train / {len(data.val_indices)} val clips, {spe} steps of "
        f"{recipe.batch_size} per epoch, {recipe.precision} on {mesh.size} {jax.default_backend()} "
        f"device(s); workdir {workdir}"
    )

    cfg = ts.StepConfig.from_recipe(recipe, data.num_classes)
    train_fn = ts.make_train_step(graphs.train, tx, schedule, cfg, mesh)
    eval_fn = ts.make_eval_step(graphs.eval, mesh)
    last_val: dict[str, float] = {}

    def save(step: int, val_acc: float | None, next_epoch: int, next_step: int) -> None:
        if not bool(ts.all_finite(state["params"])):
            raise TrainingError(
                f"the parameters hold NaN/inf at step {step}; not saving them. "
                f"{_last_good(checkpoints)} Lower --lr."
            )
        meta = _meta(
            recipe,
            next_epoch=next_epoch,
            next_step=next_step,
            global_step=step,
            epoch_sums=epoch_sums,
            best=best,
        )
        checkpoints.save(step, state, meta, val_acc=val_acc)

    try:
        for epoch in range(start_epoch, recipe.epochs):
            mixup = recipe.mixup_active(epoch)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                epoch_sums = {"loss": 0.0, "correct": 0.0, "count": 0.0, "steps": 0.0}
            batches = data_lib.to_device(
                data_lib.train_batches(
                    data.source,
                    data.epoch_order(epoch),
                    global_batch=recipe.batch_size,
                    norm=data.norm,
                    start_step=first,
                    process_index=jax.process_index(),
                    process_count=jax.process_count(),
                    num_threads=max(1, recipe.num_workers) * 4,
                ),
                batch_sharding,
            )
            bar = tqdm(
                total=spe,
                initial=first,
                desc=f"epoch {epoch + 1}/{recipe.epochs}" + (" mixup" if mixup else ""),
                disable=not (progress and is_main),
                leave=False,
                dynamic_ncols=True,
            )
            pending: list[dict[str, jax.Array]] = []
            t0 = time.perf_counter()
            for step in range(first, spe):
                batch = next(batches)
                state, metrics = train_fn(state, batch, np.int32(epoch), np.int32(step), mixup)
                pending.append(metrics)
                global_step = epoch * spe + step + 1
                end_of_epoch = step == spe - 1
                checkpoint_due = (
                    recipe.checkpoint_every > 0
                    and global_step % recipe.checkpoint_every == 0
                    and not end_of_epoch
                )
                if len(pending) >= recipe.log_every or end_of_epoch or checkpoint_due:
                    fetched = jax.device_get(pending)
                    pending = []
                    losses = [float(m["loss"]) for m in fetched]
                    bad = next((i for i, v in enumerate(losses) if not _is_finite(v)), None)
                    if bad is not None:
                        at = step - len(losses) + 1 + bad
                        lr_bad = float(fetched[bad]["lr"])
                        raise TrainingError(
                            f"the training loss became NaN/inf ({losses[bad]}) at epoch "
                            f"{epoch + 1}, step {at} (lr {lr_bad:.3g}); the run stopped without "
                            f"saving. {_last_good(checkpoints)} Lower --lr or check the data."
                        )
                    epoch_sums["loss"] += sum(losses)
                    epoch_sums["steps"] += len(losses)
                    epoch_sums["correct"] += sum(float(m["correct"]) for m in fetched)
                    epoch_sums["count"] += sum(float(m["count"]) for m in fetched)
                    lr = float(fetched[-1]["lr"])
                    window_acc = sum(float(m["correct"]) for m in fetched) / sum(
                        float(m["count"]) for m in fetched
                    )
                    bar.set_postfix(
                        loss=f"{np.mean(losses):.4f}", acc=f"{window_acc:.3f}", lr=f"{lr:.2e}"
                    )
                    logger.log_scalars(
                        global_step,
                        {"loss": float(np.mean(losses)), "acc": window_acc, "lr": lr},
                        prefix="train",
                    )
                if checkpoint_due:
                    save(global_step, None, epoch, step + 1)
                bar.update(1)
            bar.close()
            epoch_time = time.perf_counter() - t0

            record: dict[str, Any] = {
                "epoch": epoch,
                "step": (epoch + 1) * spe,
                "train_loss": epoch_sums["loss"] / max(1.0, epoch_sums["steps"]),
                "train_acc": epoch_sums["correct"] / max(1.0, epoch_sums["count"]),
                "lr": float(schedule((epoch + 1) * spe - 1)),
                "mixup": mixup,
                "time_s": round(epoch_time, 3),
            }
            do_eval = (epoch + 1) % recipe.eval_every == 0 or epoch == recipe.epochs - 1
            improved = False
            if do_eval:
                last_val = evaluate(
                    eval_fn, state, data, batch_sharding, global_batch=recipe.batch_size
                )
                record.update(last_val)
                improved = best["val_acc"] is None or last_val["val_acc"] > best["val_acc"]
                if improved:
                    best = {"val_acc": last_val["val_acc"], "epoch": epoch}
            # The record goes out before the checkpoint: a crash in between re-runs the epoch,
            # and the resumed logger drops the record of the epoch it re-runs.
            logger.log_epoch(record, step=(epoch + 1) * spe)
            log(
                f"epoch {epoch + 1}/{recipe.epochs}: train loss {record['train_loss']:.4f} "
                f"acc {record['train_acc']:.3f}"
                + (
                    f" | val loss {record['val_loss']:.4f} acc {record['val_acc']:.3f} "
                    f"song acc {record['val_song_acc']:.3f}"
                    if do_eval
                    else ""
                )
                + f" ({epoch_time:.1f} s)"
            )
            # Only an improvement carries val_acc: orbax then keeps the first epoch that reached
            # the best accuracy (as torch_ref does), and other epoch ends only while latest.
            save((epoch + 1) * spe, last_val["val_acc"] if improved else None, epoch + 1, 0)
    except BaseException:
        checkpoints.close()
        raise
    finally:
        logger.close()

    if not last_val:  # nothing left to train: report the run's last evaluation
        done = [r for r in read_metrics(workdir) if "val_acc" in r]
        last_val = {k: done[-1][k] for k in ("val_acc", "val_song_acc")} if done else {}
    curves = plot_curves(workdir) if is_main else None
    best_step = checkpoints.best_step()
    best_dir = str(best_step)
    summary = {
        "workdir": str(workdir),
        "model": recipe.model,
        "fold": recipe.fold,
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_val_acc": last_val.get("val_acc"),
        "final_val_song_acc": last_val.get("val_song_acc"),
        "epochs_done": recipe.epochs,
        "global_step": total_steps,
        "best_step": best_step,
        "latest_step": checkpoints.latest_step(),
        "best_checkpoint": None if best_step is None else str(checkpoints.directory / best_dir),
        "checkpoints": str(checkpoints.directory),
        "curves": None if curves is None else str(curves),
        "metrics": str(workdir / "metrics.jsonl"),
    }
    checkpoints.close()
    return summary


def _last_good(checkpoints: Checkpoints) -> str:
    step = checkpoints.latest_step()
    if step is None:
        return "No checkpoint was written before."
    return f"The last good checkpoint (step {step}) in {checkpoints.directory} is intact."


# --- CLI --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jax_impl.train",
        description="Train a vocal-genre classifier in JAX/Flax (one fold).",
    )
    add_recipe_flags(parser)
    group = parser.add_argument_group("multi-host (see docs/slurm.md)")
    group.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    group.add_argument("--num_processes", type=int, default=None, help="processes in the run")
    group.add_argument("--process_id", type=int, default=None, help="this process's index")
    parser.add_argument(
        "--no_progress", action="store_true", help="no progress bar (log lines only)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's per-save info lines
    summary = train_and_evaluate(recipe, progress=not args.no_progress)
    if jax.process_index() == 0:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """The closing lines of a run: accuracies and where the outputs are."""
    best = summary["best_val_acc"]
    lines = [
        f"validation accuracy: {summary['final_val_acc']:.4f} (last epoch), "
        f"best {best:.4f} at epoch {summary['best_epoch'] + 1}"
        if best is not None
        else "validation accuracy: not evaluated",
        f"checkpoints: {summary['checkpoints']} (best step {summary['best_step']}, "
        f"latest step {summary['latest_step']})",
        f"metrics:     {summary['metrics']}",
        f"curves:      {summary['curves']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main)
