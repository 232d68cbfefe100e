"""Evaluate an ensemble (or one run) in JAX and write a report.

``python -m jax_impl.evaluate --members=DIR[,DIR...] --data_dir=DIR --dataset=NAME [--split=train]
[--fold=k|all] --out=DIR`` prints the members' and the ensemble's clip- and song-level accuracy
and the per-class precision/recall/F1, and writes into ``--out``: ``report.json`` (everything,
confusion matrices included), ``confusion_clip.png``, ``confusion_song.png`` and
``predictions.npz`` (every member's clip probabilities, the input of ``jax_impl.weighting``).

Without ``--fold`` the clips of the fold the members held out are evaluated (members that held
out different folds need ``--fold``). ``torch_ref.evaluate`` is the same CLI computed in torch.
"""

from __future__ import annotations

from jax_impl.ensemble import load_ensemble
from jax_impl.runtime import use_compilation_cache
from shared_data.cli import run_main
from shared_data.ensemble.cli import run_evaluate


def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring); compiled programs come from JAX's persistent cache
    (:func:`jax_impl.runtime.use_compilation_cache`, ``$VOCALGENRE_JAX_CACHE``)."""
    use_compilation_cache()
    return run_evaluate(load_ensemble, argv, "python -m jax_impl.evaluate")


if __name__ == "__main__":
    run_main(main)
