"""The explained score report (issue #5, item 6): per dimension a score, its confidence
and its evidence. AI scores advise; a person decides (PIPL Art. 24, ARCHITECTURE).

Inputs are plain dataclasses (no database): the pipeline fills them from the records.
Each answer brings its `Transcript` and the dicts of `speech.speech_signals` and
`content.content_signals` (computed with the same job).

How a dimension is scored (each step is in the report, so a person can redo it):

1. The dimension's **kind** comes from its id or name (`KINDS`: 沟通能力 communication,
   团队协作 teamwork, 专业知识 knowledge, 应变能力 adaptability, 语言逻辑 logic); other
   dimensions are scored on their rubric alone.
2. Its **answers** are those whose question probes it (`AnswerInput.competency` names
   the dimension or its kind); when no question does, all answers.
3. **Components**, each a documented value in 0..1 (see `_components`):
   - every kind: `rubric` = ½·relevance + ½·(band-1)/4, where each rubric line is
     compared with every sentence of the answers in the multilingual embedding,
     relevance maps the best similarity from 0.15..0.45 to 0..1, and band is the
     similarity-weighted band (1-5) of the lines within 0.05 of the best;
   - communication: speaking rate in a comfortable range (`RATE_RANGE`), pauses
     (share of silence), fillers per minute, sentence length;
   - logic: STAR coverage, connectives per sentence, coherence;
   - knowledge: job keywords said or meant, job vocabulary used, job similarity;
   - teamwork, adaptability: cue words (`CUES`) said in the answers.
   Speech components are per answer, averaged weighted by speech time.
4. **Raw** = the weighted mean of the components present (`WEIGHTS`).
5. **Evidence** e = min(1, speech s / `FULL_SPEECH_S`) · min(1, sentences / 3).
   Score = 10·(0.5 + (raw - 0.5)·e), one decimal: with little evidence the score is
   pulled to the middle of the scale, so a short answer cannot get an extreme score.
   No speech at all: score None.
6. **Confidence** = min(0.9, e·(0.4 + 0.3·relevance + 0.3·agreement)), agreement = 1 - the
   spread (std) of the components; lowered by a quarter when face signals say someone
   else or nobody was on camera for long (see below). 0.9 at most: never certain.

Face signals never enter a score: presence and gaze measure the camera set-up and the
person's habits, not the competencies asked about, and a face signal must never decide
alone (issue #5, item 4; EU AI Act Art. 5(1)(f) for expression). They only lower the
confidence and add a note when they put in doubt *whose* speech was scored.

Report shape (`score_report`), every time in seconds in the answer's recording:

    {"version": "enclave-score/1", "advisory": True, "advisory_note": {"zh", "en"},
     "overall": float | None, "overall_confidence": float, "summary": "沟通能力 8.5, ...",
     "dimensions": [{
        "id", "name", "kind", "weight", "weight_share" (weights normalised to sum 1),
        "score": float | None (0-10, one decimal), "raw": float | None (0-1),
        "confidence": float (0-1), "evidence_factor": float (0-1),
        "answers": [answer_id, ...] (the answers it was judged on),
        "components": [{"name", "value" (0-1), "weight", "inputs": {...}}],
        "evidence": [{"answer_id", "quote", "start", "end", "segments": [first, last],
                      "reason"}],       # quote is a substring of that answer's text
        "rubric": {"band": float | None, "relevance": float | None,
                   "lines": [{"score" (band 1-5), "text", "similarity", "supports",
                              "answer_id", "quote", "start", "end", "segments"}]},
        "signals": {...},             # the measured values the components used
        "notes": [str, ...]}],
     "answers": [{"answer_id", "question", "competency", "language", "speech_s",
                  "sentences"}],
     "face": {"used_in_score": False, "answers": {answer_id: {...}}, "notes": [...]}
             | None,
     "model_versions": {...}, "method": str}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.analysis import embedding
from workers.analysis.content import Sentence, sentences
from workers.analysis.speech import count_units, is_zh
from workers.analysis.transcript import Transcript

VERSION = "enclave-score/1"
FULL_SPEECH_S = 15.0
"""Speech time from which a dimension has full evidence: one complete answer (8-25 s)."""
FULL_SENTENCES = 3
MAX_CONFIDENCE = 0.9
BAND_MARGIN = 0.05
RELEVANCE_RANGE = (0.15, 0.45)
"""Best rubric similarity mapped to relevance 0..1: unrelated answers score < 0.2 with a
rubric line in this embedding, answers on the topic 0.3-0.6 (measured on the fixtures)."""
RATE_RANGE = {"zh": (160.0, 320.0), "en": (110.0, 200.0)}
"""Comfortable speaking rate (zh characters, en words per minute); 1 inside, 0 at half
the lower or 1.5 times the upper bound."""
SENTENCE_RANGE = {"zh": (6, 40), "en": (6, 35)}
"""Characters (zh) or words (en) per sentence a listener follows easily."""
FACE_CONFIDENCE_FACTOR = 0.75
METHOD = (
    "Each dimension: a weighted mean of documented components (0-1) from the transcript, "
    "speech and content signals and the rubric's similarity to the answers; scaled to 0-10 "
    "and pulled towards 5 when there is little speech. Face signals never enter a score. "
    "See workers/analysis/scoring.py."
)

ADVISORY_NOTE = {
    "zh": "本报告由本机AI生成，仅供参考。任何录用或状态变更都由人作出决定；"
    "HR可以修改分数，但必须说明理由。候选人可以要求人工复核和解释。",
    "en": "This report is generated by the on-site AI and only advises. A person makes "
    "every hiring or status decision; HR may override a score with a reason. The "
    "candidate may ask for a human review and for an explanation.",
}

KINDS: dict[str, tuple[str, ...]] = {
    "communication": ("沟通", "表达", "communicat"),
    "teamwork": ("团队", "协作", "合作", "teamwork", "collaborat"),
    "knowledge": ("专业", "知识", "knowledge", "expertise", "technical"),
    "adaptability": ("应变", "解决问题", "问题解决", "adapt", "problem", "resilien"),
    "logic": ("逻辑", "条理", "logic", "reasoning", "structure"),
}
WEIGHTS: dict[str, dict[str, float]] = {
    "communication": {
        "rubric": 0.4,
        "rate": 0.15,
        "pauses": 0.15,
        "fillers": 0.15,
        "sentence_length": 0.15,
    },
    "logic": {"rubric": 0.3, "star": 0.3, "connectives": 0.2, "coherence": 0.2},
    "knowledge": {"rubric": 0.4, "keywords": 0.3, "vocabulary": 0.15, "job_similarity": 0.15},
    "teamwork": {"rubric": 0.6, "cues": 0.4},
    "adaptability": {"rubric": 0.6, "cues": 0.4},
    "rubric": {"rubric": 1.0},
}
CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "teamwork": {
        "zh": (
            "团队",
            "同事",
            "配合",
            "合作",
            "协作",
            "一起",
            "互相",
            "大家",
            "我们",
            "分工",
            "沟通",
        ),
        "en": (
            "team",
            "colleague",
            "together",
            "we ",
            "collaborat",
            "coordinat",
            "huddle",
            "helped each other",
            "worked closely",
            "everyone",
        ),
    },
    "adaptability": {
        "zh": (
            "突发",
            "紧急",
            "及时",
            "马上",
            "立即",
            "调整",
            "处理",
            "解决",
            "应对",
            "冷静",
            "故障",
            "问题",
            "投诉",
            "方案",
            "恢复",
        ),
        "en": (
            "urgent",
            "immediately",
            "calm",
            "adjust",
            "solv",
            "handl",
            "quickly",
            "problem",
            "emergency",
            "fix",
            "pressure",
            "plan",
            "instead",
        ),
    },
}
FULL_CUES = 3


@dataclass(frozen=True)
class RubricSpec:
    score: int
    """The band this line describes, 1 (weak) to 5 (strong)."""
    text: str


@dataclass(frozen=True)
class DimensionSpec:
    id: str
    name: str
    weight: float
    rubric: list[RubricSpec] = field(default_factory=list)


@dataclass(frozen=True)
class JobSpec:
    title: str
    description: str = ""
    requirements: dict[str, Any] = field(default_factory=dict)
    keywords: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnswerInput:
    answer_id: int | str
    question: str
    competency: str | None
    transcript: Transcript
    speech: dict[str, Any]
    content: dict[str, Any]
    face: dict[str, Any] | None = None
    """`FaceTimeline.summary()` of this answer, only with the candidate's face consent."""
    # `speech["speech_s"]` decides whether the answer counts at all: an answer without
    # speech time is never evidence (its dimension is then not scored).


