"""Predicting the genre of audio files (or of a dataset's unlabelled split) with an ensemble.

Per file: decode (:func:`shared_data.audio.decode.load_audio`: stereo 44.1 kHz, any format it reads,
any length >= 1 s), separate the whole song once with the members' separator, cut and featurise
each stem the members read with their feature parameters
(:func:`shared_data.dataset.features.song_to_mels`), predict every clip with every member (each on
its own stem, normalising with its own mean/std), combine the members by presence-aware fusion
(:mod:`shared_data.ensemble.fusion`: the plain sum, except that a member whose stem is near-silent
in a clip is left out of that clip; with one stem, exactly the plain sum), then average the clip
probabilities into the song's (:mod:`shared_data.ensemble.core`).

A file that cannot be used becomes a :class:`SongFailure` naming it and the reason; the other files
are still predicted. The CLI (:func:`run_predict`, behind ``jax_impl.predict`` and
``torch_ref.predict``) prints those failures on stderr and exits with status 1 when there were any.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.audio.decode import load_audio
from shared_data.dataset import presence
from shared_data.dataset.features import song_to_mels
from shared_data.destinations import check_file_destination, write_failure
from shared_data.ensemble import core, fusion
from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.cli import load_from_args
from shared_data.ensemble.report import format_table
from shared_data.errors import AudioError, DataError
from shared_data.separation.registry import PRECISIONS, get_separator, select_stem

__all__ = [
    "SEPARATION_SR",
    "SongFailure",
    "SongPrediction",
    "build_predict_parser",
    "clips_table",
    "csv_rows",
    "file_ids",
    "predict_files",
    "predict_split",
    "run_predict",
    "top_k_table",
    "warn_synthetic_members",
    "write_csv",
]

SEPARATION_SR = 44100
TOP_K = 3


@dataclasses.dataclass(frozen=True)
class SongPrediction:
    """The ensemble's answer for one song.

    Attributes:
        song_id: the id used in tables and the CSV; source: the file (or dataset) it came from.
        probs: float32 ``[C]``, the song's probabilities; clip_probs: float32 ``[n_clips, C]``;
        clip_index: int64 ``[n_clips]`` (position of each clip in the song).
    """

    song_id: str
    source: str
    probs: np.ndarray
    clip_probs: np.ndarray
    clip_index: np.ndarray


@dataclasses.dataclass(frozen=True)
class SongFailure:
    """A song that could not be predicted: ``path`` and the ``reason``."""

    song_id: str
    path: str
    reason: str


def file_ids(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Submission ids of files: their names without extension when those are unique (the usual
    Kaggle id), else the paths as given."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [os.fspath(p) for p in paths]


def song_mels(
    wave: np.ndarray, predictors: Sequence[ev.Predictor], separator: Any
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One separation of ``wave`` ``[2, n]`` @ 44.1 kHz -> (``{stem: mels [n_clips, 128, 128]}``
    for every stem the members read, bool ``[M, n_clips]``: each member's stem present)."""
    stems = [p.info.stem for p in predictors]
    params = predictors[0].info.feature_params
    separated = separator.separate([wave])[0]
    mels = {
        s: song_to_mels(select_stem(separated, s, separator_name=separator.name), SEPARATION_SR,
                        params)
        for s in dict.fromkeys(stems)
    }  # fmt: skip
    n_clips = next(iter(mels.values())).shape[0]
    others = {s: separated[s] for s in mels if s != fusion.MIX}
    levels = presence.measure(others, separated.get(fusion.MIX, wave), n_clips, params,
                              SEPARATION_SR)  # fmt: skip
    relative = {s: presence.relative_db(levels, s)[1:] for s in others}
    return mels, fusion.member_presence(stems, relative, levels["mix_db"][1:])


def _song_from_mels(
    predictors: Sequence[ev.Predictor],
    mels: dict[str, np.ndarray],
    present: np.ndarray,
    song_id: str,
    source: str,
) -> SongPrediction:
    clip_probs = fusion.presence_fusion(ev.predict_members(predictors, mels), present)
    _, probs = core.aggregate_songs(clip_probs, [song_id] * len(clip_probs))
    return SongPrediction(
        song_id, source, probs[0], clip_probs, np.arange(len(clip_probs), dtype=np.int64)
    )


