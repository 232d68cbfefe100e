"""The per-song stage of a ``vocal_mels`` build as an Apache Beam pipeline.

``Create(songs) -> Reshuffle -> BatchElements -> ParDo(SongStageFn)``: the reshuffle spreads the
listed songs over the workers, each worker loads the separator once (:meth:`SongStageFn.setup`)
and, for every song of a batch, decodes, separates and featurises it into the per-song cache under
the key a single-process build would use (:func:`shared_data.dataset.stage.compute_song`). The
pipeline has no output: the cache is its result, and the builder's ordinary writer then reads it.

A worker's separator is built by the same ``auto`` rule (backend and precision) as the driver's,
so a worker with an accelerator uses it. The cache key names the separator's backend, precision
and device, so a worker
whose separator differs from the driver's (say, a GPU worker behind a CPU-only launcher) would
write entries the writer never looks up; such a worker stops the build with a message saying so
instead. Only imported when a build asks for Beam (``pip install -e '.[beam]'``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset.cache import SongCache
from shared_data.dataset.configs import json_normal
from shared_data.dataset.stage import StageSpec, compute_song, snapshot
from shared_data.errors import DataError

# Songs per DoFn call. Songs are still separated one by one (see stage.featurise_song); a batch
# only amortises the per-bundle overhead of the runner, and a small cap keeps a slow batch from
# holding back the end of the build.
MAX_BATCH = 4
_MISMATCH = "the Beam workers' separator differs from the driver's"


class SongStageFn(beam.DoFn):
    """Caches the mels of each song of a batch; emits the keys it wrote."""

    def __init__(self, spec: StageSpec):
        self._spec = spec
        self._separator = None
        self._cache: SongCache | None = None
        self._computed = beam.metrics.Metrics.counter("vocal_mels", "songs_computed")

    def setup(self) -> None:
        """Load the separator once per worker (weights, compiled model) and check its
        provenance matches the driver's, which the cache keys name."""
        from shared_data.separation.registry import get_separator

        spec = self._spec
        self._separator = get_separator(spec.separator, spec.backend, spec.precision)
        info = json_normal(self._separator.info())
        driver = spec.settings.separator_info
        if info != driver:
            raise DataError(
                f"{_MISMATCH} (worker {_where(info)}, driver {_where(driver)})"
                "; run the build command where the workers' backend, precision and device are "
                "the same, or pass --backend=jax|torch and --separation_precision=fp32|bf16"
            )
        self._cache = SongCache(Path(spec.cache_dir))

    def process(self, batch: Sequence[inputs_lib.SongInput]) -> Iterator[str]:
        assert self._cache is not None
        for item in batch:
            key = compute_song(item, self._spec.settings, self._cache, self._separator)
            if key is not None:
                self._computed.inc()
                yield key


def _where(info: dict) -> str:
    precision = info.get("precision", "fp32")
    return f"backend {info.get('backend', '-')} {precision}, device {info.get('device', '-')}"


def run_pipeline(items: Iterable[inputs_lib.SongInput], spec: StageSpec, argv: list[str]) -> None:
    """Run the stage over ``items`` with Beam pipeline arguments ``argv``; returns when done.

    Raises:
        DataError: a worker's separator differs from the driver's.
    """
    items = list(items)
    options = PipelineOptions(argv)
    runner = options.get_all_options().get("runner") or "DirectRunner"
    print(f"song stage on Beam ({runner}): {len(items)} songs", flush=True)
    started = time.monotonic()
    try:
        with beam.Pipeline(options=options) as p:
            _ = (
                p
                | "songs" >> beam.Create(items)
                | "spread" >> beam.Reshuffle()
                | "batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=MAX_BATCH)
                | "separate_and_featurise" >> beam.ParDo(SongStageFn(spec))
            )
    except DataError:
        raise
    except Exception as err:  # runners wrap worker errors in their own types
        text = str(err)
        if _MISMATCH in text:
            line = next(ln for ln in text.splitlines() if _MISMATCH in ln)
            raise DataError(line[line.index(_MISMATCH) :].strip()) from None
        raise
    print(f"song stage done in {time.monotonic() - started:.1f} s", flush=True)


def run_stage(
    items: Sequence[inputs_lib.SongInput], spec: StageSpec, argv: Sequence[str]
) -> frozenset[str]:
    """Run the per-song stage over ``items`` on Beam with pipeline arguments ``argv``.

    Returns:
        The cache keys this stage wrote (new or rewritten entries), so the writer can tell them
        from songs cached by an earlier build.

    Raises:
        DataError: a worker's separator differs from the driver's.
    """
    cache = SongCache(Path(spec.cache_dir))
    before = snapshot(cache)
    todo = [it for it in items if it.reject_reason is None]
    run_pipeline(todo, spec, list(argv))
    after = snapshot(cache)
    return frozenset(k for k, stat in after.items() if before.get(k) != stat)
