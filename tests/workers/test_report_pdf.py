"""The score report's PDF (issue #5, item 6), zh and en, read back with pypdfium2.

The report is scored from real transcripts (faster-whisper, Whisper base) of one zh and
one en fixture clip; the PDF must carry its dimension names, quotes and notice as text.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
import zhconv

from models.registry import weights_dir
from workers.analysis.content import content_signals
from workers.analysis.report_pdf import render_pdf
from workers.analysis.scoring import (
    ADVISORY_NOTE,
    AnswerInput,
    DimensionSpec,
    JobSpec,
    RubricSpec,
    score_report,
)
from workers.analysis.speech import speech_signals
from workers.analysis.transcript import Segment, Transcript, Word

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "speech"
TRUTH = {c["file"]: c for c in json.loads((SPEECH / "transcripts.json").read_text())}
DIMENSIONS = [
    DimensionSpec("communication", "沟通能力", 1, [RubricSpec(5, "表达清楚，耐心解释")]),
    DimensionSpec("teamwork", "团队协作", 1, [RubricSpec(5, "与同事配合，共同完成任务")]),
    DimensionSpec("logic", "语言逻辑", 1, [RubricSpec(5, "回答条理清楚，有情况、行动和结果")]),
]
JOB = JobSpec("药师", "负责审方与调配", {"skills": ["审方", "调配"]}, ["审方", "团队合作"])


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


@cache
def report() -> dict[str, Any]:
    answers = []
    for i, (name, competency) in enumerate(
        [("zh_06_pharmacist_teamwork.wav", "团队协作"), ("en_03_pharmacist_mistake.wav", None)]
    ):
        t = real_transcript(name)
        answers.append(
            AnswerInput(
                i + 1,
                "question",
                competency,
                t,
                speech_signals(t),
                content_signals(t, JOB, competency),
            )
        )
    return score_report(DIMENSIONS, JOB, answers, {"asr": "whisper-base"})


def _text(pdf_bytes: bytes) -> str:
    """All the PDF's text, whitespace removed (line breaks fall anywhere in a quote)."""
    pdf = pdfium.PdfDocument(pdf_bytes)
    try:
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()
    return re.sub(r"\s+", "", text)


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pdf_carries_names_quotes_versions_and_the_notice(lang: str) -> None:
    """Every dimension name, a zh and an en quote, the model versions and the notice."""
    rep = report()
    data = render_pdf(rep, lang, "C-0007", "药师")
    assert data.startswith(b"%PDF-")
    text = _text(data)
    for dim in rep["dimensions"]:
        assert _flat(dim["name"]) in text
        assert f"{dim['score']:.1f}/10" in text
    quotes = [e["quote"] for d in rep["dimensions"] for e in d["evidence"]]
    zh_quote = next(q for q in quotes if re.search(r"[\u4e00-\u9fff]", q))
    en_quote = next(q for q in quotes if re.fullmatch(r"[ -~]+", q))
    assert _flat(zh_quote) in text and _flat(en_quote) in text
    assert _flat(rep["model_versions"]["embedding"]) in text
    assert _flat(ADVISORY_NOTE[lang]) in text
    assert "C-0007" in text and "药师" in text
    assert ("置信度" if lang == "zh" else "Confidence") in text


@pytest.mark.parametrize(
    ("lang", "review"), [("zh", "如何申请人工复核"), ("en", "Howtoaskforahumanreview")]
)
def test_pdf_can_carry_the_candidate_explanation(lang: str, review: str) -> None:
    """With the explanation page appended, the way to a human review is in the PDF."""
    plain = render_pdf(report(), lang, "C-0007", "药师")
    explained = render_pdf(report(), lang, "C-0007", "药师", with_explanation=True)
    assert review not in _text(plain)
    assert review in _text(explained)
    assert len(pdfium.PdfDocument(explained)) > len(pdfium.PdfDocument(plain))
