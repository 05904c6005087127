"""The explained score report (issue #5, item 6) on real transcripts of the fixtures.

Answers are transcribed by faster-whisper (Whisper base) from the shared speech clips,
a clip cut to its first seconds, and digital silence; the face summaries are inputs
written out in the test (the face pipeline is tested on its own).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zhconv

from models.registry import weights_dir
from workers.analysis.content import content_signals
from workers.analysis.scoring import (
    AnswerInput,
    DimensionSpec,
    JobSpec,
    RubricSpec,
    explanation,
    score_report,
)
from workers.analysis.speech import speech_signals
from workers.analysis.transcript import Segment, Transcript, Word

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "speech"
TRUTH = {c["file"]: c for c in json.loads((SPEECH / "transcripts.json").read_text())}
SR = 16000

R = RubricSpec
DIMENSIONS = [
    DimensionSpec(
        "communication",
        "沟通能力",
        3,
        [
            R(5, "能耐心倾听患者和家属的诉求，清楚地解释并取得理解"),
            R(3, "表达基本清楚，但解释不够具体"),
            R(1, "表达不清，不能回应对方的关切"),
        ],
    ),
    DimensionSpec(
        "teamwork",
        "团队协作",
        3,
        [
            R(5, "主动与医生、护士等同事配合，分工明确，共同完成任务"),
            R(3, "能与同事合作完成工作，但主动沟通较少"),
            R(1, "很少提到与他人合作，倾向于独自完成工作"),
        ],
    ),
    DimensionSpec(
        "knowledge",
        "专业知识",
        2,
        [R(5, "熟练掌握本岗位的专业知识和操作规范"), R(1, "专业知识欠缺")],
    ),
    DimensionSpec(
        "adaptability",
        "应变能力",
        1,
        [
            R(5, "面对突发情况能冷静判断，迅速采取措施解决问题"),
            R(1, "遇到意外情况不知所措"),
        ],
    ),
    DimensionSpec(
        "logic",
        "语言逻辑",
        1,
        [R(5, "回答条理清楚，先说明情况，再讲行动和结果"), R(1, "回答杂乱，没有重点")],
    ),
]
JOB = JobSpec(
    title="信息工程师",
    description="负责医院信息系统和自助设备的运维，与临床科室协作",
    requirements={"skills": ["网络", "数据库", "系统升级"]},
    keywords=["信息系统", "网络", "故障", "团队合作", "患者"],
)
COMPETENCY = {"teamwork": "团队协作", "complaint": "应变能力", "mistake": "应变能力", "why": None}
VERSIONS = {"asr": "whisper-base/faster-whisper-int8-cpu"}


@cache
def _whisper() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from faster_whisper import WhisperModel

    return WhisperModel(str(weights_dir("whisper-base")), device="cpu", compute_type="int8")


def _transcribe(audio: str | np.ndarray, lang: str) -> Transcript:
    """Whisper base with VAD, language given, zh in simplified characters."""
    segments, info = _whisper().transcribe(
        audio, language=lang, word_timestamps=True, vad_filter=True
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
    return Transcript(lang, text, segs, info.duration, VERSIONS["asr"])


@cache
def real_transcript(name: str, seconds: float | None = None) -> Transcript:
    if seconds is None:
        return _transcribe(str(SPEECH / name), TRUTH[name]["lang"])
    from faster_whisper import decode_audio

    audio = decode_audio(str(SPEECH / name), sampling_rate=SR)
    return _transcribe(audio[: int(seconds * SR)], TRUTH[name]["lang"])


@cache
def silence() -> Transcript:
    return _transcribe(np.zeros(4 * SR, dtype=np.float32), "zh")


def answer(
    answer_id: int, t: Transcript, competency: str | None, face: dict[str, Any] | None = None
) -> AnswerInput:
    return AnswerInput(
        answer_id=answer_id,
        question="question",
        competency=competency,
        transcript=t,
        speech=speech_signals(t),
        content=content_signals(t, JOB, competency),
        face=face,
    )


def clip_answer(answer_id: int, name: str, face: dict[str, Any] | None = None) -> AnswerInput:
    return answer(answer_id, real_transcript(name), COMPETENCY[TRUTH[name]["question"]], face=face)


@cache
def mixed_answers() -> tuple[AnswerInput, ...]:
    names = [
        "zh_09_it_teamwork.wav",
        "zh_10_it_complaint.wav",
        "en_05_it_mistake.wav",
        "en_08_it_teamwork.wav",
    ]
    return tuple(clip_answer(i + 1, name) for i, name in enumerate(names))


@cache
def mixed_report() -> dict[str, Any]:
    return score_report(DIMENSIONS, JOB, list(mixed_answers()), VERSIONS)


def _quotes(report: dict[str, Any]) -> list[dict[str, Any]]:
    items = [e for d in report["dimensions"] for e in d["evidence"]]
    items += [
        line | {"reason": "rubric"}
        for d in report["dimensions"]
        for line in d["rubric"]["lines"]
        if line.get("quote")
    ]
    return items


def test_every_quote_is_in_its_answers_transcript_at_its_time() -> None:
    """Evidence and rubric quotes: verbatim in that answer's text, times inside its segments."""
    report = mixed_report()
    by_id = {a.answer_id: a.transcript for a in mixed_answers()}
    quotes = _quotes(report)
    assert len(quotes) >= 10
    for item in quotes:
        t = by_id[item["answer_id"]]
        assert item["quote"] in t.text
        first, last = item["segments"]
        assert t.segments[first].start <= item["start"] <= item["end"] <= t.segments[last].end
    for dim in report["dimensions"]:
        assert dim["evidence"], dim["name"]
        assert dim["rubric"]["lines"] and all(
            line["similarity"] is not None for line in dim["rubric"]["lines"]
        )


