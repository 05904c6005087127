"""Speech signals of one answer (issue #5, item 5): speaking rate, pauses, filler words.

Everything is computed from the transcript's word timestamps, so every figure can be
pointed at in the recording (each pause and filler carries its start and end).

Definitions (the score report and the candidate's explanation repeat them):

- **Speech time**: from the first word to the last, less every gap between words
  longer than `PAUSE_S` (0.5 s). Lead-in and tail silence are not speech time.
- **Speaking rate**: zh in characters per minute (Han characters, plus each Latin word
  or number as one unit, for code-switched answers); en in words per minute; both over
  speech time, so a long pause does not make a fluent speaker look slow.
- **Pauses**: gaps between consecutive words longer than 0.5 s; long pauses > 2 s.
  `silence_share` is the part of the recording without speech (lead-in, pauses, tail).
- **Fillers**: see `_ZH_FILLERS` and `_EN_FILLERS`. 嗯/呃 and um/uh are always
  fillers. 那个, 就是, 然后 (and like, you know, I mean) are ordinary words too, so they
  count only where they stand apart from the sentence: directly followed by a comma or
  other break, or by a silence of at least `HESITATION_S` (0.3 s), or doubled
  (然后然后). "然后我联系了护士长" is a connective, "然后，嗯，我……" is a filler.
  A "like" also needs a break before it ("I was, like, nervous"), and never counts before
  a full stop ("what I like.").
  Limitation: Whisper tends to leave fillers out of its text, so counts are a floor.

`speech_signals` returns (times in seconds of the answer's recording):

    {"language", "unit": "chars" | "words", "units": int, "duration_s", "speech_s",
     "rate_per_min": float | None, "silence_share": float | None (0-1),
     "pauses": {"threshold_s": 0.5, "long_threshold_s": 2.0, "count", "total_s",
                "longest_s", "long_count", "items": [{"start", "end", "duration_s"}]},
     "fillers": {"count", "per_min": float | None, "by_word": {label: count},
                 "items": [{"word", "text", "start", "end", "offset"}]}}
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workers.analysis.transcript import Segment, Transcript

PAUSE_S = 0.5
LONG_PAUSE_S = 2.0
HESITATION_S = 0.3
"""A silence after 那个/就是/然后/like this long marks it as a hesitation, not a word."""

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_UNIT = re.compile(rf"[{_HAN}]|[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,]\d+)?")
_EN_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_BREAK = "，,。.！!？?；;：:…—-、"
_BREAK_CHARS = frozenset(_BREAK) | frozenset(" \t\n")


@dataclass(frozen=True)
class FillerRule:
    label: str
    pattern: re.Pattern[str]
    break_after: bool = False
    """Only a filler when a break follows (punctuation, a hesitation pause, a doubling)."""
    break_before: bool = False
    """... and one comes before it (start of the segment, punctuation, a pause)."""


_ZH_FILLERS = (
    FillerRule("嗯", re.compile(r"嗯+")),
    FillerRule("呃", re.compile(r"呃+")),
    # 额 is also a word (额外, 金额): only when no Han character touches it.
    FillerRule("呃", re.compile(rf"(?<![{_HAN}])额(?![{_HAN}])")),
    FillerRule("那个", re.compile(r"那[个個]"), break_after=True),
    FillerRule("就是", re.compile(r"就是"), break_after=True),
    FillerRule("然后", re.compile(r"然[后後]"), break_after=True),
)
_EN_FILLERS = (
    FillerRule("um", re.compile(r"\b(?:um+|erm|hmm+)\b", re.I)),
    # not "er": in a hospital it is mostly the ER
    FillerRule("uh", re.compile(r"\b(?:uh+|ah)\b(?!['’])", re.I)),
    FillerRule("you know", re.compile(r"\byou know\b", re.I), break_after=True),
    FillerRule("I mean", re.compile(r"\bI mean\b", re.I), break_after=True),
    # "I would like to", "what I like.": words; "I was, like, nervous": a filler.
    FillerRule("like", re.compile(r"\blike\b(?![.!?])", re.I), True, True),
)


@dataclass(frozen=True)
class SegmentTimeline:
    """One segment's text with a time for every character, from its word timestamps.

    `offset` is where `text` starts in the transcript's `text` (-1 if it is not there
    verbatim), so a span of it can be quoted as evidence that exists in the transcript.
    """

    index: int
    segment: Segment
    text: str
    offset: int
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    spoken: tuple[bool, ...]
    """False for spaces and punctuation that no word covers."""

    def span_times(self, a: int, b: int) -> tuple[float, float]:
        """Start and end of characters `[a, b)`, clamped to the segment's own times."""
        idx = [i for i in range(a, b) if self.spoken[i]] or list(range(a, b))
        if not idx:
            return self.segment.start, self.segment.end
        lo = max(self.segment.start, min(self.starts[i] for i in idx))
        hi = min(self.segment.end, max(self.ends[i] for i in idx))
        return (lo, hi) if hi >= lo else (self.segment.start, self.segment.end)