@dataclass
class _Prepared:
    inp: AnswerInput
    sents: list[Sentence]
    vectors: np.ndarray
    speech_s: float
    lang: str

    @property
    def quotable(self) -> list[int]:
        return [i for i, s in enumerate(self.sents) if s.offset >= 0]


@dataclass
class _Component:
    name: str
    value: float
    inputs: dict[str, Any]


def dimension_kind(label: str) -> str:
    """communication, teamwork, knowledge, adaptability, logic, or rubric (other)."""
    text = label.lower()
    for kind, marks in KINDS.items():
        if any(mark in text for mark in marks):
            return kind
    return "rubric"


def _kind(dim: DimensionSpec) -> str:
    kind = dimension_kind(dim.name)
    return kind if kind != "rubric" else dimension_kind(dim.id)


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def _ramp(x: float, lo: float, hi: float) -> float:
    return _clip((x - lo) / (hi - lo))


def score_report(
    dimensions: Sequence[DimensionSpec],
    job: JobSpec,
    answers: Sequence[AnswerInput],
    model_versions: dict[str, str],
) -> dict[str, Any]:
    """Score every dimension from the answers' evidence (shape: module docstring)."""
    prepared = _prepare(answers)
    lines = [line.text for dim in dimensions for line in dim.rubric]
    line_vectors = embedding.embed_reference(lines)
    total_weight = sum(max(0.0, d.weight) for d in dimensions)
    face = _face_summary(answers)
    dims, k = [], 0
    for dim in dimensions:
        vectors = line_vectors[k : k + len(dim.rubric)]
        k += len(dim.rubric)
        dims.append(_score_dimension(dim, vectors, prepared, job, face))
        share = max(0.0, dim.weight) / total_weight if total_weight > 0 else 1 / len(dimensions)
        dims[-1]["weight_share"] = round(share, 4)
    scored = [d for d in dims if d["score"] is not None]
    weight = sum(d["weight_share"] for d in scored)
    overall = sum(d["score"] * d["weight_share"] for d in scored) / weight if weight else None
    confidence = sum(d["confidence"] * d["weight_share"] for d in dims)
    return {
        "version": VERSION,
        "advisory": True,
        "advisory_note": ADVISORY_NOTE,
        "overall": None if overall is None else round(overall, 1),
        "overall_confidence": round(confidence, 2),
        "summary": ", ".join(
            f"{d['name']} {'n/a' if d['score'] is None else format(d['score'], '.1f')}"
            for d in dims
        ),
        "dimensions": dims,
        "answers": [
            {
                "answer_id": p.inp.answer_id,
                "question": p.inp.question,
                "competency": p.inp.competency,
                "language": p.inp.transcript.language,
                "speech_s": round(p.speech_s, 2),
                "sentences": len(p.sents),
            }
            for p in prepared
        ],
        "face": face,
        "model_versions": _versions(model_versions, answers),
        "method": METHOD,
    }


