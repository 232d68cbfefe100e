"""The records on disk: how a built split is stored and how it is read, by any process.

Storage (dataset format 3): TFDS ``array_record`` shards, one record per clip, whose mels
(``mel_<stem>``, one per stored stem) are ``tfds.features.Tensor`` with ``Encoding.BYTES`` (the
65,536 bytes of a float32 ``[128, 128]`` array, decoded with ``np.frombuffer``), and the shards
rewritten uncompressed after TFDS has written them (:func:`store_uncompressed`). Both choices are
about read speed, which is what feeds an accelerator: measured on 2 cores, a format-1 record
(``mel`` as 16,384 protobuf floats in zstd-compressed shards) decodes at ~1,100-1,350 records/s,
holding the GIL; the bytes encoding alone decodes at ~38,000/s, and an uncompressed shard reads
3.4x faster than a zstd one (42,000 against 12,300 random reads/s) for 9 % more disk (mel values
are nearly incompressible).

Reading (:class:`RecordSource`): a random-access ``Sequence`` of decoded records (every field of
:func:`shared_data.dataset.configs.record_features`; or, given a ``stem``, that stem's mel as
``mel`` float32 ``[128, 128]`` beside ``label``, ``song_id`` bytes, ``clip_index``, ``fold``: the
record a training loop reads) that a worker process may receive by fork or by pickling. It holds
only the dataset path and split and opens its reader lazily in each process (keyed by PID):
array_record's reader owns a thread pool that does not survive ``fork`` (a forked ``DataLoader``
worker that inherits one crashes), and grain's worker processes are spawned, which pickles the
source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RECORD_WRITER_OPTIONS", "RecordSource", "stem_view", "store_uncompressed"]

# group_size:1 (as TFDS writes): every record is its own chunk, so a random read decodes one clip.
RECORD_WRITER_OPTIONS = "group_size:1,uncompressed"


def _shards(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if ".array_record-" in p.name)


def store_uncompressed(path: str | os.PathLike[str]) -> int:
    """Rewrite the array_record shards of the dataset folder ``path`` without compression.

    Records, their order and the shard names stay the same (TFDS's ``dataset_info.json`` still
    describes them); each shard is written beside itself and moved into place, so an interrupted
    rewrite leaves every shard readable. Shards already uncompressed are left alone.

    Returns:
        the number of shards rewritten.
    """
    from array_record.python import array_record_module as ar

    done = 0
    for shard in _shards(Path(path)):
        reader = ar.ArrayRecordReader(os.fspath(shard))
        try:
            if "uncompressed" in reader.writer_options_string():
                continue
            tmp = shard.with_name(f".{shard.name}.{os.getpid()}.tmp")
            writer = ar.ArrayRecordWriter(os.fspath(tmp), RECORD_WRITER_OPTIONS)
            n = reader.num_records()
            for start in range(0, n, 256):
                for record in reader.read(range(start, min(n, start + 256))):
                    writer.write(record)
            writer.close()
        finally:
            reader.close()
        os.replace(tmp, shard)
        done += 1
    return done


_MEL_PREFIX = "mel_"


def stem_view(record: dict[str, Any], stem: str) -> dict[str, Any]:
    """``record`` with the mel of ``stem`` as ``mel`` and without the other stems' mels."""
    out = {k: v for k, v in record.items() if not k.startswith(_MEL_PREFIX)}
    out["mel"] = record[_MEL_PREFIX + stem]
    return out


class RecordSource(Sequence):
    """The decoded records of split ``split`` of the built dataset at ``path``, random access.

    ``len``, ``[i]`` (a record dict) and ``__getitems__(rows)`` (a list of them) as TFDS's
    ``ArrayRecordDataSource``, which it opens lazily in each process; picklable by path. With
    ``stem``, each record is its :func:`stem_view`.
    """

    def __init__(
        self, path: str | os.PathLike[str], split: str, num_records: int, stem: str | None = None
    ):
        self.path = Path(path)
        self.split = split
        self.stem = stem
        self._len = int(num_records)
        self._pid: int | None = None
        self._source: Any = None

    def _opened(self) -> Any:
        if self._pid != os.getpid():
            import tensorflow_datasets as tfds

            self._source = tfds.builder_from_directory(self.path).as_data_source(split=self.split)
            self._pid = os.getpid()
        return self._source

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "stem": self.stem, "_len": self._len}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _pid=None, _source=None)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not -self._len <= i < self._len:
            raise IndexError(f"record {i} out of range for {self._len} records")
        record = self._opened()[int(i) % self._len]
        return record if self.stem is None else stem_view(record, self.stem)

    def __getitems__(self, rows: Iterable[int]) -> list[dict[str, Any]]:
        """The records at ``rows``, in that order.

        One read at a time: array_record's parallel batch read costs more in thread hand-offs
        than it saves on page-cached 64-KiB records (8,300 against 23,000 records/s measured on
        2 cores); parallelism comes from worker processes instead.
        """
        source = self._opened()
        if self.stem is None:
            return [source[int(r)] for r in rows]
        return [stem_view(source[int(r)], self.stem) for r in rows]

    def __repr__(self) -> str:
        stem = "" if self.stem is None else f", stem={self.stem!r}"
        return f"RecordSource({str(self.path)!r}, split={self.split!r}{stem}, {self._len} records)"
