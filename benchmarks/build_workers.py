"""The dataset build with 1 and 2 (or more) Beam DirectRunner workers, side by side in one run.

``python -m benchmarks.build_workers --config=synthetic --workers=1,2 [--paths=auto:auto,...]
--out=FILE.json``

Each build is ``python -m shared_data.build --config=C --workers=N --backend=B
--separation_precision=P --no_progress`` into a fresh ``--data_dir`` (and so a fresh song cache),
one after the other, for every worker count and every separation path ``B:P`` of ``--paths``
(default ``auto:auto``, the path the build takes by itself). Recorded per build: the path the
build took (its summary's separator line), the wall time of the whole command, the Beam stage's
seconds (the build prints them; the rest of the wall time is start-up and the writer pass), and
the peak resident set of the driver and of every worker process, sampled every 0.5 s with psutil
over the command's process tree. The record also holds the machine, the load average before and
after, and the versions (``benchmarks.hardware.environment``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.hardware import environment, load_average

PROG = "python -m benchmarks.build_workers"


def _sample_tree(proc: Any, peaks: dict[int, tuple[str, int]]) -> None:
    """Update ``peaks`` (pid -> (role, peak RSS bytes)) with the tree of ``proc`` now."""
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            rss = p.memory_info().rss
            role = "driver" if p.pid == proc.pid else "worker"
        except psutil.Error:
            continue
        old = peaks.get(p.pid, (role, 0))[1]
        peaks[p.pid] = (role, max(old, rss))


def _stage_seconds(output: str) -> float | None:
    """The Beam stage's seconds, from the build's "song stage done in X s" line."""
    found = re.findall(r"song stage done in ([0-9.]+) s", output)
    return float(found[-1]) if found else None


def _separation(output: str) -> str | None:
    """The path the build took, from its summary's "separator ..., stem" line."""
    found = re.findall(r"^  separator (.+), stem ", output, flags=re.MULTILINE)
    return found[-1] if found else None


def build_once(config: str, workers: int, root: Path, path: str = "auto:auto") -> dict[str, Any]:
    """One build into ``root`` on separation ``path`` (``backend:precision``); its timings and
    peak memory (see the module doc)."""
    import psutil

    backend, _, precision = path.partition(":")
    data_dir = root / f"workers{workers}_{backend}_{precision}"
    command = [sys.executable, "-m", "shared_data.build", f"--config={config}",
               f"--data_dir={data_dir}", f"--workers={workers}", f"--backend={backend}",
               f"--separation_precision={precision}", "--no_progress"]  # fmt: skip
    peaks: dict[int, tuple[str, int]] = {}
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        _sample_tree(watched, peaks)
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    output = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output[-3000:]}")
    # Workers are the processes that grew past 512 MiB (the separator's weights): the Beam
    # harness also starts small helper processes that never hold a separator.
    driver_rss = max(r for role, r in peaks.values() if role == "driver")
    workers_rss = sorted(rss for role, rss in peaks.values() if role == "worker" and rss > 2**29)
    return {
        "workers": workers,
        "path": path,
        "separation": _separation(output),
        "wall_s": round(wall, 1),
        "beam_stage_s": _stage_seconds(output),
        "driver_peak_rss_mib": round(driver_rss / 2**20),
        "worker_peak_rss_mib": [round(r / 2**20) for r in workers_rss],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="synthetic")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument(
        "--paths", default="auto:auto", help="comma-separated backend:precision separation paths"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON record here")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    doc: dict[str, Any] = environment(f"{PROG} " + " ".join(argv or sys.argv[1:]))
    doc["load_before"] = load_average()
    with tempfile.TemporaryDirectory(prefix="build_workers_") as tmp:
        doc["builds"] = [
            build_once(args.config, n, Path(tmp), path)
            for path in args.paths.split(",")
            for n in counts
        ]
    doc["load_after"] = load_average()
    base = doc["builds"][0]["wall_s"]
    for b in doc["builds"]:
        b["speed_up"] = round(base / b["wall_s"], 2)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
