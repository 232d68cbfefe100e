"""The songs a ``vocal_mels`` build reads: listing them from a source, fingerprinting and decoding.

Three sources, one item type (:class:`SongInput`):

- ``synthetic``: the embedded procedural corpus (:mod:`shared_data.corpus.synthetic`).
- ``folder``: the GTZAN layout ``<root>/<label>/<file>``. Every non-hidden file under a label folder
  is an input (sub-folders included); files directly in ``<root>`` are reported as rejected, never
  dropped. Hidden files (names starting with ``.``, e.g. ``.DS_Store``) are operating-system
  metadata, not inputs. Symbolic links are followed (:mod:`shared_data.dataset.walk`: each real
  file once; loops and broken links are reported as rejected).
- ``csv``: a manifest ``path,label[,song_id]``; paths are relative to the manifest's folder; an
  empty label puts the row in the ``test`` split; ``song_id`` defaults to the file's stem. A first
  row is a header, and skipped, when it reads ``path,label[,song_id]`` or when its first cell has
  no file extension and names no existing file (``filename,genre``, ``file,class``...): a file
  name has an extension, a column name does not.

Listing only touches names; :func:`read_song` hashes and decodes, one song at a time.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shared_data.dataset.features import FeatureParams
from shared_data.dataset.walk import walk
from shared_data.errors import AudioError, DataError

MANIFEST_NAME = "manifest.csv"
SYNTHETIC_PREFIX = "synthetic:"
HEADERS = (["path", "label"], ["path", "label", "song_id"])


@dataclasses.dataclass(frozen=True)
class SongInput:
    """One input song.

    Attributes:
        path: how reports name it (relative to the input root, or ``synthetic:<genre>/<index>``);
            unique within a build, and the prefix of the song's record keys.
        label: the class name, or ``None`` for an unlabelled song (the ``test`` split).
        song_id: the grouping id for folds; ``None`` for synthetic songs (the generator names them).
        file: the file to decode (``None`` for synthetic songs).
        reject_reason: set when listing already knows the item is unusable (e.g. a file outside
            any label folder); such items are reported, never processed.
    """

    path: str
    label: str | None
    song_id: str | None = None
    file: Path | None = None
    reject_reason: str | None = None
    instrumental: bool = False  # a synthetic song rendered without its vocal line


@dataclasses.dataclass(frozen=True)
class SongData:
    """A fingerprinted song, decoded on demand (a cache hit never decodes)."""

    sha256: str
    song_id: str
    load: Callable[[], np.ndarray]  # -> float32 [2, n] at 44,100 Hz


def folder_inputs(root: Path) -> tuple[list[SongInput], list[str]]:
    """List ``root/<label>/<file>`` (GTZAN layout).

    Returns:
        ``(items sorted by path, label names sorted)``.

    Raises:
        DataError: ``root`` is missing, not a folder, or holds no files in label folders.
    """
    if not root.exists():
        raise DataError(
            f"input folder {root} does not exist; pass --input=<folder with one sub-folder per "
            "label> (GTZAN layout <input>/<label>/<file>)"
        )
    if not root.is_dir():
        raise DataError(f"--input={root} is not a folder; the folder config reads <input>/<label>/")
    items: list[SongInput] = []
    labels: set[str] = set()
    for met in walk(root):
        rel = met.path.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else None
        reason = met.reason
        if reason is None and label is None:
            reason = "not inside a label folder (expected <input>/<label>/<file>)"
        if reason is not None:
            items.append(SongInput(rel.as_posix(), label, file=met.path, reject_reason=reason))
            continue
        labels.add(label)
        song_id = rel.with_suffix("").as_posix()  # label/stem: unique even if stems repeat
        items.append(SongInput(rel.as_posix(), label, song_id=song_id, file=met.path))
    if not labels:
        raise DataError(
            f"no audio files in label folders under {root}; expected <input>/<label>/<file>, "
            "e.g. blues/blues.00000.wav"
        )
    return items, sorted(labels)


def _manifest_path(path: Path) -> Path:
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"CSV manifest {path} does not exist; pass --input=<manifest.csv> (rows "
            "path,label[,song_id]) or a folder holding manifest.csv"
        )
    return path


def csv_inputs(manifest: Path) -> tuple[list[SongInput], list[str]]:
    """Parse a manifest ``path,label[,song_id]`` (header optional; paths relative to it).

    Returns:
        ``(items in manifest order, label names sorted)``; unlabelled rows have ``label=None``.

    Raises:
        DataError: a missing manifest, a malformed row (named by line) or a duplicated path.
    """
    manifest = _manifest_path(manifest)
    base = manifest.parent
    items: list[SongInput] = []
    seen: dict[Path, int] = {}
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not seen and _is_header(cells, base):
            continue
        if len(cells) > 3 or not cells[0]:
            raise DataError(
                f"{manifest}, line {line}: expected 'path,label[,song_id]' with a non-empty path, "
                f"got {row!r}"
            )
        rel, label, song_id = (cells + ["", ""])[:3]
        file = Path(rel) if Path(rel).is_absolute() else base / rel
        key = Path(os.path.normpath(file))
        if key in seen:
            raise DataError(
                f"{manifest}, line {line}: {rel} is listed twice (first on line {seen[key]}); "
                "each file must appear once"
            )
        seen[key] = line
        items.append(SongInput(rel, label or None, song_id=song_id or Path(rel).stem, file=file))
    labels = sorted({it.label for it in items if it.label is not None})
    if not items:
        raise DataError(f"CSV manifest {manifest} lists no files (rows path,label[,song_id])")
    if not labels:
        raise DataError(
            f"CSV manifest {manifest} has no labelled rows; at least one row needs a label to "
            "define the classes and the train split"
        )
    return items, labels


def _is_header(cells: list[str], base: Path) -> bool:
    """Whether the first non-empty manifest row is a header (rule in the module docstring)."""
    if [c.lower() for c in cells] in HEADERS:
        return True
    first = cells[0]
    return bool(first) and not Path(first).suffix and not (base / first).exists()


def synthetic_inputs(
    genres: Sequence[str],
    songs_per_genre: int,
    *,
    instrumental: Sequence[str] = (),
    instrumental_every: int = 0,
) -> list[SongInput]:
    """One item per (genre, index) of the synthetic corpus, genres in the given order; songs of
    the ``instrumental`` genres, and with ``instrumental_every=n`` the songs ``n-1, 2n-1, ...`` of
    every genre, are rendered without their vocal line."""

    def bare(genre: str, index: int) -> bool:
        every = instrumental_every > 0 and index % instrumental_every == instrumental_every - 1
        return genre in instrumental or every

    return [
        SongInput(f"{SYNTHETIC_PREFIX}{genre}/{index}", genre, instrumental=bare(genre, index))
        for genre in genres
        for index in range(songs_per_genre)
    ]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes; a missing or unreadable file is an :class:`AudioError`."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as err:
        raise AudioError(path, f"cannot read file: {err.strerror or err}") from None
    return digest.hexdigest()


def read_song(
    item: SongInput, *, params: FeatureParams, seed: int = 0, seconds: float = 0.0
) -> SongData:
    """Fingerprint ``item``; decoding is deferred to ``SongData.load``.

    Files are hashed from their bytes and decoded by :func:`shared_data.audio.decode.load_audio`
    with the features' length rule (shorter than ``params.min_seconds``: rejected; shorter than one
    clip: zero-padded). A synthetic song is generated here (``seed``, ``seconds`` are the corpus
    settings) and hashed from its float32 mix, so a changed generator never reuses a stale cache
    entry.

    Raises:
        AudioError: the file is missing or unreadable (decoding errors surface from ``load``).
    """
    if item.reject_reason is not None:
        raise AudioError(item.path, item.reject_reason)
    if item.file is None:
        from shared_data.corpus.synthetic import generate_song

        genre, index = item.path[len(SYNTHETIC_PREFIX) :].rsplit("/", 1)
        song = generate_song(
            genre, int(index), seed=seed, seconds=seconds, instrumental=item.instrumental
        )
        mix = np.ascontiguousarray(song.mix, dtype=np.float32)
        return SongData(hashlib.sha256(mix.tobytes()).hexdigest(), song.song_id, lambda: mix)

    from shared_data.audio.decode import load_audio

    file = item.file
    assert item.song_id is not None
    min_s, clip_s = params.min_seconds, params.clip_samples / params.sr
    return SongData(
        sha256_file(file),
        item.song_id,
        lambda: load_audio(file, min_seconds=min_s, pad_to_seconds=clip_s),
    )
