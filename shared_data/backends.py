"""The backend names, one tuple per meaning.

"Backend" means two things in this project, so each has its own name: the framework a model was
trained and evaluated in (``recipe.json``'s ``run.backend``), and the implementation that runs the
Spleeter separator (a dataset's ``separation_backend``; ``auto`` picks the faster one here).
"""

from __future__ import annotations

__all__ = ["SEPARATION_BACKENDS", "TRAINING_BACKENDS"]

#: Frameworks that train, evaluate and predict (``python -m jax_impl.* | torch_ref.*``).
TRAINING_BACKENDS: tuple[str, ...] = ("jax", "torch")
#: Choices of ``--backend`` for separation: either framework, or the faster one on this machine.
SEPARATION_BACKENDS: tuple[str, ...] = ("auto", *TRAINING_BACKENDS)