def timelines(t: Transcript) -> list[SegmentTimeline]:
    """Character timelines of every segment, located in `t.text` in order."""
    out: list[SegmentTimeline] = []
    cursor = 0
    for index, seg in enumerate(t.segments):
        text = seg.text.strip()
        if not text:
            continue
        offset = t.text.find(text, cursor)
        if offset < 0:
            offset = t.text.find(text)
        else:
            cursor = offset + len(text)
        starts, ends, spoken = _align(text, seg)
        out.append(SegmentTimeline(index, seg, text, offset, starts, ends, spoken))
    return out


def _align(
    text: str, seg: Segment
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[bool, ...]]:
    """Give each character of `text` the times of the word it belongs to.

    Words are matched in order, skipping only spaces; a character no word covers
    (punctuation Whisper keeps outside words) takes the previous word's end, and a
    segment whose words do not spell its text falls back to the segment's times.
    """
    n = len(text)
    starts = [seg.start] * n
    ends = [seg.end] * n
    spoken = [False] * n
    pos = 0
    for word in seg.words:
        token = word.word.strip()
        if not token:
            continue
        at = text.find(token, pos)
        if at < 0 or text[pos:at].strip(_BREAK + " "):
            continue  # not where expected (text rewritten after decoding): leave it
        for i in range(at, at + len(token)):
            starts[i], ends[i], spoken[i] = word.start, word.end, True
        pos = at + len(token)
    last_end = seg.start
    for i in range(n):
        if spoken[i]:
            last_end = ends[i]
        elif any(spoken):
            starts[i] = ends[i] = last_end
    return tuple(starts), tuple(ends), tuple(spoken)


def is_zh(language: str) -> bool:
    return language.lower().startswith("zh")


def _word_spans(t: Transcript) -> list[tuple[float, float]]:
    spans = [(w.start, w.end) for s in t.segments for w in s.words if w.word.strip()]
    if not spans:  # a backend without word times: segments are the best we have
        spans = [(s.start, s.end) for s in t.segments if s.text.strip()]
    return sorted(spans)


