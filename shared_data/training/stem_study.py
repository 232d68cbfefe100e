"""Which stem carries the genre: K-fold cross-validation of one model on every stem, and every
stem ensemble scored on the same held-out clips (``python -m jax_impl.cv --stems=...``).

For each stem ``s`` of ``--stems`` and each fold ``k`` the recipe is trained with ``--stem=s
--fold=k`` in ``<root>/<s>/fold<k>`` (``<root>``: ``--workdir`` or ``runs/<backend>/<model>``;
finished runs are not trained again, an interrupted one resumes). Then, per fold, the best
checkpoint of every stem's run predicts fold ``k``'s clips (which none of them trained on), and
every subset of the stems is scored: one stem alone, and each ensemble of two or more both by the
plain probability sum and by presence-aware fusion (:mod:`shared_data.ensemble.fusion`). The
table (:mod:`shared_data.training.stem_report`) gives mean and standard deviation over folds and
each ensemble's paired difference against its best member.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.ensemble import core, fusion
from shared_data.ensemble import evaluation as ev
from shared_data.errors import DataError
from shared_data.training.cross_validation import cv_root
from shared_data.training.recipe import Recipe

__all__ = ["parse_study_stems", "run_stem_study", "score_fold", "subsets"]


def parse_study_stems(text: str) -> tuple[str, ...]:
    """``"vocals,accompaniment,mix"`` -> the stems, each once, in the order given.

    Raises:
        DataError: fewer than one stem, a repeated or an unknown one.
    """
    from shared_data.training.recipe_checks import TRAIN_STEMS

    stems = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in stems if s not in TRAIN_STEMS]
    if not stems or bad or len(set(stems)) != len(stems):
        raise DataError(
            f"--stems={text!r}: name each stem once, from {','.join(TRAIN_STEMS)} "
            "(e.g. --stems=vocals,accompaniment,mix)"
        )
    return stems


def subsets(stems: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``stems``, singles first, in the order of ``stems``."""
    return [c for n in range(1, len(stems) + 1) for c in itertools.combinations(stems, n)]


def _accuracy(probs: np.ndarray, clips: ev.SelectedClips) -> dict[str, float]:
    _, song_probs = core.aggregate_songs(probs, clips.song_ids)
    per_song = core.song_labels(clips.labels, clips.song_ids)
    return {
        "clip": core.accuracy(probs.argmax(1), clips.labels),
        "song": core.accuracy(song_probs.argmax(1), per_song),
    }


def score_fold(
    stems: Sequence[str], result: ev.EnsembleResult, clips: ev.SelectedClips
) -> list[dict[str, Any]]:
    """Clip and song accuracy on one fold of every subset of ``stems`` (members in that order in
    ``result``): a single stem as ``fusion="member"``, an ensemble as ``sum`` and ``presence``.

    Returns:
        rows ``{"stems": [...], "fusion", "clip", "song"}``.
    """
    rows = []
    for subset in subsets(stems):
        idx = [stems.index(s) for s in subset]
        probs, present = result.member_probs[idx], result.present[idx]
        names = ("member",) if len(subset) == 1 else fusion.FUSIONS
        for name in names:
            fused = probs[0] if name == "member" else fusion.fuse(probs, present, name)
            rows.append({"stems": list(subset), "fusion": name, **_accuracy(fused, clips)})
    return rows


def run_stem_study(
    recipe: Recipe,
    backend: str,
    stems: Sequence[str],
    train_run: Callable[[Recipe], dict[str, Any]],
    load_ensemble: Callable[..., list[ev.Predictor]],
    open_dataset: Callable[[str | None, str], Any],
    *,
    is_main: bool,
) -> dict[str, Any] | None:
    """Train every (stem, fold), then score every stem subset per fold (on the main process).

    Args:
        train_run: trains one recipe in its ``workdir`` (a backend's ``train_and_evaluate``).
        load_ensemble: a backend's ``load_ensemble(run_dirs, checkpoint=...)``.
        open_dataset: ``open_dataset(data_dir, config)``.

    Returns:
        the study (:func:`shared_data.training.stem_report.summarise`'s input plus the per-fold
        rows), or None on the other processes.
    """
    root = cv_root(recipe, backend)
    runs: dict[str, list[Path]] = {s: [] for s in stems}
    for stem, k in itertools.product(stems, range(recipe.folds)):
        workdir = root / stem / f"fold{k}"
        if is_main:
            print(f"== stem {stem}, fold {k + 1}/{recipe.folds}: {workdir}", flush=True)
        train_run(dataclasses.replace(recipe, stem=stem, fold=k, workdir=str(workdir)))
        runs[stem].append(workdir)
    if not is_main:
        return None
    dataset = open_dataset(recipe.data_dir, recipe.dataset)
    per_fold = []
    for k in range(recipe.folds):
        predictors = load_ensemble([runs[s][k] for s in stems], checkpoint="best")
        clips = ev.select_clips(dataset, "train", k)
        result = ev.run_ensemble(predictors, dataset.source("train"), clips.indices)
        per_fold.append({"fold": k, "rows": score_fold(stems, result, clips)})
    return {
        "backend": backend,
        "model": recipe.model,
        "dataset": recipe.dataset,
        "folds": recipe.folds,
        "stems": list(stems),
        "root": str(root),
        "per_fold": per_fold,
    }


def add_stems_flag(parser: Any) -> None:
    """``--stems`` on a backend's ``cv`` CLI."""
    parser.add_argument(
        "--stems",
        default=None,
        help="train every fold on each of these stems (comma-separated, e.g. "
        "vocals,accompaniment,mix) and compare each stem alone with every stem ensemble "
        "(plain sum and presence-aware fusion); writes <root>/stems.{json,md,png}",
    )


def run_and_report(
    recipe: Recipe,
    backend: str,
    stems_flag: str,
    train_run: Callable[[Recipe], dict[str, Any]],
    load_ensemble: Callable[..., list[ev.Predictor]],
    *,
    is_main: bool,
) -> dict[str, Any] | None:
    """:func:`run_stem_study`, then (main process) write and print its table."""
    from shared_data.dataset.opened import open_dataset
    from shared_data.training.stem_report import write_study

    stems = parse_study_stems(stems_flag)
    study = run_stem_study(
        recipe, backend, stems, train_run, load_ensemble, open_dataset, is_main=is_main
    )
    if study is not None:
        paths = write_study(study["root"], study)
        print(paths["markdown"].read_text())
        print(f"table: {paths['markdown']}, {paths['json']}, {paths['png']}")
    return study
