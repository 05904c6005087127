"""Content signals (issue #5, item 5): STAR structure, coherence, job keywords, embedding.

Answers are real transcripts of the shared speech fixtures (faster-whisper, Whisper
base); the coherence contrast uses sentences written out in the test, which says so.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zhconv

from models.registry import weights_dir
from workers.analysis.content import content_signals, sentences, tokenize
from workers.analysis.embedding import embed, similarity
from workers.analysis.scoring import JobSpec
from workers.analysis.transcript import Segment, Transcript, Word

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "speech"
TRUTH = {c["file"]: c for c in json.loads((SPEECH / "transcripts.json").read_text())}
IT_JOB = JobSpec(
    title="信息工程师",
    description="负责医院信息系统运维",
    requirements={"skills": ["网络", "数据库"]},
    keywords=["自助挂号机", "故障报告", "网络", "数据库", "患者"],
)


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


def _assert_quotable(t: Transcript, item: dict[str, Any]) -> None:
    """A quote is verbatim in the transcript and its times lie in the segments it names."""
    assert item["quote"] in t.text
    first, last = item["segments"]
    assert t.segments[first].start <= item["start"] <= item["end"] <= t.segments[last].end
    joined = " ".join(s.text for s in t.segments[first : last + 1])
    assert item["quote"].replace(" ", "") in joined.replace(" ", "")


@pytest.mark.parametrize("name", ["en_01_nurse_complaint.wav", "zh_10_it_complaint.wav"])
def test_sentences_are_verbatim_and_timed(name: str) -> None:
    """Every sentence sits at its offset in the text, in order, within its segments' times."""
    t = real_transcript(name)
    sents = sentences(t)
    assert len(sents) >= 3
    for s in sents:
        assert t.text[s.offset : s.offset + len(s.text)] == s.text
        _assert_quotable(t, s.evidence())
    assert [s.offset for s in sents] == sorted(s.offset for s in sents)
    assert [s.start for s in sents] == sorted(s.start for s in sents)


def test_en_star_story_covers_all_four_parts() -> None:
    """en_05: last job (situation), had to (task), applied (action), learned (result)."""
    t = real_transcript("en_05_it_mistake.wav")
    star = content_signals(t)["star"]
    assert star["coverage"] == 1.0
    for part in ("situation", "task", "action", "result"):
        assert star[part]["present"]
        assert star[part]["cue"].lower() in star[part]["quote"].lower()
        _assert_quotable(t, star[part])
    assert star["situation"]["start"] < star["result"]["start"]


def test_zh_story_has_structure_and_a_why_answer_has_little() -> None:
    """zh_10 tells a story (有一次 ... 恢复了); zh_04 explains a motivation, no STAR story."""
    story = real_transcript("zh_10_it_complaint.wav")
    star = content_signals(story)["star"]
    assert star["situation"]["present"] and "有一次" in star["situation"]["quote"]
    assert star["action"]["present"] and star["result"]["present"]
    assert star["coverage"] >= 0.75
    for part in ("situation", "action", "result"):
        _assert_quotable(story, star[part])
    motive = content_signals(real_transcript("zh_04_resident_why.wav"))
    assert motive["star"]["coverage"] <= 0.25
    assert motive["connectives"]["count"] >= 1  # 因为, 同时
    assert motive["connectives"]["per_sentence"] > 0


def test_zh_keywords_found_exactly_with_quotes() -> None:
    """Job keywords said in zh_10 are exact matches quoted where they are said."""
    t = real_transcript("zh_10_it_complaint.wav")
    keywords = content_signals(t, IT_JOB)["keywords"]
    exact = {m["keyword"]: m for m in keywords["matched"] if m["how"] == "exact"}
    assert {"自助挂号机", "网络", "故障报告", "患者"} <= set(exact)
    assert "数据库" not in {m["keyword"] for m in keywords["matched"]}
    for keyword, match in exact.items():
        assert keyword in match["quote"]
        _assert_quotable(t, match)
    assert keywords["total"] == 5
    assert keywords["coverage"] == pytest.approx(len(keywords["matched"]) / 5, abs=0.01)
    assert keywords["vocabulary_overlap"] > 0


def test_zh_keywords_match_english_answers_by_meaning() -> None:
    """数据库 is meant by en_05 (database), not by en_01; 患者 by en_01 (patient)."""
    database = content_signals(real_transcript("en_05_it_mistake.wav"), IT_JOB)["keywords"]
    patient = content_signals(real_transcript("en_01_nurse_complaint.wav"), IT_JOB)["keywords"]
    by_db = {m["keyword"]: m for m in database["matched"]}
    by_patient = {m["keyword"]: m for m in patient["matched"]}
    assert by_db["数据库"]["how"] == "semantic" and "database" in by_db["数据库"]["quote"]
    assert "数据库" not in by_patient
    assert by_patient["患者"]["how"] == "semantic" and "patient" in by_patient["患者"]["quote"]
    assert "患者" not in by_db


def test_competency_and_job_similarity_are_reported() -> None:
    """The competency's best sentence is quoted; the job similarity is a cosine."""
    t = real_transcript("zh_10_it_complaint.wav")
    signals = content_signals(t, IT_JOB, competency="应变能力")
    assert signals["competency"]["name"] == "应变能力"
    _assert_quotable(t, signals["competency"])
    assert -1.0 <= signals["job_similarity"] <= 1.0
    assert signals["coherence"] is not None and -1.0 <= signals["coherence"] <= 1.0


def _written(sentence_texts: list[str]) -> Transcript:
    """Sentences and times written out in the test (unit level): one segment each."""
    segs = [Segment(3.0 * i, 3.0 * i + 2.5, text) for i, text in enumerate(sentence_texts)]
    return Transcript("zh", "".join(sentence_texts), segs, 3.0 * len(segs))


def test_coherence_is_higher_for_an_answer_that_stays_on_topic() -> None:
    """Written sentences: one story about a complaint beats sentences that jump topics."""
    on_topic = _written(
        [
            "有一位患者家属因为等待时间太长而投诉。",
            "我先耐心听家属把情况说完。",
            "然后我向家属解释了等待的原因。",
            "最后家属接受了解释，不再投诉。",
        ]
    )
    jumping = _written(
        [
            "有一位患者家属因为等待时间太长而投诉。",
            "今天的天气非常晴朗。",
            "我喜欢周末去爬山。",
            "数据库需要定期备份。",
        ]
    )
    assert content_signals(on_topic)["coherence"] > content_signals(jumping)["coherence"] + 0.1


def test_jieba_keeps_job_terms_whole() -> None:
    """A job term jieba does not know is split, until the job's vocabulary adds it."""
    text = "我在静脉用药配置中心工作"
    assert "静脉用药配置中心" not in tokenize(text, "zh", [])
    assert "静脉用药配置中心" in tokenize(text, "zh", ["静脉用药配置中心"])


def test_embedding_is_normalised_and_multilingual() -> None:
    """Unit vectors; a translation is closer than an unrelated sentence; blank is zero."""
    vectors = embed(["我和同事一起完成了抢救。", "I worked with my colleagues on the rescue.", ""])
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert not vectors[2].any()
    sims = similarity(
        ["我和同事一起完成了抢救。"],
        ["I worked with my colleagues on the rescue.", "The database needs a backup."],
    )
    assert sims[0, 0] > 0.5 > sims[0, 1] + 0.2
