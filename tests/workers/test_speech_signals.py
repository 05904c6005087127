"""Speech signals (issue #5, item 5): rate, pauses and fillers on real transcripts.

Transcripts come from a real faster-whisper run (Whisper base, int8, VAD) on the
shared speech fixtures; the filler rules are also checked on transcripts whose words
are written out here, which says so in each test.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import zhconv

from models.registry import weights_dir
from workers.analysis.speech import count_units, find_fillers, speech_signals
from workers.analysis.transcript import Segment, Transcript, Word

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "speech"
TRUTH = {c["file"]: c for c in json.loads((SPEECH / "transcripts.json").read_text())}


@cache
def _whisper() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from faster_whisper import WhisperModel

    return WhisperModel(str(weights_dir("whisper-base")), device="cpu", compute_type="int8")


@cache
def real_transcript(name: str) -> Transcript:
    """Whisper base on a fixture clip, language given, zh in simplified characters."""
    lang = TRUTH[name]["lang"]
    segments, info = _whisper().transcribe(
        str(SPEECH / name), language=lang, word_timestamps=True, vad_filter=True
    )

    def simple(text: str) -> str:
        return zhconv.convert(text, "zh-cn") if lang == "zh" else text

    segs = [
        Segment(
            s.start,
            s.end,
            simple(s.text).strip(),
            [Word(w.start, w.end, simple(w.word)) for w in s.words or []],
        )
        for s in segments
    ]
    text = ("" if lang == "zh" else " ").join(s.text for s in segs)
    return Transcript(lang, text, segs, info.duration, "whisper-base/faster-whisper-int8-cpu")


def _speech_time(name: str) -> float:
    return sum(end - start for start, end in TRUTH[name]["speech_spans"])


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("zh_01_nurse_complaint.wav", 150, 400), ("en_01_nurse_complaint.wav", 100, 260)],
)
def test_rate_is_plausible_and_agrees_with_the_reference(name: str, low: int, high: int) -> None:
    """Rate over speech time: in a human range, within 15 % of reference length / speech spans."""
    signals = speech_signals(real_transcript(name))
    truth = TRUTH[name]
    expected = count_units(truth["text"], truth["lang"]) / (_speech_time(name) / 60)
    assert signals["unit"] == ("chars" if truth["lang"] == "zh" else "words")
    assert low <= signals["rate_per_min"] <= high
    assert signals["rate_per_min"] == pytest.approx(expected, rel=0.15)
    assert signals["speech_s"] == pytest.approx(_speech_time(name), abs=1.5)
    assert signals["pauses"]["long_count"] == 0


def test_long_pauses_lie_where_the_clip_is_silent() -> None:
    """The 6 s and 8 s silences of the VAD clip are found as long pauses, at their place."""
    name = "vad_zh_long_pauses.wav"
    signals = speech_signals(real_transcript(name))
    spans = TRUTH[name]["speech_spans"]
    true_gaps = [(a[1], b[0]) for a, b in zip(spans, spans[1:], strict=False)]
    long = [p for p in signals["pauses"]["items"] if p["duration_s"] > 2.0]
    assert signals["pauses"]["long_count"] == len(true_gaps) == len(long) == 2
    for (start, end), pause in zip(true_gaps, long, strict=True):
        overlap = min(end, pause["end"]) - max(start, pause["start"])
        assert overlap >= 0.75 * (end - start)
    assert signals["pauses"]["longest_s"] == pytest.approx(8.0, abs=1.0)
    true_share = 1 - _speech_time(name) / TRUTH[name]["duration_s"]
    assert signals["silence_share"] == pytest.approx(true_share, abs=0.08)


def test_like_in_a_real_answer_is_not_a_filler() -> None:
    """en_06 says "I would like to grow my skills": a verb, no filler counted."""
    t = real_transcript("en_06_nurse_why.wav")
    assert "like" in t.text.lower()
    signals = speech_signals(t)
    assert signals["fillers"]["count"] == 0
    assert signals["fillers"]["per_min"] == 0.0


def _written(language: str, words: list[tuple[float, float, str]]) -> Transcript:
    """A transcript whose words (and times) are written out in the test: unit level."""
    text = "".join(w for _, _, w in words).strip()
    segment = Segment(words[0][0], words[-1][1], text, [Word(*w) for w in words])
    return Transcript(language, segment.text, [segment], words[-1][1] + 0.5)


def test_zh_fillers_count_only_where_they_stand_apart() -> None:
    """Written words: 然后， 嗯 那个 are fillers; 然后 leading straight on into 我们 is not."""
    t = _written(
        "zh",
        [
            (0.0, 0.4, "然后，"),
            (0.9, 1.2, "嗯，"),
            (1.5, 1.8, "那个"),
            (2.4, 2.6, "我"),
            (2.6, 3.0, "联系了"),
            (3.0, 3.4, "护士长，"),
            (3.6, 3.9, "然后"),
            (3.9, 4.2, "我们"),
            (4.2, 4.8, "一起处理了。"),
        ],
    )
    fillers = find_fillers(t)
    assert [(f["word"], f["start"], f["end"]) for f in fillers] == [
        ("然后", 0.0, 0.4),
        ("嗯", 0.9, 1.2),
        ("那个", 1.5, 1.8),
    ]
    for f in fillers:
        assert t.text[f["offset"] : f["offset"] + len(f["text"])] == f["text"]
    signals = speech_signals(t)
    assert signals["fillers"]["by_word"] == {"然后": 1, "嗯": 1, "那个": 1}
    assert signals["fillers"]["per_min"] == pytest.approx(3 / (signals["speech_s"] / 60), rel=0.01)


def test_zh_jiushi_is_a_filler_only_before_a_hesitation() -> None:
    """Written words: 就是 then 0.6 s of silence is a filler; 就是 run straight on is not."""
    hesitant = _written("zh", [(0.0, 0.3, "就是"), (0.9, 1.3, "这样"), (1.3, 1.6, "做的。")])
    fluent = _written("zh", [(0.0, 0.3, "就是"), (0.32, 0.7, "这样"), (0.7, 1.0, "做的。")])
    assert [f["word"] for f in find_fillers(hesitant)] == ["就是"]
    assert find_fillers(fluent) == []


def test_en_fillers_and_the_words_that_look_like_them() -> None:
    """Written words: um, uh, a "like" set off by commas, "you know." count; "would like",
    "I mean it" and the ER do not."""
    t = _written(
        "en",
        [
            (0.0, 0.2, " So,"),
            (0.5, 0.8, " um,"),
            (1.0, 1.1, " I"),
            (1.1, 1.3, " was,"),
            (1.5, 1.7, " like,"),
            (1.9, 2.4, " nervous,"),
            (2.6, 2.8, " you"),
            (2.8, 3.0, " know."),
            (3.5, 3.6, " I"),
            (3.6, 3.8, " would"),
            (3.8, 4.0, " like"),
            (4.0, 4.1, " to"),
            (4.1, 4.5, " help."),
            (4.9, 5.0, " I"),
            (5.0, 5.2, " mean"),
            (5.2, 5.4, " it."),
            (5.9, 6.0, " In"),
            (6.0, 6.1, " the"),
            (6.1, 6.4, " ER,"),
            (6.8, 7.0, " uh,"),
            (7.2, 7.5, " fine."),
        ],
    )
    fillers = find_fillers(t)
    assert [(f["word"], f["start"], f["end"]) for f in fillers] == [
        ("um", 0.5, 0.8),
        ("like", 1.5, 1.7),
        ("you know", 2.6, 3.0),
        ("uh", 6.8, 7.0),
    ]
    assert speech_signals(t)["fillers"]["count"] == 4


def test_an_empty_answer_has_no_rate() -> None:
    """No words: no rate, no pauses, everything silent."""
    t = Transcript("zh", "", [], 5.0)
    signals = speech_signals(t)
    assert signals["rate_per_min"] is None
    assert signals["speech_s"] == 0.0
    assert signals["silence_share"] == 1.0
    assert signals["pauses"]["count"] == 0
