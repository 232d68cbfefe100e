"""The table of a stem study (:mod:`shared_data.training.stem_study`): JSON, markdown and PNG.

Per row (a stem alone, or a stem ensemble under one fusion): mean and sample standard deviation
over folds of clip and song accuracy. An ensemble is also set against its best member, the stem
of the ensemble with the highest mean clip accuracy: the per-fold differences (ensemble minus that
member on the same fold, so the fold-to-fold spread that both share cancels) with their mean,
standard deviation and the number of folds the ensemble won, tied and lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shared_data.training.cross_validation import mean_std

__all__ = ["format_markdown", "plot_study", "summarise", "write_study"]

LEVELS = ("clip", "song")


def _name(stems: Sequence[str], fusion: str) -> str:
    return stems[0] if fusion == "member" else f"{'+'.join(stems)} ({fusion})"


def summarise(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table rows of ``study`` (:func:`run_stem_study`'s result), in its row order."""
    per_fold = study["per_fold"]
    keys = [(tuple(r["stems"]), r["fusion"]) for r in per_fold[0]["rows"]]
    values = {
        key: {lv: [f["rows"][i][lv] for f in per_fold] for lv in LEVELS}
        for i, key in enumerate(keys)
    }
    members = {key[0][0]: v for key, v in values.items() if key[1] == "member"}
    rows = []
    for (stems, fusion), v in values.items():
        row: dict[str, Any] = {"name": _name(stems, fusion), "stems": list(stems), "fusion": fusion}
        for lv in LEVELS:
            row[f"{lv}_mean"], row[f"{lv}_std"] = mean_std(v[lv])
        if fusion != "member":
            best = max(stems, key=lambda s: mean_std(members[s]["clip"])[0])
            row["best_member"] = best
            for lv in LEVELS:
                diffs = [a - b for a, b in zip(v[lv], members[best][lv], strict=True)]
                row[f"{lv}_vs_best_mean"], row[f"{lv}_vs_best_std"] = mean_std(diffs)
                row[f"{lv}_vs_best_wins"] = [
                    sum(d > 0 for d in diffs),
                    sum(d == 0 for d in diffs),
                    sum(d < 0 for d in diffs),
                ]
        rows.append(row)
    return rows


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _signed(mean: float, std: float) -> str:
    return f"{mean:+.3f} ± {std:.3f}"


def format_markdown(study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: one line per row of :func:`summarise`."""
    head = (
        f"{study['model']} ({study['backend']}) on {study['dataset']}, {study['folds']} folds; "
        "mean ± std over folds; vs best member: paired per fold (wins/ties/losses)\n\n"
        "| stems (fusion) | clip acc | song acc | clip vs best member | song vs best member |\n"
        "|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        cells = [r["name"], _pm(r["clip_mean"], r["clip_std"]), _pm(r["song_mean"], r["song_std"])]
        for lv in LEVELS:
            if r["fusion"] == "member":
                cells.append("")
            else:
                wins = "/".join(str(n) for n in r[f"{lv}_vs_best_wins"])
                cells.append(
                    f"{_signed(r[f'{lv}_vs_best_mean'], r[f'{lv}_vs_best_std'])} vs "
                    f"{r['best_member']} ({wins})"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def plot_study(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str) -> Path:
    """Clip and song accuracy per row as grouped bars with the fold standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2.0), 4.5))
    ax = fig.add_subplot()
    width = 0.38
    for j, lv in enumerate(LEVELS):
        xs = [i + (j - 0.5) * width for i in range(len(rows))]
        ax.bar(xs, [r[f"{lv}_mean"] for r in rows], width, yerr=[r[f"{lv}_std"] for r in rows],
               capsize=3, label=f"{lv} accuracy")  # fmt: skip
    ax.set_xticks(range(len(rows)), labels=[r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy (mean ± std over folds)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out


def write_study(root: str | os.PathLike[str], study: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``stems.json`` (the study and its rows), ``stems.md`` and ``stems.png`` into
    ``root``; returns their paths."""
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(study)
    paths = {"json": out / "stems.json", "markdown": out / "stems.md", "png": out / "stems.png"}
    paths["json"].write_text(json.dumps({**study, "table": rows}, indent=2) + "\n")
    paths["markdown"].write_text(format_markdown(study, rows))
    title = f"{study['model']} ({study['backend']}), {study['dataset']}: stems and ensembles"
    plot_study(rows, paths["png"], title)
    return paths
