"""The shape of a transcript, shared by every ASR backend, the signals and the report.

`as_dict()` is exactly what `appliance transcribe --json` prints (issue #5) and what
is sealed in `Answer.transcript` (as JSON), so the report's evidence can point at
segment and word times that exist in the stored transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    language: str
    """zh or en: given, or detected for this answer (never once per interview)."""
    text: str
    segments: list[Segment]
    duration_s: float = 0.0
    """Length of the audio, for speaking rate and real-time factors."""
    model: str = ""
    """Model and backend that produced it, e.g. `whisper-base/faster-whisper-int8-cpu`."""

    def as_dict(self, file: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if file is None else {"file": file}
        out |= {
            "language": self.language,
            "text": self.text,
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "text": s.text,
                    "words": [
                        {"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word}
                        for w in s.words
                    ],
                }
                for s in self.segments
            ],
        }
        return out

    def stored(self) -> dict[str, Any]:
        """What `Answer.transcript` holds (JSON): the CLI shape plus duration and model."""
        return self.as_dict() | {"duration_s": self.duration_s, "model": self.model}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            language=data["language"],
            text=data["text"],
            segments=[
                Segment(
                    s["start"],
                    s["end"],
                    s["text"],
                    [Word(w["start"], w["end"], w["word"]) for w in s.get("words", [])],
                )
                for s in data["segments"]
            ],
            duration_s=float(data.get("duration_s", 0.0)),
            model=data.get("model", ""),
        )