def _versions(given: dict[str, str], answers: Sequence[AnswerInput]) -> dict[str, str]:
    out = dict(given)
    asr = sorted({a.transcript.model for a in answers if a.transcript.model})
    if asr and "asr" not in out:
        out["asr"] = ", ".join(asr)
    out.setdefault("embedding", embedding.model_version())
    out["scoring"] = VERSION
    return out


def _prepare(answers: Sequence[AnswerInput]) -> list[_Prepared]:
    out = []
    for a in answers:
        sents = sentences(a.transcript)
        speech_s = float(a.speech.get("speech_s") or 0.0)
        lang = "zh" if is_zh(a.transcript.language) else "en"
        out.append(_Prepared(a, sents, embedding.embed([s.text for s in sents]), speech_s, lang))
    return out


def _own_answers(dim: DimensionSpec, kind: str, prepared: list[_Prepared]) -> list[_Prepared]:
    """The answers whose question probes this dimension; all answers if none does."""

    def probes(p: _Prepared) -> bool:
        c = (p.inp.competency or "").strip()
        if not c:
            return False
        return c in (dim.name, dim.id) or (kind != "rubric" and dimension_kind(c) == kind)

    own = [p for p in prepared if probes(p)]
    return own or list(prepared)


def _score_dimension(
    dim: DimensionSpec,
    line_vectors: np.ndarray,
    prepared: list[_Prepared],
    job: JobSpec,
    face: dict[str, Any] | None,
) -> dict[str, Any]:
    kind = _kind(dim)
    scope = [p for p in _own_answers(dim, kind, prepared) if p.speech_s > 0 and p.quotable]
    out: dict[str, Any] = {
        "id": dim.id,
        "name": dim.name,
        "kind": kind,
        "weight": dim.weight,
        "answers": [p.inp.answer_id for p in scope],
    }
    rubric = _rubric(dim, line_vectors, scope)
    if not scope:
        return out | _no_evidence(rubric)
    comps = _components(kind, scope, rubric, job)
    weights = WEIGHTS[kind]
    used = [c for c in comps if c.name in weights]
    if not used:  # a dimension of no known kind and without rubric lines
        return out | _no_evidence(rubric, "no_method")
    raw = sum(weights[c.name] * c.value for c in used) / sum(weights[c.name] for c in used)
    evidence = _evidence_factor(scope)
    confidence = _confidence(evidence, rubric, used)
    notes = _notes(evidence, rubric)
    doubts = [face["doubts"][k] for k in map(str, out["answers"]) if face and k in face["doubts"]]
    if doubts:
        confidence *= FACE_CONFIDENCE_FACTOR
        notes.append(_note("face_doubt", "; ".join(doubts)))
    return out | {
        "score": round(10 * (0.5 + (raw - 0.5) * evidence), 1),
        "raw": round(raw, 3),
        "confidence": round(confidence, 2),
        "evidence_factor": round(evidence, 2),
        "components": [
            {"name": c.name, "value": round(c.value, 3), "weight": weights[c.name]}
            | {"inputs": c.inputs}
            for c in used
        ],
        "evidence": _evidence(kind, scope, rubric),
        "rubric": {k: rubric[k] for k in ("band", "relevance", "lines")},
        "signals": {k: v for c in used for k, v in c.inputs.items()},
        "notes": notes,
    }


