"""``python -m jax_impl.evaluate`` / ``torch_ref.evaluate`` / ``<backend>.ensemble``: reports.

Members: one ``lstm`` trained by each backend on ``synthetic_small`` fold 3
(``tests/support/ensemble_runs.py``); by default the CLIs evaluate that fold (6 clips, 3 songs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jax_impl import ensemble as jax_ensemble_cli
from jax_impl import evaluate as jax_evaluate
from shared_data.ensemble import core
from shared_data.ensemble.members import MemberError
from shared_data.errors import DataError
from tests.support import ensemble_runs as fx
from torch_ref import ensemble as torch_ensemble_cli
from torch_ref import evaluate as torch_evaluate


@pytest.fixture(scope="module")
def members(ensemble_runs) -> str:
    return ensemble_runs.one_per_backend()


@pytest.fixture(autouse=True)
def one_torch_thread():
    with fx.torch_threads(1):
        yield


@pytest.mark.parametrize("cli", [jax_evaluate, torch_evaluate], ids=["jax", "torch"])
def test_evaluate_writes_the_report_the_pngs_and_the_predictions(cli, members, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main([f"--members={members}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "split train, fold 3: 6 clips, 3 songs" in printed
    assert "ensemble" in printed and "precision" in printed
    report = json.loads((out / "report.json").read_text())
    for name in ("confusion_clip.png", "confusion_song.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert (report["fold"], report["num_clips"], report["num_songs"]) == (3, 6, 3)
    assert [m["backend"] for m in report["members"]] == ["jax", "torch"]
    # The report's figures are those of the saved predictions.
    saved = np.load(out / "predictions.npz")
    assert saved["member_probs"].shape == (2, 6, 10)
    np.testing.assert_array_equal(saved["folds"], 3)
    ens = report["ensemble"]
    assert ens["clip"]["accuracy"] == pytest.approx(
        core.accuracy(saved["probs"].argmax(1), saved["labels"])
    )
    for row, probs in zip(report["members"], saved["member_probs"], strict=True):
        assert row["clip_accuracy"] == pytest.approx(
            core.accuracy(probs.argmax(1), saved["labels"])
        )
    confusion = np.asarray(ens["clip"]["confusion"])
    assert confusion.sum() == 6 and np.trace(confusion) == round(6 * ens["clip"]["accuracy"])
    per_class = ens["song"]["per_class"]
    assert sum(c["support"] for c in per_class.values()) == 3
    assert report["members_loaded"][1 if cli is jax_evaluate else 0]["how"].startswith("converted")


@pytest.mark.parametrize("cli", [jax_ensemble_cli, torch_ensemble_cli], ids=["jax", "torch"])
def test_ensemble_cli_prints_members_and_ensemble(cli, members, capsys):
    assert cli.main([f"--members={members}", "--route=native"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("fold 3: 6 clips, 3 songs")
    assert [line.split()[0] for line in lines[3:]] == ["jax:lstm", "torch:lstm", "ensemble"]
    for line in lines[3:]:
        assert all(0.0 <= float(x) <= 1.0 for x in line.split()[-2:])


def test_evaluate_refuses_what_it_cannot_score(members, tmp_path, ensemble_runs):
    with pytest.raises(DataError, match="holds no clips"):
        jax_evaluate.main([f"--members={members}", "--fold=7", f"--out={tmp_path}"])
    with pytest.raises(DataError, match="has no split 'test'"):
        jax_evaluate.main([f"--members={members}", "--split=test", f"--out={tmp_path}"])
    with pytest.raises(MemberError, match="no .*checkpoint"):
        empty = tmp_path / "empty_run"
        empty.mkdir()
        (empty / "recipe.json").write_text(
            (ensemble_runs.trained_member("jax", 0) / "recipe.json").read_text()
        )
        jax_evaluate.main([f"--members={empty}", f"--out={tmp_path}"])
