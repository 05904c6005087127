"""Live captions of the candidate's own answer, while they speak (issue 7, item 7; issue 5).

Only for jobs that turn them on (`Job.live_captions`), and shown to the candidate only:
the caption lives in this object's memory and in the candidate's page, nothing of it
is stored or logged (`workers.analysis.captions` says why). The analysis job later
transcribes the whole recording offline, with the better beam search.

Cost, and why it cannot hurt the recording: the Opus packets are decoded on the event
loop (about 50 us per 20-ms packet, no video is ever decoded) and resampled to 16 kHz
mono; Whisper runs in ONE thread for the whole service (`CAPTION_THREAD`), one decode
at a time, at most one queued per answer. When the box is busy (many answers at once),
captions lag and skip ahead (`LiveCaptioner` decodes whatever piled up in one go); the
recording path never waits for them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger("enclave.media")

CAPTION_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="captions")
"""One Whisper decode at a time for the whole service: captions share, recordings never wait."""
MIN_CHUNK_S = 1.0
"""Hand audio to the captioner once a second (its own `min_decode_s`)."""
SAMPLE_RATE = 16_000


class CaptionTap:
    """Receives one answer's Opus payloads and keeps its latest caption."""

    def __init__(self, make_captioner: Any) -> None:
        """`make_captioner()` builds the `LiveCaptioner` (it loads Whisper on first use,
        so it runs in the caption thread too)."""
        import av

        self._make_captioner = make_captioner
        self._captioner: Any = None
        self._decoder: Any = av.CodecContext.create("opus", "r")
        self._resampler: Any = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._closed = False
        self.text = ""
        self.committed = ""
        self.tentative = ""
        self.failed: str | None = None
        # Whisper loads (once per process) while ICE and DTLS connect, not on the first words.
        self._busy: Future[None] | None = CAPTION_THREAD.submit(self._load)

    def _load(self) -> None:
        try:
            self._captioner = self._make_captioner()
        except Exception as exc:  # noqa: BLE001 (captions are a help: the answer goes on)
            self.failed = type(exc).__name__
            log.warning("live captions unavailable: %s", self.failed)

    def feed(self, payload: bytes) -> None:
        """One Opus packet as received (on the event loop)."""
        if self._closed or self.failed is not None:
            return
        import av

        try:
            frames = self._decoder.decode(av.Packet(payload))
            for frame in frames:
                for out in self._resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1)
                    self._pending.append(pcm)
                    self._pending_samples += pcm.size
        except av.FFmpegError:
            return  # a damaged packet: the caption skips it, the recording keeps it
        if self._pending_samples >= MIN_CHUNK_S * SAMPLE_RATE and self._idle():
            chunk = np.concatenate(self._pending)
            self._pending, self._pending_samples = [], 0
            self._busy = CAPTION_THREAD.submit(self._decode, chunk)

    def _idle(self) -> bool:
        return self._busy is None or self._busy.done()

    def _decode(self, chunk: np.ndarray) -> None:
        """In the caption thread: one `LiveCaptioner.feed`."""
        if self._captioner is None or self._closed:
            return  # unavailable, or the answer ended while this chunk waited
        try:
            caption = self._captioner.feed(chunk)
        except Exception as exc:  # noqa: BLE001 (captions are a help: the answer goes on)
            self.failed = type(exc).__name__
            log.warning("live captions stopped: %s", self.failed)
            return
        self.committed, self.tentative, self.text = (
            caption.committed,
            caption.tentative,
            caption.text,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "committed": self.committed,
            "tentative": self.tentative,
            "failed": self.failed is not None,
        }

    def close(self) -> None:
        """The answer ended: no more decodes. One still in flight finishes in the caption
        thread and is dropped; the recording's end never waits for it (the web app waits
        at most 15 s for the whole stop, drain included)."""
        self._closed = True


def captioner_factory(settings: Any, language: str | None, prompt: str | None) -> Any:
    """What `CaptionTap` calls in the caption thread: Whisper (greedy) behind a
    `LiveCaptioner` (imports workers.analysis lazily: only captioned answers load it)."""

    def make() -> Any:
        from workers.analysis.asr import caption_transcriber
        from workers.analysis.captions import LiveCaptioner

        return LiveCaptioner(caption_transcriber(settings.ai), language, prompt)

    return make
