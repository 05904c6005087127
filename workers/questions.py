"""Suggested interview questions for a job, made on the box (issue 6, item 2).

No external service and no model: the suggestions must be reproducible and explainable
to HR and to an auditor, so every one carries the reasons it was made (`Reason`), and
the same job and bank always give the same list in the same order.

How (each step is a reason kind the portal shows):

1. **Job terms**: what HR wrote as hard requirements (licences such as 执业医师资格证,
   the professional title such as 主治医师, keywords) with weight `EXPLICIT_WEIGHT`,
   the competencies with `COMPETENCY_TERM_WEIGHT`, and the top `TFIDF_TOP` words of the
   title, description and requirements by jieba's TF-IDF (its own IDF table, shipped in
   the wheel), weighted 0-1. The requirement terms are added to jieba's dictionary
   first, so 护士执业证书 stays one word.
2. **Bank matches** (`keywords`): a bank question matches a term when the term is one of
   its keywords or occurs in its text, or when one of its keywords occurs in the job's
   text. Its score is the sum of the matched terms' weights, plus `COMPETENCY_BONUS`
   when it is filed under one of the job's competencies (`competency`). Questions of
   other competencies need a keyword match to be suggested at all.
3. **Templates**: one question per licence (`licence`), for the professional title
   (`professional_title`) and for the years of experience (`years`), and one per
   competency the bank has nothing for (`competency_template`), from fixed Chinese
   templates (the interview language of the hospital's first customers).

`pick()` chooses the few to pre-fill: the best question of each competency first
(so three suggestions probe three different things), then the next best.

Pure Python: no Flask, no database. The web layer turns rows into `JobProfile` and
`BankEntry` and renders the reasons in the user's language.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jieba
    import jieba.analyse

TFIDF_TOP = 12
EXPLICIT_WEIGHT = 2.0
COMPETENCY_TERM_WEIGHT = 1.0
COMPETENCY_BONUS = 1.0
TEMPLATE_SCORES = {"licence": 1.25, "professional_title": 1.15, "years": 0.7, "competency": 0.5}
"""Fixed scores of templated questions: a licence the job demands is worth asking about
more than a bank question that only shares the competency (1.0), but a curated bank
question of the competency that also matches a job term (1.0 + the term's weight,
usually >= 1.3) comes first."""

DEFAULT_THINK_SECONDS = 30
DEFAULT_ANSWER_SECONDS = 120
DEFAULT_RETAKES = 1

_WORD = re.compile(r"[\u4e00-\u9fff]{2,}|[A-Za-z][A-Za-z0-9+\-]{1,}")
_ZH_STOP = frozenset(
    "招聘 负责 工作 具有 具备 以上 以下 要求 相关 能够 岗位 职位 我院 医院 优先 良好 "
    "及以上 熟悉 掌握 能力 经验 年以上 需要 进行 完成 参与 科室 人员 以及 或者 并且".split()
)

LICENCE_TEMPLATE = "请结合您持有的{term}，谈谈您在执业中如何确保诊疗或护理行为符合规范。"
TITLE_TEMPLATE = "作为{term}，请举例说明您如何指导下级人员或带教新同事。"
YEARS_TEMPLATE = "请介绍您近{term}年工作中最能体现岗位能力的一段经历。"
COMPETENCY_TEMPLATES: Mapping[str, str] = {
    "沟通能力": "请举一个您与患者或家属沟通、化解误会的具体例子：情境、您的做法和结果。",
    "团队协作": "请举一个您与同事分工协作完成一项困难任务的例子：您承担了什么，结果如何？",
    "专业知识": "请介绍一个您独立处理过的典型病例或护理案例，以及您的判断依据。",
    "应变能力": "请讲一次工作中遇到突发情况的经历：您先做了什么，为什么这样排序？",
    "语言逻辑": "请用两分钟说明您为什么适合这个岗位：先说结论，再给出两三条依据。",
}
GENERIC_COMPETENCY_TEMPLATE = (
    "请举一个最能体现您{term}的具体例子：当时的情境、您的任务、采取的行动和结果。"
)
TEMPLATE_COMPETENCY = {"licence": "专业知识", "professional_title": "团队协作", "years": "专业知识"}


@dataclass(frozen=True)
class JobProfile:
    """What the suggester reads of a job (`requirements` as `Job.requirements` holds it)."""

    title: str
    description: str = ""
    requirements: Mapping[str, Any] = field(default_factory=dict)
    competencies: Sequence[str] = ()

    def licences(self) -> list[str]:
        return _as_list(self.requirements.get("licences"))

    def professional_title(self) -> str:
        return str(self.requirements.get("professional_title") or "").strip()

    def years(self) -> int:
        try:
            return max(0, int(self.requirements.get("years") or 0))
        except (TypeError, ValueError):
            return 0

    def keywords(self) -> list[str]:
        return _as_list(self.requirements.get("keywords"))

    def text(self) -> str:
        """Title, description and the requirement strings: what TF-IDF reads."""
        parts = [self.title, self.description, str(self.requirements.get("education") or "")]
        parts += self.licences() + [self.professional_title()] + self.keywords()
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class BankEntry:
    """One question of the question bank (a `BankQuestion` row, without the ORM)."""

    id: int
    competency: str
    text: str
    keywords: Sequence[str] = ()
    think_seconds: int = DEFAULT_THINK_SECONDS
    answer_seconds: int = DEFAULT_ANSWER_SECONDS
    retakes: int = DEFAULT_RETAKES


@dataclass(frozen=True)
class Reason:
    """Why a question was suggested: a kind (module docstring) and the terms behind it."""

    kind: str
    terms: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "terms": list(self.terms)}


@dataclass(frozen=True)
class Suggestion:
    text: str
    competency: str
    source: str
    """bank or template."""
    score: float
    reasons: tuple[Reason, ...]
    bank_question_id: int | None = None
    think_seconds: int = DEFAULT_THINK_SECONDS
    answer_seconds: int = DEFAULT_ANSWER_SECONDS
    retakes: int = DEFAULT_RETAKES

    def reasons_as_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.reasons]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


_tokenizer: jieba.Tokenizer | None = None
_tfidf: jieba.analyse.TFIDF | None = None
_lock = threading.Lock()


def _extract(text: str, vocabulary: Iterable[str]) -> list[tuple[str, float]]:
    """jieba TF-IDF tags of `text` (weight, word), with `vocabulary` kept whole.

    One tokenizer per process, behind a lock: `add_word` changes its dictionary.
    """
    global _tokenizer, _tfidf
    with _lock:
        if _tokenizer is None or _tfidf is None:
            import jieba as jieba_module
            import jieba.analyse as analyse

            jieba_module.setLogLevel(logging.WARNING)
            _tokenizer = jieba_module.Tokenizer()
            _tfidf = analyse.TFIDF()
            _tfidf.tokenizer = _tokenizer
        for term in vocabulary:
            if 2 <= len(term) <= 16:
                _tokenizer.add_word(term)
        tags = _tfidf.extract_tags(text, topK=None, withWeight=True)
    return [(w, float(s)) for w, s in tags if _WORD.fullmatch(w) and w not in _ZH_STOP]


def job_terms(profile: JobProfile) -> dict[str, float]:
    """The job's terms and their weights (step 1 of the module docstring), in a fixed order."""
    explicit = [*profile.licences(), profile.professional_title(), *profile.keywords()]
    terms: dict[str, float] = {}
    for term in explicit:
        if term:
            terms[term] = EXPLICIT_WEIGHT
    for competency in profile.competencies:
        terms.setdefault(competency, COMPETENCY_TERM_WEIGHT)
    tags = _extract(profile.text(), [*explicit, *profile.competencies])[:TFIDF_TOP]
    top = tags[0][1] if tags else 1.0
    for word, weight in tags:
        terms.setdefault(word, round(weight / top, 3))
    return terms


