"""The jitted train and eval steps, in the functional NNX pattern (``docs/design.md``).

API::

    model = create_model(name, num_classes, dtype=..., param_dtype=jnp.float32, rngs=nnx.Rngs(seed))
    graphs, state = split_model(model)          # Graphs(train, eval); state: TrainArrays dict
    state["opt_state"] = tx.init(state["params"])
    step = make_train_step(graphs.train, tx, schedule, cfg, mesh)   # jit, state donated
    # cfg.micro_batches = k > 1: k accumulated passes per step (gradient accumulation, below)
    state, metrics = step(state, batch, epoch, step_in_epoch, True)  # True: Mixup this epoch
    logits = make_eval_step(graphs.eval, mesh)(state, batch)     # [B, C] float32, replicated

The model is split once (``nnx.split``) into a graph definition and a state pytree; the step merges
them inside ``jax.jit`` (``nnx.merge``), so tracing the Python module happens once per compile and
the state buffers are donated and updated in place. Training and evaluation use two graph
definitions over one state: the train/eval mode is static graph data (``nnx.view``).

All random draws of a step (SpecAugment masks, the Mixup weight and permutation, the model's own
draws such as shake-shake) come from ``fold_in(fold_in(key(seed), epoch), step_in_epoch)``,
computed on the device from the two traced integers: a resumed run redraws exactly the same.

Data parallelism: the state is replicated and the batch sharded on its leading axis over the
``"data"`` mesh axis; under ``jax.jit`` the computation is written for the global batch, so XLA
inserts the gradient all-reduce and BatchNorm's batch statistics span the global batch (the
result equals a single-device step).

Gradient accumulation (``StepConfig.micro_batches`` = k > 1, ``--micro_batch_size``): the step
augments the global batch as before (the SpecAugment masks of every example are those of the
one-pass step; Mixup's partners are drawn within each micro-batch, :func:`draw_step`), then a
``lax.scan`` runs forward and backward over k micro-batches of contiguous rows (micro-batch j holds
rows ``[j*B/k, (j+1)*B/k)`` of the global batch, each sharded over all devices), threads the
BatchNorm state through them and sums their gradients, and ONE optimizer update follows. Only one
micro-batch's activations are alive at a time. Chosen over ``optax.MultiSteps``, which spreads a
batch over k calls of the step: the step count, the LR schedule, the ``(epoch, step)`` keys of the
draws, the hooks and the checkpoints would then see k steps per batch, the loader would feed
micro-batches, and the optimizer state would carry a parameter-sized accumulator in every
checkpoint (so a run could not resume with another micro-batch size). Here the accumulator lives
inside one step and the state is the same as without accumulation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jax_impl import augment
from shared_data.training.recipe import Recipe, SpecAugmentSpec

#: The arrays one step reads and returns (donated): ``{"params", "rest" (BatchNorm statistics, ...),
#: "opt_state": nnx/optax pytrees, "step": int32}``. ``jax_impl.train.TrainState`` (the run's
#: dataclass) holds them beside the jitted steps, the schedule and the shardings.
TrainArrays = dict[str, Any]

DATA_AXIS = "data"


class Graphs(NamedTuple):
    """The train-mode and eval-mode graph definitions of one model (same state)."""

    train: Any
    eval: Any


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static (hashable) settings of the train step."""

    num_classes: int
    seed: int
    spec: SpecAugmentSpec
    mixup_alpha: float
    label_smoothing: float = 0.0
    micro_batches: int = 1  # gradient-accumulation passes per step (module docstring)

    @classmethod
    def from_recipe(cls, recipe: Recipe, num_classes: int) -> StepConfig:
        return cls(
            num_classes=num_classes,
            seed=recipe.seed,
            spec=recipe.spec_augment(),
            mixup_alpha=recipe.mixup_alpha,
            label_smoothing=recipe.label_smoothing,
            micro_batches=recipe.micro_batches,
        )


