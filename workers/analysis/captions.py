"""Live captions while a candidate answers (issue #5, item 2).

The media service (issue 7) feeds the answer's audio in chunks as it arrives; each
`feed` returns the caption so far: text that is committed (it never changes again)
and a tentative tail (the decoder's current guess about the last second or two).

Who sees it: the caption is shown to the candidate only, when the job turns captions
on, and to nobody else while the answer runs. Nothing of it is stored while the answer
runs: captions live in this object's memory and in the candidate's page. When the
answer ends, `finish()` returns the transcript of the whole answer (the committed text
and a last decode of the rest); that is what may be stored, sealed in
`Answer.transcript` like any transcript, until the analysis job's offline transcription
of the full recording (`workers.analysis.jobs`, beam 5) replaces it. The media service
(issue 7) calls this; `asr.caption_transcriber` is the transcriber to give it.

`feed` decodes at most once per call and only when `min_decode_s` of new audio came in:
a caller that falls behind (decoding takes longer than the chunk lasts on a busy box)
passes the audio that piled up in one call, and captions lag instead of queueing.

How it stays cheap on long answers (LocalAgreement-2, as in Macháček et al.,
"Turning Whisper into Real-Time Transcription System", 2023): only a window of audio
that is not yet settled is decoded again on each chunk. A word is committed once two
decodes in a row agree on it, or once the speaker pauses after it. The window is then
cut at the end of the last committed sentence, so it holds at most `max_window_s` of
audio (below Whisper's 30 s) however long the answer is, and each chunk costs at most
one Whisper window.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workers.analysis.asr import Transcriber
from workers.analysis.audio import SAMPLE_RATE
from workers.analysis.transcript import Segment, Transcript, Word

SENTENCE_ENDS = tuple("。！？.!?")
PAUSE_S = 1.0
"""A stretch of this much silence after the last word commits everything before it, and
separates segments in the final transcript (as the VAD does offline)."""


@dataclass(frozen=True)
class Caption:
    """What the candidate sees: settled text, then the decoder's current guess."""

    committed: str
    tentative: str
    language: str | None

    @property
    def text(self) -> str:
        joiner = " " if self.language == "en" and self.committed and self.tentative else ""
        return self.committed + joiner + self.tentative