def test_weights_overall_and_summary_add_up() -> None:
    """Weight shares sum to 1; overall is their weighted mean; the summary lists each score."""
    report = mixed_report()
    dims = report["dimensions"]
    assert sum(d["weight_share"] for d in dims) == pytest.approx(1.0, abs=1e-3)
    assert [d["weight_share"] for d in dims] == pytest.approx([0.3, 0.3, 0.2, 0.1, 0.1], abs=1e-3)
    expected = sum(d["score"] * d["weight_share"] for d in dims)
    assert report["overall"] == pytest.approx(expected, abs=0.051)
    assert report["summary"] == ", ".join(f"{d['name']} {d['score']:.1f}" for d in dims)
    assert re.fullmatch(
        r"沟通能力 \d+\.\d, 团队协作 \d+\.\d, .*语言逻辑 \d+\.\d", report["summary"]
    )
    assert report["advisory"] is True
    assert "person" in report["advisory_note"]["en"] and "人" in report["advisory_note"]["zh"]
    assert {"asr", "embedding", "scoring"} <= set(report["model_versions"])
    assert json.loads(json.dumps(report, ensure_ascii=False)) == report  # stored as JSON


def test_each_score_is_the_documented_function_of_its_components() -> None:
    """score = 10·(0.5 + (Σ wᵢ·vᵢ / Σ wᵢ - 0.5)·evidence factor), from the listed components."""
    for dim in mixed_report()["dimensions"]:
        comps = dim["components"]
        assert comps and all(0.0 <= c["value"] <= 1.0 for c in comps)
        raw = sum(c["weight"] * c["value"] for c in comps) / sum(c["weight"] for c in comps)
        assert dim["raw"] == pytest.approx(raw, abs=0.002)
        expected = 10 * (0.5 + (raw - 0.5) * dim["evidence_factor"])
        assert dim["score"] == pytest.approx(expected, abs=0.06)
        assert 0.0 < dim["confidence"] <= 0.9
    kinds = {d["name"]: d["kind"] for d in mixed_report()["dimensions"]}
    assert kinds == {
        "沟通能力": "communication",
        "团队协作": "teamwork",
        "专业知识": "knowledge",
        "应变能力": "adaptability",
        "语言逻辑": "logic",
    }


def test_teamwork_is_judged_on_the_teamwork_answers() -> None:
    """A dimension named by an answer's competency is judged on those answers only."""
    team = next(d for d in mixed_report()["dimensions"] if d["name"] == "团队协作")
    assert team["answers"] == [1, 4]
    assert {e["answer_id"] for e in team["evidence"]} <= {1, 4}


