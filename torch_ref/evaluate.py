"""Evaluate an ensemble (or one run) in PyTorch and write a report.

``python -m torch_ref.evaluate --members=DIR[,DIR...] --data_dir=DIR --dataset=NAME [--split=train]
[--fold=k|all] --out=DIR`` prints the members' and the ensemble's clip- and song-level accuracy
and the per-class precision/recall/F1, and writes into ``--out``: ``report.json`` (everything,
confusion matrices included), ``confusion_clip.png``, ``confusion_song.png`` and
``predictions.npz`` (every member's clip probabilities, the input of ``jax_impl.weighting``).

Without ``--fold`` the clips of the fold the members held out are evaluated (members that held
out different folds need ``--fold``). ``jax_impl.evaluate`` is the same CLI computed in JAX.
"""

from __future__ import annotations

from shared_data.cli import run_main
from shared_data.ensemble.cli import run_evaluate
from torch_ref.ensemble import load_ensemble


def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring)."""
    return run_evaluate(load_ensemble, argv, "python -m torch_ref.evaluate")


if __name__ == "__main__":
    run_main(main)
