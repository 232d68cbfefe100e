"""Read the TensorBoard event files a run writes (tensorboardX's protobufs, no TensorFlow)."""

from __future__ import annotations

import struct
from pathlib import Path


def tf_records(path: Path) -> list[bytes]:
    """The payloads of a TFRecord file (length, length-CRC, data, data-CRC)."""
    raw, out, pos = Path(path).read_bytes(), [], 0
    while pos < len(raw):
        (length,) = struct.unpack("<Q", raw[pos : pos + 8])
        out.append(raw[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
    return out


def scalars(workdir: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of scalar ``tag`` over every event file of ``workdir/tensorboard``."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[int, float] = {}
    for path in sorted((Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
        for payload in tf_records(path):
            event = Event.FromString(payload)
            for value in event.summary.value:
                if value.tag == tag:
                    found[int(event.step)] = float(value.simple_value)
    return found


def tags(workdir: Path) -> set[str]:
    """Every scalar tag in the event files of ``workdir/tensorboard``."""
    from tensorboardX.proto.event_pb2 import Event

    found: set[str] = set()
    for path in sorted((Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
        for payload in tf_records(path):
            found.update(value.tag for value in Event.FromString(payload).summary.value)
    return found
