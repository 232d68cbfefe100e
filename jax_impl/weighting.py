"""The reference report's learned ensemble weighting in Flax NNX: one convolution over the stacked
member outputs, then BatchNorm; trained on out-of-fold predictions and reported beside the plain
sum.

``python -m jax_impl.weighting --predictions=DIR_0/predictions.npz,...,DIR_K-1/predictions.npz
[--out=report.json]`` (the files from ``jax_impl.evaluate``, one per fold; see
:mod:`shared_data.ensemble.weighting`) prints, for each held-out fold, the plain sum's and the
learned weighting's clip and song accuracy, and the weighting's accuracy on its own training folds.

The model: the members' probabilities ``[B, M, C]`` are an image of one channel, ``M`` rows
(members) by ``C`` columns (classes). One convolution whose kernel spans all ``M`` rows and
``class_kernel`` columns (padding keeps ``C``) gives one score per class; BatchNorm over that one
channel rescales the scores (a learned temperature and offset); softmax gives the probabilities.
With ``class_kernel=1`` the score of class c is ``sum_m w_m p_mc + b``: a weighted sum of the
members, shared across classes, and the plain sum is the special case ``w_m = 1/M`` the training
starts from. A wider kernel also lets neighbouring classes' probabilities in, which is where the
capacity to overfit comes from (the class order is arbitrary, so it can only memorise).
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from shared_data.cli import run_main
from shared_data.ensemble.report import write_json
from shared_data.ensemble.weighting import cross_validate, format_report, load_predictions
from shared_data.errors import DataError

__all__ = ["LearnedWeighting", "apply_weighting", "fit_weighting", "main"]


class LearnedWeighting(nnx.Module):
    """``[B, M, C]`` member probabilities -> ``[B, C]`` logits (see the module docstring)."""

    def __init__(self, num_members: int, *, class_kernel: int = 1, rngs: nnx.Rngs):
        if class_kernel < 1 or class_kernel % 2 == 0:
            raise DataError(f"--class_kernel must be an odd number >= 1, got {class_kernel}")
        half = class_kernel // 2
        # Start at the plain mean of the members: w = 1/M on the centre column, 0 elsewhere.
        kernel = np.zeros((num_members, class_kernel, 1, 1), np.float32)
        kernel[:, half] = 1.0 / num_members
        self.conv = nnx.Conv(
            1,
            1,
            kernel_size=(num_members, class_kernel),
            padding=((0, 0), (half, half)),
            kernel_init=lambda *_: jnp.asarray(kernel),
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(1, momentum=0.9, epsilon=1e-5, rngs=rngs)

    def __call__(self, probs: jax.Array) -> jax.Array:
        """Logits float32 ``[B, C]`` for member probabilities ``[B, M, C]``."""
        scores = self.conv(probs[..., None])  # NHWC [B, 1, C, 1]
        return self.bn(scores)[:, 0, :, 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "lr", "weight_decay"))
def _train(
    params: Any,
    rest: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    graphdef: Any,
    steps: int,
    lr: float,
    weight_decay: float,
) -> tuple[Any, Any]:
    tx = optax.adamw(lr, weight_decay=weight_decay)

    def train_step(_: int, carry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
        params, rest, opt_state = carry

        def loss_fn(params: Any) -> tuple[jax.Array, Any]:
            # copy=True: fresh Variables at this trace level, which BatchNorm may then update.
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
            return loss, nnx.state(model, nnx.BatchStat)

        grads, new_rest = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_rest, opt_state

    # All steps in one compiled loop: a step is a few hundred FLOPs, so dispatching each from
    # Python would cost far more than computing it.
    params, rest, _ = jax.lax.fori_loop(0, steps, train_step, (params, rest, tx.init(params)))
    return params, rest


def fit_weighting(
    member_probs: np.ndarray,
    labels: np.ndarray,
    *,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    class_kernel: int = 1,
    seed: int = 0,
) -> LearnedWeighting:
    """Fit a :class:`LearnedWeighting` by full-batch AdamW on cross-entropy.

    Args:
        member_probs: float32 ``[N, M, C]``; labels: int ``[N]``.
        steps, lr, weight_decay: the optimisation (full batch: the data are a few thousand rows
            of M x C numbers, so every step sees all of them and BatchNorm's batch statistics are
            the data's).
        class_kernel: the convolution's width over classes (odd). seed: initialisation seed.

    Returns:
        the fitted model in evaluation mode (BatchNorm uses its running statistics).
    """
    x = jnp.asarray(member_probs, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    model = LearnedWeighting(x.shape[1], class_kernel=class_kernel, rngs=nnx.Rngs(seed))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = _train(
        params, rest, x, y, graphdef=graphdef, steps=steps, lr=lr, weight_decay=weight_decay
    )
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    return model


@functools.partial(jax.jit, static_argnums=0)
def _probabilities(graphdef: Any, state: Any, x: jax.Array) -> jax.Array:
    return jax.nn.softmax(nnx.merge(graphdef, state)(x), axis=-1)


def apply_weighting(model: LearnedWeighting, member_probs: np.ndarray) -> np.ndarray:
    """Ensemble probabilities float32 ``[N, C]`` of the learned weighting (evaluation mode)."""
    graphdef, state = nnx.split(model)
    probs = _probabilities(graphdef, state, jnp.asarray(member_probs, jnp.float32))
    return np.asarray(probs, np.float32)


def member_weights(model: LearnedWeighting) -> np.ndarray:
    """The kernel's centre column ``[M]``: each member's weight in the class score."""
    kernel = np.asarray(model.conv.kernel.get_value())  # [M, k, 1, 1]
    return kernel[:, kernel.shape[1] // 2, 0, 0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jax_impl.weighting",
        description=(
            "Cross-validate the reference report's learned ensemble weighting against the plain "
            "sum."
        ),
    )
    parser.add_argument(
        "--predictions",
        required=True,
        help="predictions.npz files of jax_impl.evaluate, one per fold, comma-separated",
    )
    parser.add_argument("--steps", type=int, default=300, help="full-batch optimisation steps")
    parser.add_argument("--lr", type=float, default=0.05, help="AdamW learning rate")
    parser.add_argument("--weight_decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument(
        "--class_kernel",
        type=int,
        default=1,
        help="conv width over classes (odd; 1: per-member weights)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the cross-validation report."""
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.lr <= 0:
        raise DataError(f"--steps must be >= 1 and --lr > 0 (got {args.steps}, {args.lr})")
    oof = load_predictions([p for p in args.predictions.split(",") if p.strip()])
    fit = functools.partial(
        fit_weighting,
        steps=args.steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        class_kernel=args.class_kernel,
        seed=args.seed,
    )
    report = cross_validate(oof, fit, apply_weighting)
    weights = member_weights(fit(oof.member_probs, oof.labels))
    report["weights_fitted_on_all"] = [
        {"member": name, "weight": w}
        for name, w in zip(oof.member_names, weights.tolist(), strict=True)
    ]
    report["settings"] = {k: getattr(args, k) for k in ("steps", "lr", "weight_decay",
                                                          "class_kernel", "seed")}  # fmt: skip
    print(f"members: {', '.join(oof.member_names)}; {len(oof.labels)} clips")
    print(format_report(report))
    print("member weights (fitted on every fold): "
          + ", ".join(f"{w['member']} {w['weight']:.3f}"
                      for w in report["weights_fitted_on_all"]))  # fmt: skip
    if args.out:
        print(f"report: {write_json(args.out, report)}")
    return 0


if __name__ == "__main__":
    run_main(main)
