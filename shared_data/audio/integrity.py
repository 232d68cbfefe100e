"""Container-level truncation checks: what a file's own header promises versus the bytes present.

libsndfile repairs truncated files quietly (a WAV whose ``data`` chunk promises more bytes than the
file holds is read up to the end of the file; an MP3 cut mid-frame loses that frame), so a decoder's
output alone cannot tell a short song from a damaged one. These pure functions read the container
and report a truncation as a short reason string, or ``None`` when the file is whole or the format
carries no length to check against.

What "truncated" means per format:

- WAV (RIFF/WAVE): the ``data`` chunk's declared size exceeds the bytes after it. Streaming writers
  that leave the size at 0 or 0xFFFFFFFF declare nothing and are not checked; RF64 is not checked.
- AIFF/AIFC: the ``COMM`` chunk's frame count exceeds the frames the ``SSND`` chunk holds.
- MPEG audio (MP3, MP2): walking the frame headers from the first frame, a frame declares more
  bytes than remain in the file (cut mid-frame). Decoded lengths are checked separately by
  :func:`mpeg_stream_samples`, which counts the samples the frames hold.
- Ogg (Vorbis, Opus, FLAC-in-Ogg): the last page is incomplete or is not flagged end-of-stream.
- Everything else (FLAC, ...): the caller compares the decoded length with the header's frame count.
"""

from __future__ import annotations

import struct