class LiveCaptioner:
    """Incremental transcription of one answer (one object per answer)."""

    def __init__(
        self,
        transcriber: Transcriber,
        language: str | None,
        prompt: str | None = None,
        *,
        min_decode_s: float = 1.0,
        max_window_s: float = 24.0,
        detect_after_s: float = 3.0,
    ) -> None:
        """`language` None: detected on the first `detect_after_s` of audio, then kept for
        the rest of the answer. `prompt` is the job's vocabulary, as for `transcribe`."""
        self._transcriber = transcriber
        self._language = language
        self._prompt = prompt
        self._min_decode_s = min_decode_s
        self._max_window_s = max_window_s
        self._detect_after_s = detect_after_s
        self._window = np.zeros(0, dtype=np.float32)
        self._window_start = 0.0  # seconds into the answer where `_window` begins
        self._fed = 0  # samples received
        self._committed: list[Word] = []
        self._guess: list[Word] = []  # the last decode's words after the committed ones
        self._decoded_at = 0  # `_fed` at the last decode

    @property
    def language(self) -> str | None:
        return self._language

    @property
    def max_window_s(self) -> float:
        return self._max_window_s

    @property
    def window_s(self) -> float:
        """Seconds of audio the next decode will read (bounded by `max_window_s`)."""
        return self._window.size / SAMPLE_RATE

    def feed(self, pcm: np.ndarray) -> Caption:
        """Add 16 kHz mono float32 samples; decode again when enough new audio arrived."""
        samples = np.asarray(pcm, dtype=np.float32).reshape(-1)
        self._window = np.concatenate([self._window, samples])
        self._fed += samples.size
        if (self._fed - self._decoded_at) / SAMPLE_RATE >= self._min_decode_s:
            self._step(final=False)
        return self.caption()

    def caption(self) -> Caption:
        return Caption(self._join(self._committed), self._join(self._guess), self._language)

    def finish(self) -> Transcript:
        """The answer ended: settle the rest and return the transcript of the whole answer."""
        if self._fed > self._decoded_at or self._guess:
            self._step(final=True)
        language = self._language or "zh"
        segments = _segments(self._committed, language)
        joiner = "" if language == "zh" else " "
        return Transcript(
            language=language,
            text=joiner.join(s.text for s in segments),
            segments=segments,
            duration_s=self._fed / SAMPLE_RATE,
            model=getattr(self._transcriber, "model_name", ""),
        )

    # --- one decode ----------------------------------------------------------------------

    def _step(self, final: bool) -> None:
        self._decoded_at = self._fed
        if self._window.size == 0:
            return
        result = self._transcriber.transcribe(self._window, self._language, self._context())
        if self._language is None and (final or self._fed / SAMPLE_RATE >= self._detect_after_s):
            self._language = result.language
        words = self._new_words(result)
        end_s = self._window_start + self._window.size / SAMPLE_RATE
        paused = bool(words) and end_s - words[-1].end >= PAUSE_S
        if self._language is None:
            settled = 0  # nothing is settled before the language is (it decides the spacing)
        elif final or paused:
            settled = len(words)
        else:
            settled = _agreed(self._guess, words)
        self._committed.extend(words[:settled])
        self._guess = words[settled:]
        self._trim(final)

    def _new_words(self, result: Transcript) -> list[Word]:
        """The decode's words after those already committed, in answer time."""
        words = [
            Word(w.start + self._window_start, w.end + self._window_start, w.word)
            for s in result.segments
            for w in s.words
        ]
        if not self._committed:
            return words
        last = self._committed[-1].end
        words = [w for w in words if w.end > last + 0.05]
        # Timestamps jitter between decodes: drop a repeat of the committed tail.
        tail = [_key(w.word) for w in self._committed[-5:]]
        for n in range(min(5, len(tail), len(words)), 0, -1):
            if tail[-n:] == [_key(w.word) for w in words[:n]]:
                return words[n:]
        return words

    def _trim(self, final: bool) -> None:
        """Drop audio up to the end of the last committed sentence (or pause); when the
        window would grow past `max_window_s`, settle what is older than the last 5 s."""
        window_s = self._window.size / SAMPLE_RATE
        cut = self._cut_point()
        if cut is None and window_s > self._max_window_s and self._guess:
            keep_from = self._window_start + window_s - 5.0
            older = [w for w in self._guess if w.end <= keep_from]
            self._committed.extend(older)
            self._guess = self._guess[len(older) :]
            cut = older[-1].end if older else None
        if final:
            cut = self._window_start + window_s
        if cut is not None and cut > self._window_start:
            drop = int(round((cut - self._window_start) * SAMPLE_RATE))
            self._window = self._window[drop:]
            self._window_start += drop / SAMPLE_RATE

    def _cut_point(self) -> float | None:
        """End of the last committed word that closes a sentence or precedes a pause,
        once the window holds more than 10 s (short windows decode better whole)."""
        if self._window.size / SAMPLE_RATE < 10.0:
            return None
        words = [w for w in self._committed if w.end > self._window_start]
        for i in range(len(words) - 1, -1, -1):
            following = words[i + 1].start if i + 1 < len(words) else None
            if self._guess and following is None:
                following = self._guess[0].start
            pause = following is not None and following - words[i].end >= PAUSE_S / 2
            if words[i].word.endswith(SENTENCE_ENDS) or pause:
                return words[i].end
        return None

    def _context(self) -> str | None:
        """The job's vocabulary, then the committed text just before the window, so the
        decoder continues the sentence rather than starting a new one."""
        before = [w for w in self._committed if w.end <= self._window_start + 0.05]
        context = self._join(before)[-60:]
        parts = [p for p in ((self._prompt or "")[:120], context) if p]
        return " ".join(parts) or None

    def _join(self, words: Sequence[Word]) -> str:
        joiner = "" if self._language != "en" else " "
        return joiner.join(w.word for w in words)


def _key(word: str) -> str:
    """A word compared between decodes: case and punctuation do not count."""
    return "".join(ch for ch in word.lower() if unicodedata.category(ch)[0] in "LN")


def _agreed(previous: Sequence[Word], current: Sequence[Word]) -> int:
    """How many leading words two consecutive decodes agree on (LocalAgreement-2)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if _key(a.word) != _key(b.word):
            break
        n += 1
    return n


def _segments(words: Sequence[Word], language: str) -> list[Segment]:
    """Sentences of the final transcript: cut after sentence-final punctuation or at a pause."""
    joiner = "" if language == "zh" else " "
    out: list[Segment] = []
    current: list[Word] = []
    for word in words:
        if current and word.start - current[-1].end >= PAUSE_S:
            out.append(
                Segment(
                    current[0].start, current[-1].end, joiner.join(w.word for w in current), current
                )
            )
            current = []
        current.append(word)
        if word.word.endswith(SENTENCE_ENDS):
            out.append(
                Segment(
                    current[0].start, current[-1].end, joiner.join(w.word for w in current), current
                )
            )
            current = []
    if current:
        out.append(
            Segment(
                current[0].start, current[-1].end, joiner.join(w.word for w in current), current
            )
        )
    return out
