"""Evaluation outputs: the confusion-matrix PNG, the JSON report and the printed tables.

Side effects (files, text) only; the numbers come from :mod:`shared_data.ensemble.core`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "format_metrics_table",
    "format_table",
    "plot_confusion",
    "write_json",
]


def plot_confusion(
    confusion: np.ndarray,
    label_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Draw a confusion matrix ``[C, C]`` (rows true, columns predicted) as a PNG at ``path``.

    Cells are coloured by the row-normalised rate (recall per true class, so classes of different
    sizes read alike) and annotated with the raw counts. Uses matplotlib's Agg backend, so no
    display is needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    confusion = np.asarray(confusion, dtype=np.int64)
    rows = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    n = len(label_names)
    size = max(4.0, 0.6 * n + 2.0)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(n), labels=list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", color=colour)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; an undefined metric is null
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike[str], report: Mapping[str, Any]) -> Path:
    """Write ``report`` as indented JSON (numpy values converted, NaN -> null), atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    os.replace(tmp, out)
    return out


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: columns padded to their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [
        all(isinstance(row[i], int | float | np.number) for row in rows) if rows else False
        for i in range(len(header))
    ]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def format_metrics_table(level: Mapping[str, Any]) -> str:
    """Per-class precision/recall/F1/support of one level of ``classification_summary``."""
    rows = [
        (name, m["precision"], m["recall"], m["f1"], m["support"])
        for name, m in level["per_class"].items()
    ]
    return format_table(("class", "precision", "recall", "f1", "support"), rows)
