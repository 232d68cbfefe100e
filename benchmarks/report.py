"""Rendering of a throughput record: markdown tables, backend ratios, the PNG chart, validation.

API::

    problems = validate(doc)              # [] when ``doc`` follows the schema (see throughput.py)
    rows = ratios(doc["results"])         # JAX/torch-eager and JAX/torch.compile per model
    text = render(doc)                    # markdown: results, ratios, preprocessing
    plot_ratios(rows, "ratios.png")       # bar chart (matplotlib, Agg backend)

CLI (re-render a saved record)::

    python -m benchmarks.report FILE.json [--png=FILE.png]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.combo import BACKENDS, BenchmarkError
from shared_data.architecture.names import MODEL_NAMES

# Required keys of every result row; ``mfu`` may be null (unknown peak, e.g. on a CPU).
RESULT_KEYS: tuple[str, ...] = (
    "model",
    "backend",
    "precision",
    "batch_size",
    "train_samples_per_s",
    "infer_samples_per_s",
    "step_ms_median",
    "step_ms_p90",
    "compile_s",
    "peak_mem_bytes",
    "flops_per_sample",
    "mfu",
)
POSITIVE_KEYS: tuple[str, ...] = RESULT_KEYS[4:11]
TOP_KEYS: tuple[str, ...] = ("device", "versions", "command", "date", "results")

# Ratio columns: (key, numerator backend, denominator backend, label).
RATIO_PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("jax_over_torch", "jax", "torch", "JAX / torch eager"),
    ("jax_over_torch_compile", "jax", "torch_compile", "JAX / torch.compile"),
    ("nnxjit_over_jax", "jax_nnxjit", "jax", "nnx.jit / jax.jit"),
)


def _positive_finite(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (math.isfinite(value) and value > 0)
    )


def validate(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` departs from the schema of ``benchmarks.throughput`` (empty if none)."""
    problems = [f"missing top-level key {k!r}" for k in TOP_KEYS if k not in doc]
    for i, row in enumerate(doc.get("results", [])):
        where = f"results[{i}] ({row.get('model')}/{row.get('backend')}/{row.get('precision')})"
        problems += [f"{where}: missing {k!r}" for k in RESULT_KEYS if k not in row]
        problems += [
            f"{where}: {k}={row[k]!r} is not a positive finite number"
            for k in POSITIVE_KEYS
            if k in row and not _positive_finite(row[k])
        ]
        if "mfu" in row and row["mfu"] is not None and not _positive_finite(row["mfu"]):
            problems.append(f"{where}: mfu={row['mfu']!r} is neither null nor positive")
    return problems