class StepDraws(NamedTuple):
    """Every random draw of one step (a pytree, so parity tests can inject them)."""

    spec: augment.SpecAugmentDraws
    mixup: augment.MixupDraws
    model_key: jax.Array


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D ``"data"`` mesh over ``devices`` (default: every device of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def micro_batch_sharded(mesh: Mesh) -> NamedSharding:
    """``[k, B/k, ...]`` micro-batches: each one sharded over every device (axis 1)."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def split_model(model: nnx.Module) -> tuple[Graphs, TrainArrays]:
    """Split a (train-mode) model into its two graph definitions and the state pytree.

    Returns ``(Graphs, {"params": nnx.State, "rest": nnx.State (BatchNorm statistics, ...),
    "step": int32 0})``; the caller adds ``"opt_state"``.
    """
    model.train()
    train_graph, params, rest = nnx.split(model, nnx.Param, ...)
    eval_view = nnx.view(
        model, use_running_average=True, deterministic=True, raise_if_not_found=False
    )
    eval_graph, _, _ = nnx.split(eval_view, nnx.Param, ...)
    state = {"params": params, "rest": rest, "step": jnp.zeros((), jnp.int32)}
    return Graphs(train_graph, eval_graph), state


def make_optimizer(recipe: Recipe, schedule: optax.Schedule) -> optax.GradientTransformation:
    """The optimizer of a resolved recipe, with torch's semantics (``torch_ref.train`` mirrors it).

    ``adamw``: ``torch.optim.AdamW`` (decay ``lr * wd * p`` decoupled from the Adam step, eps
    outside the square root, bias correction). ``sgd``: ``torch.optim.SGD`` with L2 weight decay
    added to the gradient before (Nesterov) momentum; the first step's momentum buffer is the
    gradient, as in torch.
    """
    if recipe.optimizer == "adamw":
        return optax.adamw(
            learning_rate=schedule,
            b1=recipe.adam_b1,
            b2=recipe.adam_b2,
            eps=recipe.adam_eps,
            weight_decay=recipe.weight_decay,
        )
    return optax.chain(
        optax.add_decayed_weights(recipe.weight_decay),
        optax.sgd(learning_rate=schedule, momentum=recipe.momentum, nesterov=recipe.nesterov),
    )


def step_key(seed: int, epoch: jax.Array, step_in_epoch: jax.Array) -> jax.Array:
    """``fold_in(fold_in(key(seed), epoch), step_in_epoch)``: the key of one train step."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), step_in_epoch)


def draw_step(key: jax.Array, cfg: StepConfig, batch_shape: tuple[int, ...]) -> StepDraws:
    """Every draw of a step for an NHWC batch of ``batch_shape`` ``[B, H (mel), W (time), C]``.

    With ``cfg.micro_batches`` = k > 1 the SpecAugment masks and Mixup's ``lam`` are those of the
    one-pass step, and each example's Mixup partner is in its own micro-batch
    (:func:`jax_impl.augment.micro_batch_permutation`), so a micro-batch's forward pass needs no
    other micro-batch's rows.
    """
    b, h, w = batch_shape[:3]
    spec_key, mixup_key, model_key = jax.random.split(key, 3)
    spec = augment.draw_spec_augment(spec_key, cfg.spec, b, n_freq=h, n_time=w)
    if cfg.mixup_alpha > 0:
        mix = augment.draw_mixup(mixup_key, cfg.mixup_alpha, b)
        if cfg.micro_batches > 1:
            mix = mix._replace(perm=augment.micro_batch_permutation(mix.perm, cfg.micro_batches))
    else:
        mix = augment.MixupDraws(jnp.ones((), jnp.float32), jnp.arange(b, dtype=jnp.int32))
    return StepDraws(spec, mix, model_key)


def credited_correct(
    logits: jax.Array, labels: jax.Array, mixup: augment.MixupDraws | None
) -> jax.Array:
    """The batch's correct count (float32 scalar) from ``logits [B, K]`` and ``labels`` int ``[B]``.

    Without Mixup, the number of argmax hits. Under Mixup each example is ``lam`` of its own clip
    and ``1 - lam`` of its partner's, so a prediction earns ``lam`` for its own label and
    ``1 - lam`` for the partner's (the mixup paper's training accuracy). Scoring the mixed input
    against its own label alone would report the Mixup epochs as far worse than they are.
    """
    pred = jnp.argmax(logits, axis=-1)
    hits = (pred == labels).astype(jnp.float32)
    if mixup is not None:
        lam = mixup.lam.astype(jnp.float32)
        hits = lam * hits + (1 - lam) * (pred == labels[mixup.perm]).astype(jnp.float32)
    return jnp.sum(hits)


def train_step(
    state: TrainArrays,
    batch: dict[str, jax.Array],
    draws: StepDraws,
    *,
    graphdef: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: StepConfig,
    mixup: bool,
    micro_sharding: NamedSharding | None = None,
) -> tuple[TrainArrays, dict[str, jax.Array]]:
    """One optimizer step on ``batch`` (``mel`` float32 ``[B, H, W, C]``, ``label`` int ``[B]``).

    SpecAugment always, then Mixup when ``mixup`` (else plain cross-entropy on the, possibly
    smoothed, one-hot targets); with ``cfg.micro_batches`` > 1 the gradient is accumulated over
    that many micro-batches (:func:`accumulate_gradients`; ``micro_sharding``: how to lay them out
    over the mesh, None on one device). Returns the new state and device-side metrics: ``loss``
    (mean soft cross-entropy over the batch, float32, or float64 for a float64 model),
    ``correct`` (:func:`credited_correct`, float32), ``count`` and ``lr`` (the step's LR).
    """
    x = augment.apply_spec_augment(batch["mel"], draws.spec, cfg.spec.fill_value)
    labels = batch["label"]
    targets = augment.one_hot_targets(labels, cfg.num_classes, cfg.label_smoothing)
    if mixup:
        x, targets = augment.apply_mixup(x, targets, draws.mixup)

    grad_fn = jax.value_and_grad(functools.partial(_loss, graphdef), has_aux=True)
    if cfg.micro_batches == 1:
        (loss, (logits, rest)), grads = grad_fn(
            state["params"], state["rest"], x, targets, draws.model_key
        )
    else:
        loss, logits, rest, grads = accumulate_gradients(
            grad_fn, state["params"], state["rest"], x, targets, draws.model_key,
            micro_batches=cfg.micro_batches, sharding=micro_sharding,
        )  # fmt: skip
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {
        "loss": loss,
        "correct": credited_correct(logits, labels, draws.mixup if mixup else None),
        "count": jnp.asarray(labels.shape[0], jnp.int32),
        "lr": jnp.asarray(schedule(state["step"]), jnp.float32),
    }
    new_state = {"params": params, "rest": rest, "opt_state": opt_state, "step": state["step"] + 1}
    return new_state, metrics


def _loss(graphdef: Any, params, rest, x: jax.Array, targets: jax.Array, key: jax.Array):
    """``(mean soft cross-entropy, (logits, new rest))`` of one forward pass over ``x``."""
    # copy=True: fresh Variables at this trace level, which BatchNorm may then update.
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = model(x, key=key)
    # bf16 logits are scored in float32; a float64 model (the multi-device test) stays float64.
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    _, _, new_rest = nnx.split(model, nnx.Param, ...)
    return loss, (logits, new_rest)


def accumulate_gradients(
    grad_fn: Any,
    params: Any,
    rest: Any,
    x: jax.Array,
    targets: jax.Array,
    key: jax.Array,
    *,
    micro_batches: int,
    sharding: NamedSharding | None = None,
) -> tuple[jax.Array, jax.Array, Any, Any]:
    """The batch's loss, logits, new ``rest`` and mean gradient from k = ``micro_batches`` passes.

    ``x`` ``[B, ...]`` and ``targets`` ``[B, C]`` are split into k micro-batches of contiguous rows
    (``sharding``: their ``[k, B/k, ...]`` layout, each micro-batch over every device; XLA moves
    the input rows between devices, never the activations). ``grad_fn(params, rest, x_j, t_j,
    key_j)`` is ``value_and_grad`` of :func:`_loss`; micro-batch j draws its in-model randomness
    (shake-shake) from ``fold_in(key, j)``, and runs on the BatchNorm state micro-batch j - 1 left
    (running statistics updated k times a step, as torch's accumulation does).

    Returns ``(loss, logits [B, C], rest, grads)``: the mean of the k micro-batch losses (each a
    mean over B/k rows: the mean over the batch), the logits in batch order, and the gradient of
    that mean (the sum of the k micro-batch gradients / k).
    """

    def split(a: jax.Array) -> jax.Array:
        a = a.reshape(micro_batches, a.shape[0] // micro_batches, *a.shape[1:])
        return a if sharding is None else jax.lax.with_sharding_constraint(a, sharding)

    def one(carry, xs):
        rest, total = carry
        x_j, t_j, j = xs
        (loss_j, (logits_j, rest)), grads_j = grad_fn(
            params, rest, x_j, t_j, jax.random.fold_in(key, j)
        )
        return (rest, jax.tree.map(jnp.add, total, grads_j)), (loss_j, logits_j)

    xs = (split(x), split(targets), jnp.arange(micro_batches))
    # The carry must keep its dtypes, and a pass may change them: a float64 model's BatchNorm
    # statistics start as flax's float32 and come back in float64. So the carry starts in the
    # dtypes a pass returns (a widening, exact cast; one pass instead scales the float32
    # statistics by the momentum in float32, a float32 rounding apart in a float64 model's
    # first step; float32 models are not cast at all).
    out = jax.eval_shape(lambda r: one((r, params), jax.tree.map(lambda a: a[0], xs))[0][0], rest)
    rest = jax.tree.map(lambda v, s: v.astype(s.dtype), rest, out)
    zeros = jax.tree.map(jnp.zeros_like, params)
    (rest, total), (losses, logits) = jax.lax.scan(one, (rest, zeros), xs)
    grads = jax.tree.map(lambda g: g / micro_batches, total)
    return jnp.mean(losses), logits.reshape(-1, logits.shape[-1]), rest, grads


def make_train_step(
    graphdef: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: StepConfig,
    mesh: Mesh,
):
    """The jitted step ``(state, batch, epoch, step_in_epoch, mixup) -> (state, metrics)``.

    ``state`` is donated; ``epoch`` and ``step_in_epoch`` are int32 scalars (traced, so every step
    reuses one compilation per value of the static bool ``mixup``).
    """

    micro = micro_batch_sharded(mesh)

    def step(state, batch, epoch, step_in_epoch, mixup: bool):
        draws = draw_step(step_key(cfg.seed, epoch, step_in_epoch), cfg, batch["mel"].shape)
        return train_step(
            state, batch, draws, graphdef=graphdef, tx=tx, schedule=schedule, cfg=cfg, mixup=mixup,
            micro_sharding=micro,
        )  # fmt: skip

    rep = replicated(mesh)
    return jax.jit(
        step,
        donate_argnums=(0,),
        static_argnums=(4,),
        in_shardings=(rep, batch_sharded(mesh), rep, rep),
        out_shardings=(rep, rep),
    )


def make_injected_train_step(
    graphdef: Any, tx: optax.GradientTransformation, schedule: optax.Schedule, cfg: StepConfig
):
    """``(state, batch, draws, mixup) -> (state, metrics)`` with the draws passed in (parity)."""

    def step(state, batch, draws, mixup: bool):
        return train_step(
            state, batch, draws, graphdef=graphdef, tx=tx, schedule=schedule, cfg=cfg, mixup=mixup
        )

    return jax.jit(step, static_argnums=(3,))


def make_eval_step(graphdef: Any, mesh: Mesh):
    """The jitted ``(state, batch) -> logits`` float32 ``[B, C]`` (float64 for a float64 model) in
    eval mode, replicated.

    Replicated output: every process can read all logits (song-level voting needs them).
    """

    def step(state, batch):
        model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
        logits = model(batch["mel"])
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))

    rep = replicated(mesh)
    return jax.jit(step, in_shardings=(rep, batch_sharded(mesh)), out_shardings=rep)


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """bool scalar: every floating leaf of ``tree`` is finite (no NaN/inf)."""
    leaves = [
        x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    ]
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves]))
