"""Session-scoped fixtures of the training tests: the tiny datasets and one full run per backend.

Built once per session and shared by ``test_jax_train.py``, ``test_torch_train.py``,
``test_train.py`` and ``test_resume.py`` (helpers in :mod:`tests.support.tiny_runs`).
"""

from __future__ import annotations

import pytest

from tests.support.tiny_runs import build_tiny, run, tiny_recipe


@pytest.fixture(scope="session")
def jax_tiny(tmp_path_factory) -> dict:
    return build_tiny(tmp_path_factory.mktemp("jax_data"), "jax")


@pytest.fixture(scope="session")
def torch_tiny(tmp_path_factory) -> dict:
    return build_tiny(tmp_path_factory.mktemp("torch_data"), "torch")


def _full_run(tiny: dict, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp(f"{tiny['backend']}_full")
    summary, seen = run(tiny, tiny_recipe(tiny, workdir))
    return {"workdir": workdir, "summary": summary, "seen": seen}


@pytest.fixture(scope="session")
def jax_full_run(jax_tiny, tmp_path_factory) -> dict:
    """A finished 2-epoch run of :func:`tiny_recipe` (``workdir``, ``summary``, ``seen``)."""
    return _full_run(jax_tiny, tmp_path_factory)


@pytest.fixture(scope="session")
def torch_full_run(torch_tiny, tmp_path_factory) -> dict:
    return _full_run(torch_tiny, tmp_path_factory)