def _bank_match(
    entry: BankEntry, terms: Mapping[str, float], job_text: str, competencies: Sequence[str]
) -> Suggestion | None:
    keywords = [k for k in entry.keywords if k]
    matched = [t for t in terms if t in keywords or t in entry.text]
    matched += [k for k in keywords if k in job_text and k not in matched]
    in_competency = entry.competency in competencies
    if not matched and not in_competency:
        return None
    score = sum(terms.get(t, 1.0) for t in matched)
    reasons = []
    if in_competency:
        score += COMPETENCY_BONUS
        reasons.append(Reason("competency", (entry.competency,)))
    if matched:
        reasons.append(Reason("keywords", tuple(matched)))
    return Suggestion(
        text=entry.text,
        competency=entry.competency,
        source="bank",
        score=round(score, 3),
        reasons=tuple(reasons),
        bank_question_id=entry.id,
        think_seconds=entry.think_seconds,
        answer_seconds=entry.answer_seconds,
        retakes=entry.retakes,
    )


def _templated(profile: JobProfile, covered: set[str]) -> list[Suggestion]:
    made: list[tuple[str, str, str]] = [
        ("licence", LICENCE_TEMPLATE, t) for t in profile.licences()
    ]
    if profile.professional_title():
        made.append(("professional_title", TITLE_TEMPLATE, profile.professional_title()))
    if profile.years():
        made.append(("years", YEARS_TEMPLATE, str(profile.years())))
    out = [
        Suggestion(
            text=template.format(term=term),
            competency=TEMPLATE_COMPETENCY[kind],
            source="template",
            score=TEMPLATE_SCORES[kind],
            reasons=(Reason(kind, (term,)),),
        )
        for kind, template, term in made
    ]
    for competency in profile.competencies:
        if competency in covered:
            continue
        template = COMPETENCY_TEMPLATES.get(competency, GENERIC_COMPETENCY_TEMPLATE)
        out.append(
            Suggestion(
                text=template.format(term=competency),
                competency=competency,
                source="template",
                score=TEMPLATE_SCORES["competency"],
                reasons=(Reason("competency_template", (competency,)),),
            )
        )
    return out


def suggest(profile: JobProfile, bank: Iterable[BankEntry], limit: int = 10) -> list[Suggestion]:
    """Suggested questions for the job, best first, each with its reasons (deterministic)."""
    terms = job_terms(profile)
    job_text = profile.text()
    competencies = [c for c in profile.competencies if c]
    from_bank = [
        s
        for entry in sorted(bank, key=lambda e: e.id)
        if (s := _bank_match(entry, terms, job_text, competencies)) is not None
    ]
    covered = {s.competency for s in from_bank}
    ranked = sorted(
        [*from_bank, *_templated(profile, covered)],
        key=lambda s: (-s.score, s.source != "bank", s.bank_question_id or 0, s.text),
    )
    seen: set[str] = set()
    unique = []
    for suggestion in ranked:
        if suggestion.text not in seen:
            seen.add(suggestion.text)
            unique.append(suggestion)
    return unique[:limit]


def pick(suggestions: Sequence[Suggestion], count: int = 3) -> list[Suggestion]:
    """The `count` to pre-fill: the best of each competency first, then the next best."""
    chosen: list[Suggestion] = []
    competencies: set[str] = set()
    for suggestion in suggestions:
        if len(chosen) < count and suggestion.competency not in competencies:
            chosen.append(suggestion)
            competencies.add(suggestion.competency)
    for suggestion in suggestions:
        if len(chosen) < count and suggestion not in chosen:
            chosen.append(suggestion)
    return sorted(chosen, key=suggestions.index)