@pytest.mark.parametrize(
    "names",
    [
        ("zh_09_it_teamwork.wav", "zh_10_it_complaint.wav"),
        ("en_05_it_mistake.wav", "en_08_it_teamwork.wav"),
    ],
)
def test_zh_and_en_interviews_are_both_scored(names: tuple[str, str]) -> None:
    """An all-zh and an all-en interview each get every dimension scored, with evidence."""
    answers = [clip_answer(i + 1, name) for i, name in enumerate(names)]
    report = score_report(DIMENSIONS, JOB, answers, VERSIONS)
    for dim in report["dimensions"]:
        assert dim["score"] is not None and 0.0 <= dim["score"] <= 10.0
        assert dim["evidence"]
        assert dim["confidence"] >= 0.4
    assert report["overall"] is not None


def test_english_answer_matches_chinese_rubric_more_than_an_unrelated_one() -> None:
    """Teamwork rubric lines in Chinese: the en teamwork answer is closer than en 'why'."""
    team = [d for d in DIMENSIONS if d.id == "teamwork"]

    def best(name: str) -> float:
        report = score_report(team, JOB, [answer(1, real_transcript(name), None)], VERSIONS)
        return float(report["dimensions"][0]["rubric"]["lines"][0]["similarity"])

    assert best("en_08_it_teamwork.wav") > best("en_06_nurse_why.wav") + 0.05


def test_a_short_answer_gets_low_confidence_and_no_extreme_score() -> None:
    """The first 2.5 s of a clip: scored near the middle, with low confidence."""
    t = real_transcript("zh_01_nurse_complaint.wav", 2.5)
    assert 0 < len(t.text) <= 15
    report = score_report(DIMENSIONS, JOB, [answer(1, t, "沟通能力")], VERSIONS)
    for dim in report["dimensions"]:
        assert dim["confidence"] <= 0.2
        assert 4.0 <= dim["score"] <= 6.0
        assert "little_speech" in {n["code"] for n in dim["notes"]}
    assert report["overall_confidence"] <= 0.2


def test_no_speech_is_not_scored() -> None:
    """Digital silence: no transcript, so no score and zero confidence anywhere."""
    t = silence()
    assert t.text == ""
    report = score_report(DIMENSIONS, JOB, [answer(1, t, None)], VERSIONS)
    assert report["overall"] is None
    assert report["overall_confidence"] == 0.0
    for dim in report["dimensions"]:
        assert dim["score"] is None and dim["confidence"] == 0.0 and dim["evidence"] == []
    assert report["summary"].startswith("沟通能力 n/a")


def test_face_signals_change_confidence_and_notes_never_the_score() -> None:
    """A face summary with an identity switch lowers confidence; every score stays the same."""
    name = "zh_10_it_complaint.wav"
    switched = {"one_face_share": 0.95, "identity_switches": [7.5], "looking_share": 0.2}
    steady = {"one_face_share": 1.0, "identity_switches": [], "looking_share": 0.1}
    plain = score_report(DIMENSIONS, JOB, [clip_answer(1, name)], VERSIONS)
    doubted = score_report(DIMENSIONS, JOB, [clip_answer(1, name, face=switched)], VERSIONS)
    calm = score_report(DIMENSIONS, JOB, [clip_answer(1, name, face=steady)], VERSIONS)
    for a, b, c in zip(plain["dimensions"], doubted["dimensions"], calm["dimensions"], strict=True):
        assert a["score"] == b["score"] == c["score"]
        assert b["confidence"] < a["confidence"] == c["confidence"]
        assert "face_doubt" in {n["code"] for n in b["notes"]}
        assert "7.5" in next(n["en"] for n in b["notes"] if n["code"] == "face_doubt")
    assert doubted["face"]["used_in_score"] is False
    assert plain["face"] is None


@pytest.mark.parametrize(("lang", "review"), [("zh", "人工复核"), ("en", "human review")])
def test_explanation_names_each_dimension_and_the_way_to_a_person(lang: str, review: str) -> None:
    """PIPL Art. 24: what was measured and not, each score's parts, how to ask for review."""
    report = mixed_report()
    text = explanation(report, lang)
    for dim in report["dimensions"]:
        assert f"[{dim['name']}] {dim['score']:.1f}/10" in text
        assert dim["evidence"][0]["quote"] in text
    assert review in text
    assert ("第二十四条" if lang == "zh" else "PIPL Art. 24") in text
    assert report["model_versions"]["embedding"] in text