def _evidence_factor(scope: list[_Prepared]) -> float:
    """How much there is to judge: speech time and sentences, 1 from one full answer."""
    speech_s = sum(p.speech_s for p in scope)
    n_sents = sum(len(p.quotable) for p in scope)
    return min(1.0, speech_s / FULL_SPEECH_S) * min(1.0, n_sents / FULL_SENTENCES)


def _confidence(evidence: float, rubric: dict[str, Any], used: list[_Component]) -> float:
    """Evidence, scaled by how much the answers touch the rubric and how much the
    components agree (a spread-out set of components is a less certain mean)."""
    relevance = rubric["relevance_value"] if rubric["relevance_value"] is not None else 0.5
    values = [c.value for c in used]
    agreement = 1.0 - float(np.std(values)) if len(values) > 1 else 0.5
    return min(MAX_CONFIDENCE, evidence * (0.4 + 0.3 * relevance + 0.3 * agreement))


def _no_evidence(rubric: dict[str, Any], code: str = "no_speech") -> dict[str, Any]:
    return {
        "score": None,
        "raw": None,
        "confidence": 0.0,
        "evidence_factor": 0.0,
        "components": [],
        "evidence": [],
        "rubric": {k: rubric[k] for k in ("band", "relevance", "lines")},
        "signals": {},
        "notes": [_note(code)],
    }


NOTES: dict[str, dict[str, str]] = {
    "no_speech": {
        "zh": "没有可评估的语音，未评分。",
        "en": "No speech to judge: not scored.",
    },
    "no_method": {
        "zh": "该维度没有评分标准，也不属于已知维度：未评分，请人工评估。",
        "en": "This dimension has no rubric and is of no known kind: not scored, for a "
        "person to assess.",
    },
    "little_speech": {
        "zh": "语音较少：分数向中间收缩，置信度低。",
        "en": "Little speech: the score is pulled to the middle and its confidence is low.",
    },
    "off_rubric": {
        "zh": "回答与评分标准的关联很弱。",
        "en": "The answers hardly touch the rubric.",
    },
    "face_doubt": {
        "zh": "人脸信号显示作答者可能不在画面中或不是同一人：置信度降低，分数不变。",
        "en": "Face signals put in doubt who answered: confidence lowered, score unchanged.",
    },
}


def _note(code: str, detail: str = "") -> dict[str, str]:
    """A note in both languages; `detail` (ids and times only) is appended to each."""
    suffix = f" ({detail})" if detail else ""
    return {"code": code} | {lang: text + suffix for lang, text in NOTES[code].items()}


def _notes(evidence: float, rubric: dict[str, Any]) -> list[dict[str, str]]:
    notes = []
    if evidence < 1.0:
        notes.append(_note("little_speech"))
    if rubric["relevance_value"] is not None and rubric["relevance_value"] < 0.2:
        notes.append(_note("off_rubric"))
    return notes


