"""Data parallelism on 4 fake CPU devices: one train step equals the single-device step, also
with gradient accumulation (2 micro-batches, each spread over the devices).

A subprocess sets ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (it must be set before
JAX starts). It runs the real jitted step of :mod:`jax_impl.train_step` — SpecAugment, Mixup,
``resnet18`` with BatchNorm, SGD — once on a 1-device mesh and once on a 4-device mesh with the
batch sharded 2 examples per device, from the same initial state and batch, and reports the
largest differences. ``resnet18`` at 32x32 keeps it cheap; its BatchNorm makes the test meaningful:
batch statistics must span the global batch, not each device's shard.

Why float64. The two meshes reduce the gradient and BatchNorm's batch statistics in different
orders, so in float32 they agree only to rounding, and this network amplifies rounding (at 32x32
input layer4's BatchNorm normalises 1x1 maps over 8 examples). How much depends on the CPU's
summation order: the float32 step agreed to 1e-5 on Intel Xeon (Sapphire Rapids) and to only 6e-4
(parameters) and 3e-3 (momentum) on AMD EPYC (Zen 4). The step runs here in float64
(``jax.enable_x64``, model and batch in float64): on AMD EPYC the two meshes then agree to 6e-16
(parameters), 3e-15 (momentum) and 9e-15 (logits), so a 1e-9 bound tests the step, not the CPU, with
a margin of about 1e5. A sharding mistake (BatchNorm statistics over each device's 2 examples
instead of the global 8) changes the statistics themselves, not their rounding.

SGD, not the default AdamW: Adam's first step divides every element by its own magnitude, so an
element with a gradient near zero moves by about +-lr whatever its sign, which would test the
optimizer's sensitivity rather than the step. SGD's parameter change is ``lr * g``. The momentum
buffer after one step is ``g + wd * p`` and is compared too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import json
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jax_impl import train_step as ts
    from jax_impl.models import create_model
    from jax_impl.schedule import make_schedule
    from shared_data.training.recipe import Recipe

    recipe = Recipe(model="resnet18", batch_size=8, optimizer="sgd", lr=0.1)
    recipe = recipe.resolved("jax", accelerator=False)
    schedule = make_schedule(recipe, steps_per_epoch=10)
    tx = ts.make_optimizer(recipe, schedule)
    cfg = ts.StepConfig.from_recipe(recipe, num_classes=10)
    rng = np.random.default_rng(0)
    batch = {
        "mel": rng.normal(size=(8, 32, 32, 1)),  # float64
        "label": rng.integers(0, 10, size=8).astype(np.int32),
    }
    out, report = {}, {"device_count": jax.device_count()}
    for n in (1, 4):
        graphs, state = ts.split_model(create_model(
            "resnet18", 10, dtype=jnp.float64, param_dtype=jnp.float64, rngs=nnx.Rngs(0)
        ))
        state["opt_state"] = tx.init(state["params"])
        mesh = ts.make_mesh(jax.devices()[:n])
        state = jax.device_put(state, ts.replicated(mesh))
        initial = jax.device_get(state["params"])
        sharded = jax.device_put(batch, ts.batch_sharded(mesh))
        report[f"shard_rows_{n}"] = sorted(
            {s.data.shape[0] for s in sharded["mel"].addressable_shards}
        )
        step = ts.make_train_step(graphs.train, tx, schedule, cfg, mesh)
        state, metrics = step(state, sharded, np.int32(1), np.int32(2), True)
        logits = ts.make_eval_step(graphs.eval, mesh)(state, sharded)
        report[f"replicated_{n}"] = all(
            x.sharding.is_fully_replicated for x in jax.tree.leaves(state)
        )
        report[f"devices_{n}"] = len(jax.tree.leaves(state)[0].sharding.device_set)
        out[n] = jax.device_get({"loss": metrics["loss"], "state": state, "logits": logits})

    def max_diff(a, b):
        return max(
            float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    # Gradient accumulation: 2 micro-batches of 4 contiguous rows, each spread over the 4
    # devices (1 row per device); BatchNorm statistics per micro-batch, across the devices. A
    # small BatchNorm net: the subject is the layout of the micro-batches, not resnet18.
    import dataclasses

    from tests.support.models import tiny_batchnorm_net

    micro = {}
    for n in (1, 4):
        graphs, state = ts.split_model(tiny_batchnorm_net(10, dtype=jnp.float64))
        state["opt_state"] = tx.init(state["params"])
        mesh = ts.make_mesh(jax.devices()[:n])
        state = jax.device_put(state, ts.replicated(mesh))
        initial_micro = jax.device_get(state["params"])
        cfg_2 = dataclasses.replace(cfg, micro_batches=2)
        step = ts.make_train_step(graphs.train, tx, schedule, cfg_2, mesh)
        sharded = jax.device_put(batch, ts.batch_sharded(mesh))
        state, metrics = step(state, sharded, np.int32(1), np.int32(2), True)
        micro[n] = jax.device_get({"loss": metrics["loss"], "state": state})

    report["dtype"] = str(jax.tree.leaves(out[4]["state"]["params"])[0].dtype)
    report["loss"] = [float(out[1]["loss"]), float(out[4]["loss"])]
    report["params"] = max_diff(out[1]["state"]["params"], out[4]["state"]["params"])
    report["batch_stats"] = max_diff(out[1]["state"]["rest"], out[4]["state"]["rest"])
    report["opt_state"] = max_diff(out[1]["state"]["opt_state"], out[4]["state"]["opt_state"])
    report["logits"] = max_diff(out[1]["logits"], out[4]["logits"])
    report["update"] = max_diff(initial, out[4]["state"]["params"])  # the step moved them
    report["micro_loss"] = [float(micro[1]["loss"]), float(micro[4]["loss"])]
    report["micro_params"] = max_diff(micro[1]["state"]["params"], micro[4]["state"]["params"])
    report["micro_batch_stats"] = max_diff(micro[1]["state"]["rest"], micro[4]["state"]["rest"])
    report["micro_update"] = max_diff(initial_micro, micro[4]["state"]["params"])
    print("REPORT " + json.dumps(report))
    """
)


def test_one_step_on_four_devices_equals_one_device(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line.removeprefix("REPORT "))
    print(report)  # the measured differences, for the record (pytest -s)

    assert report["device_count"] == 4
    assert report["shard_rows_1"] == [8] and report["shard_rows_4"] == [2]  # batch split 4 ways
    assert report["devices_4"] == 4 and report["replicated_4"] and report["replicated_1"]
    loss_1, loss_4 = report["loss"]
    assert report["dtype"] == "float64"
    assert abs(loss_1 - loss_4) <= 1e-9 * abs(loss_1)
    assert report["params"] <= 1e-9
    assert report["batch_stats"] <= 1e-9  # BatchNorm saw the global batch on every device
    assert report["opt_state"] <= 1e-9
    assert report["logits"] <= 1e-9
    assert report["update"] > 1e-4
    micro_1, micro_4 = report["micro_loss"]
    assert abs(micro_1 - micro_4) <= 1e-9 * abs(micro_1)
    assert report["micro_params"] <= 1e-9 and report["micro_batch_stats"] <= 1e-9
    assert report["micro_update"] > 1e-4