def predict_files(
    paths: Sequence[str | os.PathLike[str]],
    predictors: Sequence[ev.Predictor],
    separator: Any,
    *,
    ids: Sequence[str] | None = None,
) -> Iterator[SongPrediction | SongFailure]:
    """Predict each file in turn (one whole song in memory at a time).

    Args:
        paths: audio files. predictors: the loaded members (their :class:`MemberInfo`\\ s agree,
            :func:`shared_data.ensemble.members.check_compatible`). separator: a ``Separator``
            producing the members' stems. ids: the song ids to report (default :func:`file_ids`).

    Yields:
        a :class:`SongPrediction` or, for a file that cannot be used, a :class:`SongFailure`.
    """
    ids = list(ids) if ids is not None else file_ids(paths)
    for path, song_id in zip(paths, ids, strict=True):
        try:
            wave = load_audio(path, sr=SEPARATION_SR, channels=2)
        except AudioError as err:
            yield SongFailure(song_id, os.fspath(path), err.reason)
            continue
        mels, present = song_mels(wave, predictors, separator)
        if present.shape[1] == 0:
            yield SongFailure(song_id, os.fspath(path), "no clip: shorter than the minimum length")
            continue
        yield _song_from_mels(predictors, mels, present, song_id, os.fspath(path))


def predict_split(
    dataset: Any, split: str, predictors: Sequence[ev.Predictor]
) -> list[SongPrediction]:
    """Predict every song of a built dataset's ``split`` (e.g. the unlabelled ``test``)."""
    clips = ev.select_clips(dataset, split, None)
    result = ev.run_ensemble(predictors, dataset.source(split), clips.indices)
    songs, index = core.group_songs(clips.song_ids)
    out = []
    for s, song_id in enumerate(songs):
        rows = np.flatnonzero(index == s)
        order = rows[np.argsort(clips.clip_index[rows], kind="stable")]
        clip_probs = result.presence_probs[order]
        _, probs = core.aggregate_songs(clip_probs, [song_id] * len(order))
        out.append(
            SongPrediction(
                song_id, str(dataset.path), probs[0], clip_probs, clips.clip_index[order]
            )
        )
    return out


def top_k_table(
    predictions: Sequence[SongPrediction], label_names: Sequence[str], k: int = TOP_K
) -> str:
    """One row per song: id, clips, then the top-``k`` labels with their probabilities."""
    rows = []
    for p in predictions:
        idx, val = core.top_k(p.probs[None], k)
        cells = [f"{label_names[i]} ({v:.3f})" for i, v in zip(idx[0], val[0], strict=True)]
        rows.append((p.song_id, len(p.clip_probs), *cells))
    header = ("song", "clips", *(f"top{i + 1}" for i in range(min(k, len(label_names)))))
    return format_table(header, rows)


def clips_table(prediction: SongPrediction, label_names: Sequence[str], clip_seconds: float) -> str:
    """Per-clip probabilities of one song: clip, start time, top label, then every class."""
    rows = []
    for i, probs in zip(prediction.clip_index, prediction.clip_probs, strict=True):
        rows.append((int(i), float(i * clip_seconds), label_names[int(probs.argmax())], *probs))
    header = ("clip", "start_s", "top", *label_names)
    return format_table(header, rows)


def csv_rows(
    predictions: Sequence[SongPrediction], label_names: Sequence[str], *, level: str = "song"
) -> list[tuple[str, str]]:
    """``(id, label)`` rows: one per song, or with ``level="clip"`` one per clip
    (id ``<song_id>#<clip_index>``)."""
    if level == "song":
        return [(p.song_id, label_names[int(p.probs.argmax())]) for p in predictions]
    return [
        (f"{p.song_id}#{int(i)}", label_names[int(probs.argmax())])
        for p in predictions
        for i, probs in zip(p.clip_index, p.clip_probs, strict=True)
    ]


