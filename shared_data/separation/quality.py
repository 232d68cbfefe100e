"""How good a separation is, and how far two separations are apart, in dB.

Used by the precision test (``tests/test_separation_precision.py``) and by
``benchmarks.preprocess``'s quality rows, so that the figures in ``BENCHMARKS.md`` and the test's
thresholds are the same quantity.
"""

from __future__ import annotations

import numpy as np


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio of ``estimate`` against ``reference`` (any equal shapes), in
    dB over all samples and channels: ``10 log10(||r||^2 / ||r - e||^2)``, in float64.

    With ``reference`` another separation (fp32) and ``estimate`` its bf16 counterpart, this is
    how far below the output the bf16 rounding lies. ``inf`` when they are identical.
    """
    r = np.asarray(reference, dtype=np.float64)
    error = float(np.sum((r - np.asarray(estimate, dtype=np.float64)) ** 2))
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(np.sum(r**2)) / error))


def sdr_change_bound_db(sdr: float, perturbation_db: float) -> float:
    """The most a perturbation lying ``perturbation_db`` below the output can move an SDR of
    ``sdr`` dB (both against the same truth), in dB.

    With error ``e`` (``||e|| = ||r|| 10^(-sdr/20)``) and a perturbation ``d`` of the output
    (``||d|| <= ||out|| 10^(-perturbation_db/20)``, ``||out|| <= ||r|| + ||e||``), the triangle
    inequality bounds the new error by ``||e|| +- ||d||``, so the SDR moves by at most
    ``20 log10(1 + ||d|| / ||e||)`` (up) or ``-20 log10(1 - ||d|| / ||e||)`` (down); this returns
    the larger, down.
    """
    e = 10.0 ** (-sdr / 20.0)
    d = (1.0 + e) * 10.0 ** (-perturbation_db / 20.0)
    if d >= e:
        return float("inf")
    return float(-20.0 * np.log10(1.0 - d / e))
