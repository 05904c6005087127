"""Frames of an interview video at a fixed sampling rate, decoded in memory with PyAV.

Face signals look at 2-5 frames a second (issue #5), not at every frame: this
module decodes the stream once and converts to RGB only the frames it keeps, the
conversion being the dearer half of the work. A recording is personal data, so
bytes are decoded from memory and never written to a temporary file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

MIN_FPS = 2.0
MAX_FPS = 5.0


class VideoUnreadable(ValueError):
    """The media has no decodable video stream (empty, truncated or audio only)."""


def sample_frames(source: Path | bytes, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """Yield `(t, rgb)` for the frame shown at each multiple of `1/fps` seconds.

    `t` is the frame's presentation time in seconds from the start of the video
    stream; `rgb` is a `(height, width, 3)` uint8 array. A frame is kept when its
    time reaches the next sampling instant (within half a frame), so with a
    15 fps video and `fps=3` every fifth frame comes out, and a variable frame
    rate (browser recordings) still gives one frame per instant at most.
    """
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"sampling rate {fps} fps is outside {MIN_FPS:g}-{MAX_FPS:g} fps")
    period = 1.0 / fps
    try:
        container = av.open(
            io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r"
        )
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoUnreadable(f"cannot open the video: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoUnreadable("the media has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is the fixed cost
        start, base = stream.start_time, stream.time_base
        origin = float(start * base) if start and base else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        slack = 0.5 / rate
        instant = 0  # index of the next sampling instant (no float drift over an hour)
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - origin
                if t + slack < instant * period:
                    continue
                yield round(t, 3), frame.to_ndarray(format="rgb24")
                while instant * period <= t + slack:
                    instant += 1
        except av.error.FFmpegError as exc:
            raise VideoUnreadable(f"the video stream is damaged: {exc}") from None