def write_csv(path: str | os.PathLike[str], rows: Sequence[tuple[str, str]]) -> Path:
    """A Kaggle-style submission ``id,label`` (header included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("id", "label"))
    writer.writerows(rows)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue())
    return out


def build_predict_parser(prog: str) -> argparse.ArgumentParser:
    """The flags of ``python -m <backend>.predict``."""
    from shared_data.ensemble.cli import add_ensemble_flags

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Predict the genre of audio files (any format the audio module reads, any "
        "length) or of a dataset's unlabelled split with an ensemble of training runs.",
    )
    add_ensemble_flags(parser)
    parser.add_argument("songs", nargs="*", metavar="SONG", help="audio files to predict")
    parser.add_argument("--clips", action="store_true", help="also print per-clip probabilities")
    parser.add_argument("--csv", default=None, metavar="FILE", help="write a submission id,label")
    parser.add_argument(
        "--csv_level", default="song", choices=("song", "clip"), help="one CSV row per song or clip"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="with no SONG: predict this built dataset's --split (its unlabelled test split)",
    )
    parser.add_argument("--data_dir", default=None, help="where --dataset is built")
    parser.add_argument("--split", default="test", help="dataset split to predict (default test)")
    parser.add_argument(
        "--separation_precision",
        default="auto",
        choices=PRECISIONS,
        help="precision of the separator's networks on this backend; auto: the faster one here "
        "(bf16 where it is measured faster at the same quality; default %(default)s)",
    )
    return parser


def warn_synthetic_members(predictors: Sequence[ev.Predictor]) -> bool:
    """Warns once on stderr when a member was trained on a synthetic corpus (generated tones,
    whose genre labels mean nothing for real audio); returns whether it warned."""
    from shared_data.dataset.configs import SYNTHETIC_CONFIGS

    synthetic = sorted({p.info.dataset for p in predictors if p.info.dataset in SYNTHETIC_CONFIGS})
    if synthetic:
        print(
            f"warning: the members were trained on the synthetic corpus {', '.join(synthetic)} "
            "(generated tones and noise, not music): their genres say nothing about real "
            "songs; train on your own music (README, 'Data layouts accepted') to predict it",
            file=sys.stderr,
        )
    return bool(synthetic)


def _wrote_csv(path: str, rows: Sequence[tuple[str, str]], n_songs: int) -> bool:
    """Writes the submission; a failed write is reported (the table above keeps the results)."""
    try:
        written = write_csv(path, rows)
    except OSError as err:
        print(
            f"error: {write_failure(err, '--csv', path)}; the predictions above were printed "
            "but no CSV was written",
            file=sys.stderr,
        )
        return False
    print(f"\nwrote {written} ({n_songs} songs)")
    return True


def run_predict(
    load_ensemble: Callable[..., list[ev.Predictor]],
    backend: str,
    argv: list[str] | None,
    prog: str,
) -> int:
    """The whole ``predict`` CLI, given a backend's ``load_ensemble`` and its name (which
    separator implementation to use). Returns 1 when some song failed, else 0."""
    args = build_predict_parser(prog).parse_args(argv)
    if bool(args.songs) == bool(args.dataset):
        raise DataError(
            "give either audio files (SONG ...) or --dataset=NAME (to predict its --split), not "
            f"{'both' if args.songs else 'neither'}"
        )
    if args.csv:
        check_file_destination(args.csv, "--csv")  # before any member is loaded or song read
    predictors = load_from_args(load_ensemble, args)
    info = predictors[0].info
    if args.songs:
        warn_synthetic_members(predictors)
    names = info.label_names
    failures: list[SongFailure] = []
    predictions: list[SongPrediction] = []
    if args.dataset:
        from shared_data.ensemble.cli import open_members_dataset

        dataset = open_members_dataset(
            predictors, args.data_dir, args.dataset, require_labels=False
        )
        predictions = predict_split(dataset, args.split, predictors)
    else:
        separator = get_separator(info.separator, backend, args.separation_precision)
        for outcome in predict_files(args.songs, predictors, separator):
            if isinstance(outcome, SongFailure):
                failures.append(outcome)
                print(f"error: {outcome.path}: {outcome.reason}", file=sys.stderr, flush=True)
            else:
                predictions.append(outcome)
    if predictions:
        print(top_k_table(predictions, names))
    if args.clips:
        seconds = info.feature_params.clip_hop / info.feature_params.sr
        for p in predictions:
            print(f"\n{p.song_id} ({p.source}):")
            print(clips_table(p, names, seconds))
    rows = csv_rows(predictions, names, level=args.csv_level) if args.csv else []
    if args.csv and not _wrote_csv(args.csv, rows, len(predictions)):
        return 1
    if failures:
        listing = ", ".join(f.path for f in failures)
        print(
            f"{len(failures)} of {len(failures) + len(predictions)} songs could not be predicted: "
            f"{listing}",
            file=sys.stderr,
        )
        return 1
    return 0