def _rubric(dim: DimensionSpec, line_vectors: np.ndarray, scope: list[_Prepared]) -> dict[str, Any]:
    """Each rubric line's best sentence in the dimension's answers, the band they support."""
    pool = [(p, i) for p in scope for i in p.quotable]
    if not dim.rubric or not pool:
        empty: list[dict[str, Any]] = [
            {"score": r.score, "text": r.text, "similarity": None, "supports": False}
            for r in dim.rubric
        ]
        return {"band": None, "relevance": None, "relevance_value": None, "lines": empty}
    sent_vectors = np.stack([p.vectors[i] for p, i in pool])
    sims = sent_vectors @ line_vectors.T  # (sentences, lines)
    best_rows = np.argmax(sims, axis=0)
    best = [float(sims[best_rows[j], j]) for j in range(len(dim.rubric))]
    top = max(best)
    supporting = [j for j, s in enumerate(best) if s >= top - BAND_MARGIN and s > 0]
    band = (
        sum(dim.rubric[j].score * best[j] for j in supporting) / sum(best[j] for j in supporting)
        if supporting
        else None
    )
    lines: list[dict[str, Any]] = []
    for j, line in enumerate(dim.rubric):
        p, i = pool[int(best_rows[j])]
        lines.append(
            {
                "score": line.score,
                "text": line.text,
                "similarity": round(best[j], 3),
                "supports": j in supporting,
                "answer_id": p.inp.answer_id,
            }
            | p.sents[i].evidence()
        )
    lines.sort(key=lambda item: -item["similarity"])
    relevance = _ramp(top, *RELEVANCE_RANGE)
    return {
        "band": None if band is None else round(band, 2),
        "relevance": round(relevance, 3),
        "relevance_value": relevance,
        "best_similarity": top,
        "lines": lines,
    }


