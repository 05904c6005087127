"""Decode any recording to the 16 kHz mono float32 samples Whisper and Silero VAD read.

PyAV (libav inside the wheel), not the ffmpeg CLI (issue #5): no subprocess, and the
input can be bytes in memory. A recording blob is decrypted into memory and decoded
from there, so no plain copy of a candidate's voice ever touches the disk
(ARCHITECTURE.md, "No personal data ... in temp files on disk").
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16_000


class AudioDecodeError(ValueError):
    """The media has no audio stream PyAV can decode (damaged file, video only, not media)."""


def load_audio(source: Path | bytes) -> np.ndarray:
    """Samples of the first audio stream of `source` (a path, or the file's bytes).

    Any container and codec PyAV reads (WAV, MP4/AAC, WebM/Opus, ...), resampled to
    16 kHz mono float32 in [-1, 1].
    """
    opened = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(opened, mode="r") as container:
            return _decode(container)
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc


def _decode(container: av.container.InputContainer) -> np.ndarray:
    if not container.streams.audio:
        raise AudioDecodeError("the media has no audio stream")
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    for frame in container.decode(stream):
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    # The resampler holds back a few samples until it is flushed.
    pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)
