"""Predict the genre of audio files with an ensemble, in JAX.

``python -m jax_impl.predict --members=DIR[,DIR...] SONG... [--clips] [--csv=FILE]`` decodes each
song (any format :func:`shared_data.audio.decode.load_audio` reads, any length of 1 s or more),
separates it with the members' separator (the JAX implementation, in the precision of
``--separation_precision=auto|fp32|bf16``; auto: bf16 where that is the faster path here,
``shared_data.separation.choice``) and keeps their stem,
featurises it, and prints a table of each song's three most probable genres; ``--clips`` adds
every clip's probabilities. ``--csv=FILE`` writes a Kaggle-style ``id,label`` submission: for the
files given (id: the file name without extension, or the path when names repeat), or, with
``--dataset=NAME [--data_dir=DIR] [--split=test]`` instead of files, for the songs of a built
dataset's unlabelled split (id: the song id). ``--csv_level=clip`` writes one row per clip.

A file that cannot be decoded is reported by name on stderr and the others are still predicted;
the exit status is then 1. The pipeline is :mod:`shared_data.ensemble.predict`;
``torch_ref.predict`` is the same CLI computed in PyTorch.
"""

from __future__ import annotations

from jax_impl.ensemble import load_ensemble
from jax_impl.runtime import use_compilation_cache
from shared_data.cli import run_main
from shared_data.ensemble.predict import run_predict


def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring); compiled programs come from JAX's persistent cache
    (:func:`jax_impl.runtime.use_compilation_cache`, ``$VOCALGENRE_JAX_CACHE``)."""
    use_compilation_cache()
    return run_predict(load_ensemble, "jax", argv, "python -m jax_impl.predict")


if __name__ == "__main__":
    run_main(main)