def _weighted(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else None


def _components(
    kind: str, scope: list[_Prepared], rubric: dict[str, Any], job: JobSpec
) -> list[_Component]:
    comps: list[_Component] = []
    if rubric["band"] is not None:
        value = 0.5 * rubric["relevance_value"] + 0.5 * (rubric["band"] - 1) / 4
        inputs = {
            "rubric_band": rubric["band"],
            "rubric_best_similarity": round(rubric["best_similarity"], 3),
        }
        comps.append(_Component("rubric", _clip(value), inputs))
    if kind == "communication":
        comps.extend(_communication(scope))
    elif kind == "logic":
        comps.extend(_logic(scope))
    elif kind == "knowledge":
        comps.extend(_knowledge(scope, job))
    elif kind in CUES:
        comps.append(_cues(kind, scope))
    return comps


def _rate_value(rate: float, lang: str) -> float:
    lo, hi = RATE_RANGE[lang]
    if rate < lo:
        return _ramp(rate, lo / 2, lo)
    return 1.0 - _ramp(rate, hi, hi * 1.5)


def _communication(scope: list[_Prepared]) -> list[_Component]:
    """Per answer, then weighted by speech time: rate, silence, fillers, sentence length."""
    rows: dict[str, list[tuple[float, float, float]]] = {
        "rate": [],
        "pauses": [],
        "fillers": [],
        "sentence_length": [],
    }
    for p in scope:
        s, w = p.inp.speech, p.speech_s
        if (rate := s.get("rate_per_min")) is not None:
            rows["rate"].append((_rate_value(rate, p.lang), w, rate))
        if (silence := s.get("silence_share")) is not None:
            rows["pauses"].append((1.0 - _ramp(silence, 0.25, 0.7), w, silence))
        if (per_min := (s.get("fillers") or {}).get("per_min")) is not None:
            rows["fillers"].append((1.0 - _ramp(per_min, 0.0, 10.0), w, per_min))
        lo, hi = SENTENCE_RANGE[p.lang]
        sizes = [count_units(p.sents[i].text, p.lang) for i in p.quotable]
        inside = sum(lo <= n <= hi for n in sizes) / len(sizes)
        rows["sentence_length"].append((inside, w, sum(sizes) / len(sizes)))
    signal = {
        "rate": "rate_per_min",
        "pauses": "silence_share",
        "fillers": "fillers_per_min",
        "sentence_length": "mean_sentence_length",
    }
    out = []
    for name, found in rows.items():
        value = _weighted([(v, w) for v, w, _ in found])
        measured = _weighted([(m, w) for _, w, m in found])
        if value is None or measured is None:
            continue
        inputs: dict[str, Any] = {signal[name]: round(measured, 3)}
        if name == "pauses":
            inputs["long_pauses"] = sum(
                (p.inp.speech.get("pauses") or {}).get("long_count", 0) for p in scope
            )
        out.append(_Component(name, value, inputs))
    return out


def _logic(scope: list[_Prepared]) -> list[_Component]:
    star, conn, coh = [], [], []
    for p in scope:
        c, w = p.inp.content, p.speech_s
        if (c.get("star") or {}).get("coverage") is not None:
            star.append((c["star"]["coverage"], w))
        per = (c.get("connectives") or {}).get("per_sentence")
        if per is not None:
            conn.append((per, w))
        if c.get("coherence") is not None:
            coh.append((c["coherence"], w))
    out = []
    if (v := _weighted(star)) is not None:
        out.append(_Component("star", v, {"star_coverage": round(v, 2)}))
    if (v := _weighted(conn)) is not None:
        # about one connective every second to fifth sentence is a linked answer
        out.append(
            _Component("connectives", _ramp(v, 0.0, 0.3), {"connectives_per_sentence": round(v, 2)})
        )
    if (v := _weighted(coh)) is not None:
        out.append(_Component("coherence", _ramp(v, 0.1, 0.35), {"coherence": round(v, 3)}))
    return out


def _knowledge(scope: list[_Prepared], job: JobSpec) -> list[_Component]:
    keywords = list(dict.fromkeys(k.strip() for k in job.keywords if k.strip()))
    said = {
        m["keyword"]
        for p in scope
        for m in ((p.inp.content.get("keywords") or {}).get("matched") or [])
    }
    out = []
    if keywords:
        share = len(said & set(keywords)) / len(keywords)
        inputs = {"keywords_matched": sorted(said & set(keywords)), "keywords_total": len(keywords)}
        # half of a job's keywords across the answers is a full match
        out.append(_Component("keywords", _ramp(share, 0.0, 0.5), inputs))
    overlap = [
        (p.inp.content["keywords"]["vocabulary_overlap"], p.speech_s)
        for p in scope
        if (p.inp.content.get("keywords") or {}).get("vocabulary_overlap") is not None
    ]
    if (v := _weighted(overlap)) is not None:
        out.append(
            _Component("vocabulary", _ramp(v, 0.0, 0.3), {"vocabulary_overlap": round(v, 2)})
        )
    sims = [
        (p.inp.content["job_similarity"], p.speech_s)
        for p in scope
        if p.inp.content.get("job_similarity") is not None
    ]
    if (v := _weighted(sims)) is not None:
        out.append(
            _Component("job_similarity", _ramp(v, 0.15, 0.45), {"job_similarity": round(v, 3)})
        )
    return out


def _cue_hits(kind: str, p: _Prepared) -> list[tuple[str, Sentence]]:
    hits: list[tuple[str, Sentence]] = []
    for cue in CUES[kind][p.lang]:
        sent = next((p.sents[i] for i in p.quotable if cue in p.sents[i].text.lower() + " "), None)
        if sent is not None:
            hits.append((cue.strip(), sent))
    return hits


def _cues(kind: str, scope: list[_Prepared]) -> _Component:
    found = sorted({cue for p in scope for cue, _ in _cue_hits(kind, p)})
    return _Component("cues", _ramp(len(found), 0, FULL_CUES), {"cue_words": found})


def _evidence(kind: str, scope: list[_Prepared], rubric: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to four quotes: the best rubric matches and what the kind's components saw."""
    items: list[dict[str, Any]] = []
    for line in [line for line in rubric["lines"] if line.get("supports")][:2]:
        if line.get("quote"):
            items.append(_quote(line, f"closest to rubric line (band {line['score']})"))
    for p in scope:
        c = p.inp.content
        if kind == "logic":
            for part in ("situation", "task", "action", "result"):
                hit = (c.get("star") or {}).get(part) or {}
                if hit.get("quote"):
                    items.append(
                        _quote(hit | {"answer_id": p.inp.answer_id}, f"STAR {part}: {hit['cue']}")
                    )
        elif kind == "knowledge":
            for m in (c.get("keywords") or {}).get("matched") or []:
                items.append(
                    _quote(
                        m | {"answer_id": p.inp.answer_id}, f"keyword {m['keyword']} ({m['how']})"
                    )
                )
        elif kind in CUES:
            for cue, sent in _cue_hits(kind, p)[:2]:
                items.append(
                    _quote(sent.evidence() | {"answer_id": p.inp.answer_id}, f"cue word {cue}")
                )
        elif kind == "communication":
            items.extend(_filler_quotes(p))
    seen: set[tuple[Any, str]] = set()
    unique = []
    for item in items:
        key = (item["answer_id"], item["quote"])
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique[:4]


def _filler_quotes(p: _Prepared) -> list[dict[str, Any]]:
    """The sentence around each of the first fillers, with the filler's own time."""
    out = []
    for f in ((p.inp.speech.get("fillers") or {}).get("items") or [])[:2]:
        sent = next(
            (
                p.sents[i]
                for i in p.quotable
                if p.sents[i].offset <= f["offset"] < p.sents[i].offset + len(p.sents[i].text)
            ),
            None,
        )
        if sent is not None:
            out.append(
                _quote(
                    sent.evidence() | {"answer_id": p.inp.answer_id},
                    f"filler {f['word']} at {f['start']:.1f}s",
                )
            )
    return out


def _quote(source: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "answer_id": source["answer_id"],
        "quote": source["quote"],
        "start": source["start"],
        "end": source["end"],
        "segments": source["segments"],
        "reason": reason,
    }


def _face_summary(answers: Sequence[AnswerInput]) -> dict[str, Any] | None:
    """What the face signals say about *whose* speech this is: a note, never a score.

    Reads `FaceTimeline.summary()` keys: `one_face_share` (below 0.8 raises doubt) and
    `identity_switches` (any raises doubt); the rest is shown as given.
    """
    given = {str(a.answer_id): a.face for a in answers if a.face}
    if not given:
        return None
    doubts: dict[str, str] = {}
    for answer_id, f in given.items():
        one = f.get("one_face_share")
        switches = f.get("identity_switches") or []
        if switches:
            doubts[answer_id] = f"answer {answer_id}: identity switch at {switches[0]:.1f}s"
        elif one is not None and one < 0.8:
            doubts[answer_id] = f"answer {answer_id}: one face {one:.0%} of the time"
    keep = (
        "one_face_share",
        "no_face_share",
        "several_faces_share",
        "looking_share",
        "identity_switches",
    )
    return {
        "used_in_score": False,
        "answers": {k: {x: f.get(x) for x in keep if x in f} for k, f in given.items()},
        "doubts": doubts,
    }


COMPONENT_LABELS: dict[str, dict[str, str]] = {
    "rubric": {"zh": "与评分标准的相符度", "en": "match with the rubric"},
    "rate": {"zh": "语速", "en": "speaking rate"},
    "pauses": {"zh": "停顿（无声时间占比）", "en": "pauses (share of silence)"},
    "fillers": {"zh": "口头语（如“嗯”“那个”）", "en": "filler words (um, uh, like)"},
    "sentence_length": {"zh": "句子长度", "en": "sentence length"},
    "star": {"zh": "回答结构（情境、任务、行动、结果）", "en": "answer structure (STAR)"},
    "connectives": {"zh": "连接词", "en": "connectives"},
    "coherence": {"zh": "前后连贯", "en": "coherence"},
    "keywords": {"zh": "岗位关键词", "en": "job keywords"},
    "vocabulary": {"zh": "岗位用词", "en": "job vocabulary"},
    "job_similarity": {"zh": "与岗位描述的相关度", "en": "closeness to the job description"},
    "cues": {"zh": "相关词语", "en": "cue words"},
}

_EXPLAIN: dict[str, dict[str, str]] = {
    "zh": {
        "title": "关于面试AI评估的说明（《个人信息保护法》第二十四条）",
        "what": "这是什么",
        "what_body": "本评估在医院内部的服务器上完成，您的数据不会发送到外部。AI分数只是参考"
        "意见：是否录用由人决定，HR可以修改分数，但必须写明理由。",
        "measured": "测量了什么",
        "measured_body": "- 您说的话：录音被转写为文字（语音识别模型见下文）。\n"
        "- 语速、停顿和口头语。\n"
        "- 回答的结构（情境、任务、行动、结果）、连接词、前后是否连贯。\n"
        "- 与岗位关键词和评分标准在意思上的接近程度（多语言句向量，中英文均可比较）。",
        "not": "没有测量什么",
        "not_body": "- 长相、表情、年龄、性别、口音、音高都不进入分数。\n"
        "- 人脸信号（仅在您单独同意时采集）只用来确认是您本人在作答，从不改变分数。\n"
        "- AI不判断诚实与否，也不评估性格。",
        "how": "每项分数是怎样得出的",
        "how_body": "每个维度由若干0到1之间的组成值按权重平均，再换算为0到10分；语音较少时"
        "分数向中间（5分）收缩，置信度也随之降低。",
        "score": "分",
        "confidence": "置信度",
        "not_scored": "未评分（没有可评估的语音）",
        "weight": "权重",
        "evidence": "证据",
        "seconds": "秒",
        "rubric": "最接近的评分标准",
        "band": "档",
        "overall": "总分（各维度按权重加权平均）",
        "limits": "局限",
        "limits_body": "语音识别会出错，尤其是专业名词和中英混说；句向量衡量的是意思是否接近，"
        "不能可靠地区分否定等细节。因此分数可能有偏差，需要由人判断。",
        "review": "如何申请人工复核",
        "review_body": "您可以要求由人重新评估您的面试，也可以要求只由人评估、不使用AI分数。"
        "请通过面试邀请中的HR联系方式提出；医院将安排工作人员复核并告知结果。对仅通过"
        "自动化决策作出的决定，您有权拒绝（《个人信息保护法》第二十四条）。",
        "models": "使用的模型",
    },
    "en": {
        "title": "How the AI assessed your interview (PIPL Art. 24)",
        "what": "What this is",
        "what_body": "The assessment ran on the hospital's own server; your data did not "
        "leave it. AI scores only advise: a person decides about hiring, and HR may change "
        "a score but must write down why.",
        "measured": "What was measured",
        "measured_body": "- What you said: the recording was transcribed (speech model "
        "below).\n"
        "- Speaking rate, pauses and filler words.\n"
        "- How answers were built (situation, task, action, result), connectives and "
        "coherence.\n"
        "- How close in meaning your answers are to the job's keywords and the rubric "
        "(a multilingual sentence embedding: Chinese and English compare alike).",
        "not": "What was not measured",
        "not_body": "- Your looks, facial expressions, age, gender, accent and voice pitch "
        "are not part of any score.\n"
        "- Face signals (only with your separate consent) only check that you are the "
        "person answering; they never change a score.\n"
        "- The AI does not judge honesty or personality.",
        "how": "How each score was reached",
        "how_body": "Each dimension is a weighted mean of components between 0 and 1, "
        "scaled to 0-10. With little speech the score is pulled towards the middle (5) and "
        "its confidence is low.",
        "score": "",
        "confidence": "confidence",
        "not_scored": "not scored (no speech to judge)",
        "weight": "weight",
        "evidence": "Evidence",
        "seconds": "s",
        "rubric": "Closest rubric line",
        "band": "band",
        "overall": "Overall (weighted mean of the dimensions)",
        "limits": "Limits",
        "limits_body": "Speech recognition makes mistakes, especially with technical terms "
        "and mixed Chinese and English; the embedding measures closeness of meaning and "
        "does not reliably tell negations apart. Scores can be wrong, which is why a person "
        "decides.",
        "review": "How to ask for a human review",
        "review_body": "You may ask for your interview to be assessed again by a person, "
        "or to be assessed by people only, without AI scores. Ask through the HR contact in "
        "your invitation; the hospital will have staff review it and tell you the outcome. "
        "You may refuse a decision made solely by automated means (PIPL Art. 24).",
        "models": "Models used",
    },
}


def explanation(report: dict[str, Any], lang: str) -> str:
    """Plain text a candidate can be given on request (PIPL Art. 24): what was measured,
    what was not, how each score was reached, how to ask for a human review."""
    t = _EXPLAIN["zh" if lang == "zh" else "en"]
    lines = [t["title"], ""]
    for key in ("what", "measured", "not", "how"):
        lines += [t[key], t[f"{key}_body"], ""]
    for dim in report["dimensions"]:
        lines.extend(_explain_dimension(dim, t, lang))
    if report.get("overall") is not None:
        lines += [f"{t['overall']}: {report['overall']:.1f}", ""]
    versions = ", ".join(f"{k}: {v}" for k, v in report.get("model_versions", {}).items())
    lines += [t["models"], versions, ""]
    for key in ("limits", "review"):
        lines += [t[key], t[f"{key}_body"], ""]
    return "\n".join(lines).rstrip() + "\n"


def _explain_dimension(dim: dict[str, Any], t: dict[str, str], lang: str) -> list[str]:
    if dim["score"] is None:
        return [f"[{dim['name']}] {t['not_scored']}", ""]
    confidence = f"{t['confidence']} {dim['confidence']:.2f}"
    out = [f"[{dim['name']}] {dim['score']:.1f}/10{t['score']} ({confidence})"]
    for c in dim["components"]:
        label = COMPONENT_LABELS.get(c["name"], {}).get(lang, c["name"])
        measured = ", ".join(f"{k}={v}" for k, v in c["inputs"].items())
        out.append(f"  - {label}: {c['value']:.2f} ({t['weight']} {c['weight']}; {measured})")
    for e in dim["evidence"][:3]:
        out.append(
            f"  {t['evidence']}: \u201c{e['quote']}\u201d "
            f"({e['start']:.1f}-{e['end']:.1f}{t['seconds']})"
        )
    supporting = [line for line in dim["rubric"]["lines"] if line.get("supports")]
    if supporting:
        line = supporting[0]
        out.append(f"  {t['rubric']}: \u201c{line['text']}\u201d ({line['score']} {t['band']})")
    return [*out, ""]


__all__ = [
    "AnswerInput",
    "DimensionSpec",
    "JobSpec",
    "RubricSpec",
    "COMPONENT_LABELS",
    "dimension_kind",
    "explanation",
    "score_report",
]