def _speech_runs(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge word spans into runs of speech, bridging gaps of at most PAUSE_S."""
    runs: list[tuple[float, float]] = []
    for start, end in spans:
        if runs and start - runs[-1][1] <= PAUSE_S:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end))
        else:
            runs.append((start, end))
    return runs


def count_units(text: str, language: str) -> int:
    """Characters (zh) or words (en) in `text`, as the speaking rate counts them."""
    return len((_ZH_UNIT if is_zh(language) else _EN_WORD).findall(text))


def speech_signals(t: Transcript) -> dict[str, Any]:
    """Speaking rate, pauses and fillers of one answer (shape: module docstring)."""
    runs = _speech_runs(_word_spans(t))
    speech_s = sum(end - start for start, end in runs)
    last = runs[-1][1] if runs else 0.0
    duration = max(t.duration_s, last)
    gaps = [(a[1], b[0]) for a, b in zip(runs, runs[1:], strict=False)]
    units = count_units(t.text, t.language)
    minutes = speech_s / 60.0
    fillers = find_fillers(t)
    counts = Counter(f["word"] for f in fillers)
    return {
        "language": t.language,
        "unit": "chars" if is_zh(t.language) else "words",
        "units": units,
        "duration_s": round(duration, 2),
        "speech_s": round(speech_s, 2),
        "rate_per_min": round(units / minutes, 1) if minutes > 0 else None,
        "pauses": _pauses(gaps),
        "silence_share": round(1 - speech_s / duration, 3) if duration > 0 else None,
        "fillers": {
            "count": len(fillers),
            "per_min": round(len(fillers) / minutes, 2) if minutes > 0 else None,
            "by_word": dict(counts),
            "items": fillers,
        },
    }


def _pauses(gaps: list[tuple[float, float]]) -> dict[str, Any]:
    durations = [end - start for start, end in gaps]
    long = [(s, e) for s, e in gaps if e - s > LONG_PAUSE_S]
    return {
        "threshold_s": PAUSE_S,
        "long_threshold_s": LONG_PAUSE_S,
        "count": len(gaps),
        "total_s": round(sum(durations), 2),
        "longest_s": round(max(durations), 2) if durations else 0.0,
        "long_count": len(long),
        "items": [
            {"start": round(s, 2), "end": round(e, 2), "duration_s": round(e - s, 2)}
            for s, e in gaps
        ],
    }


def find_fillers(t: Transcript) -> list[dict[str, Any]]:
    """Every filler with its time and the transcript offset where it stands.

    Items: `{"word", "text", "start", "end", "offset"}`; `text` is the filler as
    written, `offset` its index in `t.text` (-1 if its segment is not there verbatim).
    """
    rules = _ZH_FILLERS if is_zh(t.language) else _EN_FILLERS
    lines = timelines(t)
    found: list[dict[str, Any]] = []
    for k, line in enumerate(lines):
        next_start = lines[k + 1].segment.start if k + 1 < len(lines) else None
        taken: set[int] = set()
        for rule in rules:
            for m in rule.pattern.finditer(line.text):
                if taken.intersection(range(m.start(), m.end())):
                    continue
                if rule.break_after and not _break_after(line, m, next_start):
                    continue
                if rule.break_before and not _break_before(line, m):
                    continue
                taken.update(range(m.start(), m.end()))
                start, end = line.span_times(m.start(), m.end())
                found.append(
                    {
                        "word": rule.label,
                        "text": m.group(0),
                        "start": round(start, 2),
                        "end": round(end, 2),
                        "offset": line.offset + m.start() if line.offset >= 0 else -1,
                    }
                )
    return sorted(found, key=lambda f: (f["start"], f["offset"]))


def _break_after(line: SegmentTimeline, m: re.Match[str], next_start: float | None) -> bool:
    """A break after the match: punctuation, a hesitation pause, a doubling, or the end."""
    text, end = line.text, m.end()
    rest = text[end:]
    if rest[: len(m.group(0))].lower() == m.group(0).lower():
        return True  # doubled: 然后然后, like like
    stripped = rest.lstrip(" ")
    if not stripped:
        return next_start is None or next_start - line.segment.end >= HESITATION_S
    if stripped[0] in _BREAK_CHARS:
        return True
    following = next((i for i in range(end, len(text)) if text[i] not in _BREAK_CHARS), None)
    if following is None or not line.spoken[following] or not line.spoken[end - 1]:
        return False
    return line.starts[following] - line.ends[end - 1] >= HESITATION_S


def _break_before(line: SegmentTimeline, m: re.Match[str]) -> bool:
    """A break before the match: the segment's start, punctuation, or a hesitation pause."""
    text, start = line.text, m.start()
    before = text[:start].rstrip(" ")
    if not before or before[-1] in _BREAK_CHARS:
        return True
    prev = len(before) - 1
    if not line.spoken[prev] or not line.spoken[start]:
        return False
    return line.starts[start] - line.ends[prev] >= HESITATION_S