def ordered(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` in registry order of models, then precision, batch and backend order."""

    def key(row: dict[str, Any]) -> tuple:
        model = row["model"]
        backend = row["backend"]
        return (
            MODEL_NAMES.index(model) if model in MODEL_NAMES else len(MODEL_NAMES),
            model,
            row["precision"],
            -row["batch_size"],
            BACKENDS.index(backend) if backend in BACKENDS else len(BACKENDS),
        )

    return sorted(results, key=key)


def _group_key(row: dict[str, Any]) -> tuple:
    return (row["model"], row["precision"], row["batch_size"], row.get("input_size"))


def ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training-throughput ratios per (model, precision, batch, input size).

    Each entry: ``model``, ``precision``, ``batch_size``, ``input_size`` and, for every pair of
    :data:`RATIO_PAIRS`, ``<key>`` = numerator / denominator of ``train_samples_per_s`` (> 1: the
    numerator is faster) and ``<key>_cpu_time``, the same for ``train_samples_per_cpu_s``
    (samples per process CPU second: the load-independent comparison on a CPU); None where a
    backend was not measured.
    """
    groups: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in ordered(results):
        groups.setdefault(_group_key(row), {})[row["backend"]] = row
    out = []
    for (model, precision, batch, size), rows in groups.items():
        entry: dict[str, Any] = {
            "model": model,
            "precision": precision,
            "batch_size": batch,
            "input_size": size,
        }
        for key, num, den, _ in RATIO_PAIRS:
            entry[key] = _ratio(rows, num, den, "train_samples_per_s")
            entry[key + "_cpu_time"] = _ratio(rows, num, den, "train_samples_per_cpu_s")
        out.append(entry)
    return out


def _ratio(rows: dict[str, dict[str, Any]], num: str, den: str, field: str) -> float | None:
    a = rows.get(num, {}).get(field)
    b = rows.get(den, {}).get(field)
    return a / b if a and b else None


def format_cell(value: Any, spec: str, missing: str = "—") -> str:
    """``value`` formatted with ``spec`` for a table cell; ``missing`` when it is None."""
    return missing if value is None else format(value, spec)


def results_markdown(results: Sequence[dict[str, Any]], device_kind: str = "cpu") -> str:
    """The results as a markdown table (one row per combination)."""
    cpu = device_kind == "cpu"
    mem_label = "peak RSS delta (MiB)" if cpu else "peak device mem (MiB)"
    header = (
        "| model | backend | prec | batch | train samples/s | infer samples/s | step ms median "
        f"| step ms p90 | compile s | {mem_label} | GFLOP/sample (train) | MFU |"
        + (" train samples/CPU-s |" if cpu else "")
    )
    lines = [header, "|" + "---|" * (13 if cpu else 12)]
    for r in ordered(results):
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {r['batch_size']} "
            f"| {r['train_samples_per_s']:.3g} | {r['infer_samples_per_s']:.3g} "
            f"| {r['step_ms_median']:.0f} | {r['step_ms_p90']:.0f} | {r['compile_s']:.1f} "
            f"| {r['peak_mem_bytes'] / 2**20:.0f} | {r['flops_per_sample'] / 1e9:.2f} | {mfu} |"
            + (f" {format_cell(r.get('train_samples_per_cpu_s'), '.3g')} |" if cpu else "")
        )
    return "\n".join(lines)


def ratios_markdown(rows: Sequence[dict[str, Any]], *, cpu_time: bool = False) -> str:
    """The training-throughput ratios as a markdown table (``cpu_time``: add the CPU-time ones)."""
    keys = [(key, label) for key, _, _, label in RATIO_PAIRS]
    if cpu_time:
        keys += [(key + "_cpu_time", label + " (CPU time)") for key, _, _, label in RATIO_PAIRS]
    labels = " | ".join(label for _, label in keys)
    lines = [f"| model | prec | batch | {labels} |", "|" + "---|" * (3 + len(keys))]
    for r in rows:
        cells = " | ".join(format_cell(r.get(key), ".2f") for key, _ in keys)
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch_size']} | {cells} |")
    return "\n".join(lines)


def preprocess_markdown(pre: dict[str, Any]) -> str:
    """``benchmarks.preprocess``'s speeds (multiples of real time) as a markdown table."""
    lines = ["| stage | implementation | device | x real time |", "|---|---|---|---|"]
    for backend, r in pre.get("separation", {}).items():
        lines.append(f"| separation | {backend} | {r['device']} | {r['x_realtime']:.1f} |")
    for impl in ("librosa", "jax"):
        if impl in pre.get("mel", {}):
            lines.append(f"| log-mel | {impl} | — | {pre['mel'][impl]['x_realtime']:.1f} |")
    return "\n".join(lines)


def render(doc: dict[str, Any]) -> str:
    """The whole record as markdown: results, ratios and (when present) preprocessing."""
    parts = [
        results_markdown(doc["results"], doc.get("device", {}).get("kind", "cpu")),
        "",
        "Training-throughput ratios (> 1: the first backend is faster):",
        "",
        ratios_markdown(ratios(doc["results"]), cpu_time=_is_cpu(doc)),
    ]
    if doc.get("preprocess"):
        parts += [
            "",
            "Preprocessing (multiples of real time):",
            "",
            preprocess_markdown(doc["preprocess"]),
        ]
    if doc.get("failures"):
        parts += ["", "Failed combinations:", ""]
        parts += [
            f"- {f['model']}/{f['backend']}/{f['precision']}: {f['error']}" for f in doc["failures"]
        ]
    return "\n".join(parts)


def _is_cpu(doc: dict[str, Any]) -> bool:
    return doc.get("device", {}).get("kind", "cpu") == "cpu"


def chart_title(doc: dict[str, Any]) -> str:
    """The chart's title: what was compared, on which device."""
    device = doc.get("device", {})
    return f"JAX vs PyTorch training throughput on {device.get('name', 'unknown device')}"


def plot_ratios(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", *, cpu_time: bool = False
) -> Path:
    """Bar chart of JAX/torch-eager and JAX/torch.compile per model and precision; returns path.

    ``cpu_time``: plot the ratios of samples per process CPU second (the load-independent
    comparison on a shared CPU) instead of wall-clock throughput. A bar is missing where a
    backend was not measured; the dashed line marks parity (1.0).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = ("_cpu_time", " (CPU time)") if cpu_time else ("", "")
    pairs = [(key + suffix[0], label + suffix[1]) for key, _, _, label in RATIO_PAIRS[:2]]
    labels = [f"{r['model']}\n{r['precision']} b{r['batch_size']}" for r in rows]
    width = 0.8 / len(pairs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.5))
    for k, (key, label) in enumerate(pairs):
        xs = [i + (k - (len(pairs) - 1) / 2) * width for i in range(len(rows))]
        values = [r[key] if r.get(key) is not None else math.nan for r in rows]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(-0.6, len(rows) - 0.4)  # a missing (NaN) bar must not collapse the axis
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("training throughput ratio (> 1: JAX faster)")
    ax.set_title(title or "JAX vs PyTorch training throughput")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Print the markdown of a saved record (and optionally redraw its chart)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("record", type=Path, help="JSON written by benchmarks.throughput --out")
    parser.add_argument("--png", type=Path, default=None, help="write the ratio chart here")
    args = parser.parse_args(argv)
    try:
        doc = json.loads(args.record.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BenchmarkError(
            f"cannot read the record {args.record}: {err}; pass a JSON file written by "
            "`python -m benchmarks.throughput --out=FILE.json`"
        ) from None
    print(render(doc))
    if args.png is not None:
        plot_ratios(ratios(doc["results"]), args.png, chart_title(doc), cpu_time=_is_cpu(doc))
    return 0


if __name__ == "__main__":
    from shared_data.cli import run_main

    run_main(main)