# MPEG audio bitrates in kbit/s, indexed [version is MPEG-1][layer 1..3][bitrate index].
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame(data: bytes, i: int) -> tuple[int, int] | None:
    """``(frame_bytes, samples_per_frame)`` of a valid MPEG header at ``data[i]``, else None."""
    if i + 4 > len(data) or data[i] != 0xFF or data[i + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[i + 1] >> 3) & 3, (data[i + 1] >> 1) & 3
    bitrate_index, sr_index = data[i + 2] >> 4, (data[i + 2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or sr_index == 3:
        return None  # reserved values, or free format (no length to walk by)
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    sr = _SAMPLE_RATES[version][sr_index]
    padding = (data[i + 2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // sr + padding) * 4, 384
    if layer == 3 and not mpeg1:
        return 72 * bitrate // sr + padding, 576
    return 144 * bitrate // sr + padding, 1152


def _mpeg_start(data: bytes) -> int | None:
    """Offset of the first MPEG audio frame (after ID3v2 tags), confirmed by the frame after it."""
    i = 0
    while data[i : i + 3] == b"ID3" and len(data) >= i + 10:
        size = (data[i + 6] << 21) | (data[i + 7] << 14) | (data[i + 8] << 7) | data[i + 9]
        i += 10 + size + (10 if data[i + 5] & 0x10 else 0)
    for j in range(i, min(len(data), i + 65536)):
        frame = _mpeg_frame(data, j)
        if frame is not None and (
            j + frame[0] >= len(data) or _mpeg_frame(data, j + frame[0]) is not None
        ):
            return j
    return None


def _walk_mpeg(data: bytes) -> tuple[int, int, str | None] | None:
    """Walk MPEG frames: ``(n_frames, samples, truncation reason or None)``; None if not MPEG."""
    i = _mpeg_start(data)
    if i is None:
        return None
    n_frames = samples = 0
    while i < len(data):
        frame = _mpeg_frame(data, i)
        if frame is None:
            # Trailing tags, zero padding or junk: the audio ended at a frame boundary.
            break
        if i + frame[0] > len(data):
            return (
                n_frames,
                samples,
                f"truncated: MPEG frame {n_frames + 1} needs {frame[0]} bytes, "
                f"file holds {len(data) - i}",
            )
        n_frames, samples, i = n_frames + 1, samples + frame[1], i + frame[0]
    return n_frames, samples, None


def mpeg_stream_samples(data: bytes) -> int | None:
    """Samples per channel held by the MPEG audio frames in ``data`` (None if not MPEG audio).

    The count includes the encoder delay, padding and any Xing/LAME info frame, so a gapless
    decoder returns up to about three frames fewer.
    """
    walked = _walk_mpeg(data)
    return None if walked is None else walked[1]


def _riff_chunks(data: bytes, start: int, fmt: str):
    """Yield ``(chunk_id, body_offset, declared_size)`` of an IFF-style chunk list."""
    i = start
    while i + 8 <= len(data):
        chunk_id, size = data[i : i + 4], struct.unpack(fmt, data[i + 4 : i + 8])[0]
        yield chunk_id, i + 8, size
        i += 8 + size + (size & 1)


def _wav_truncation(data: bytes) -> str | None:
    block_align = None
    for chunk_id, body, size in _riff_chunks(data, 12, "<I"):
        if chunk_id == b"fmt " and body + 14 <= len(data):
            block_align = struct.unpack("<H", data[body + 12 : body + 14])[0]
        elif chunk_id == b"data":
            if size in (0, 0xFFFFFFFF) or not block_align:
                return None
            declared, present = size // block_align, (len(data) - body) // block_align
            if declared <= present:
                return None
            return f"truncated: header says {declared} frames, file holds {present}"
    return None


def _aiff_truncation(data: bytes) -> str | None:
    frames = channels = bits = None
    for chunk_id, body, size in _riff_chunks(data, 12, ">I"):
        if chunk_id == b"COMM" and body + 8 <= len(data):
            channels, frames, bits = struct.unpack(">hIh", data[body : body + 8])
        elif chunk_id == b"SSND" and frames and channels and bits:
            offset = struct.unpack(">I", data[body : body + 4])[0] if body + 4 <= len(data) else 0
            frame_bytes = channels * ((bits + 7) // 8)
            present = max(0, min(size, len(data) - body) - 8 - offset) // frame_bytes
            if present < frames:
                return f"truncated: header says {frames} frames, file holds {present}"
            return None
    return None


def _ogg_truncation(data: bytes) -> str | None:
    last = data.rfind(b"OggS", max(0, len(data) - 131072))
    if last < 0 or last + 27 > len(data):
        return "truncated: no complete Ogg page at the end of the file"
    n_segments = data[last + 26]
    table = data[last + 27 : last + 27 + n_segments]
    end = last + 27 + n_segments + sum(table)
    if len(table) < n_segments or end > len(data):
        return f"truncated: last Ogg page needs {end - last} bytes, file holds {len(data) - last}"
    if not data[last + 5] & 0x04:
        return "truncated: the Ogg stream has no end-of-stream page"
    return None


def container_truncation(data: bytes, container: str) -> str | None:
    """A truncation reason for a file's bytes, or None when whole or not checkable.

    Args:
        data: the whole file.
        container: libsndfile's major format name (``soundfile.info(path).format``: ``"WAV"``,
            ``"WAVEX"``, ``"AIFF"``, ``"MP3"``, ``"OGG"``, ...); others are not checked here.
    """
    if container in ("WAV", "WAVEX") and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return _wav_truncation(data)
    if container == "AIFF" and data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        return _aiff_truncation(data)
    if container == "MP3":
        walked = _walk_mpeg(data)
        return None if walked is None else walked[2]
    if container == "OGG":
        return _ogg_truncation(data)
    return None


def mpeg_declares_length(data: bytes) -> bool:
    """Whether the first MPEG frame is a Xing/Info/VBRI frame, whose frame count is exact."""
    start = _mpeg_start(data)
    if start is None:
        return False
    head = data[start : start + 64]
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


# A gapless MP3 decode drops the info frame, the encoder delay and the padding: under 3 frames.
_MPEG_SLACK = 4 * 1152


def truncation_reason(
    data: bytes, container: str, declared_frames: int, decoded_frames: int
) -> str | None:
    """Why a decoded file is incomplete, or None when it is whole (as far as can be told).

    Args:
        data: the whole file.
        container: libsndfile's major format name (``"WAV"``, ``"MP3"``, ``"FLAC"``, ...).
        declared_frames: the frame count libsndfile reports before decoding (from the header, or
            for an MP3 without a Xing/Info frame, an estimate from the first frame's bitrate).
        decoded_frames: the frames the decoder actually returned.
    """
    reason = container_truncation(data, container)
    if reason is not None:
        return reason
    if container == "MP3":
        stream = mpeg_stream_samples(data)
        if stream is not None and decoded_frames + _MPEG_SLACK < stream:
            # libsndfile stops at its estimate for a VBR file without a Xing frame.
            return (
                f"incomplete decode: MPEG frames hold {stream} samples, decoder returned "
                f"{decoded_frames} (VBR mp3 without a Xing header?); re-encode the file"
            )
        if not mpeg_declares_length(data):
            return None
    if decoded_frames < declared_frames:
        return f"truncated: header says {declared_frames} frames, file holds {decoded_frames}"
    return None
