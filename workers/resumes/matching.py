"""Match parsed resumes to a job: hard requirements pass or fail with a reason, soft fit scored.

Semantic match across Chinese and English is a reviewed bilingual table of
equivalent terms (`CONCEPTS`), not a neural model: the offline sentence
encoders on PyPI either pull weights from a hub at first use or are too large
for the box's CPU budget, and a table gives HR a reason it can read ("护士执业证书
= Nurse Practising Certificate"). Unknown terms still match by normalised
substring. Extend the table as hospitals report misses.

Ranking: candidates who pass every hard requirement first, then by soft score,
then by years of experience. AI-free and deterministic: the same inputs give the
same list, and a named person makes the decision.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Each row: one concept, its zh and en spellings (compared after normalisation).
CONCEPTS: dict[str, tuple[str, ...]] = {
    "nurse_licence": (
        "护士执业证书",
        "护士执业证",
        "护士执业资格证",
        "护士资格证",
        "护士执业资格",
        "nurse practising certificate",
        "nurse practicing certificate",
        "registered nurse license",
        "registered nurse licence",
        "nursing license",
        "nursing licence",
        "rn license",
    ),
    "physician_qualification": (
        "执业医师资格证书",
        "执业医师资格证",
        "医师资格证书",
        "医师资格证",
        "physician qualification certificate",
        "medical licensing examination",
    ),
    "physician_practising": (
        "医师执业证书",
        "医师执业证",
        "physician practising certificate",
        "physician practicing certificate",
        "medical practitioner license",
    ),
    "residency_training": (
        "住院医师规范化培训合格证书",
        "住院医师规范化培训",
        "规培",
        "规培证",
        "standardised residency training",
        "standardized residency training",
        "residency training certificate",
    ),
    "pharmacist_licence": (
        "执业药师资格证书",
        "执业药师",
        "licensed pharmacist certificate",
        "licensed pharmacist",
        "pharmacist license",
        "pharmacist licence",
    ),
    "clinical_pharmacist_training": ("临床药师岗位培训证书", "clinical pharmacist training"),
    "supervisor_nurse": ("主管护师", "supervisor nurse", "nurse-in-charge"),
    "attending_physician": ("主治医师", "attending physician"),
    "supervisor_pharmacist": ("主管药师", "supervisor pharmacist", "pharmacist-in-charge"),
    "bls": ("基础生命支持", "bls", "basic life support"),
    "acls": ("高级心血管生命支持", "acls", "advanced cardiovascular life support"),
    "cpr": ("心肺复苏", "cpr", "cardiopulmonary resuscitation"),
    "iv_therapy": ("静脉输液", "静脉治疗", "静脉穿刺", "iv therapy", "venipuncture", "intravenous"),
    "wound_care": ("伤口造口护理", "伤口护理", "wound care", "wound and ostomy care", "ostomy"),
    "critical_care": ("危重患者", "重症护理", "危重症", "critical care", "icu", "intensive care"),
    "hemodialysis": ("血液透析", "hemodialysis", "haemodialysis"),
    "picc": ("picc",),
    "ventilator": ("呼吸机", "ventilator", "mechanical ventilation"),
    "health_education": ("健康宣教", "health education", "patient education"),
    "prescription_review": ("处方审核", "prescription review"),
    "medication_counselling": ("用药咨询", "medication counselling", "medication counseling"),
    "antimicrobial": ("抗菌药物管理", "antimicrobial stewardship"),
    "adr_monitoring": ("药物不良反应监测", "adverse drug reaction"),
    "tdm": ("治疗药物监测", "therapeutic drug monitoring"),
    "iv_compounding": ("静脉药物调配", "静脉用药调配", "iv compounding", "sterile compounding"),
    "records": ("档案管理", "病案管理", "records management"),
    "icd": ("icd-10", "病案编码", "icd coding"),
    "ultrasound": ("床旁超声", "超声", "point-of-care ultrasound", "ultrasound"),
    "emr": ("电子病历", "emr", "electronic medical record"),
    "english": ("英语", "english"),
    "mandarin": ("普通话", "汉语", "中文", "mandarin", "chinese"),
    "japanese": ("日语", "japanese"),
    "cantonese": ("粤语", "cantonese"),
}

DEGREE_LEVELS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (5, ("博士", "doctor", "phd", "ph.d", "md ")),
    (4, ("硕士", "研究生", "master", "msc", "m.sc", "mph", "mba")),
    (3, ("本科", "学士", "bachelor", "bsc", "b.sc", "bsn", "mbbs")),
    (2, ("大专", "专科", "高职", "associate", "diploma")),
    (1, ("中专", "中职", "高中", "secondary")),
)


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


_CONCEPT_INDEX = [(norm(v), concept) for concept, vs in CONCEPTS.items() for v in vs]


def concepts(text: str) -> set[str]:
    key = norm(text)
    return {concept for variant, concept in _CONCEPT_INDEX if variant and variant in key}


def same_thing(wanted: str, have: str) -> bool:
    """Whether a resume item `have` satisfies the requirement `wanted` (zh/en, variants)."""
    a, b = norm(wanted), norm(have)
    if not a or not b:
        return False
    if a in b or (len(b) >= 2 and b in a and len(b) >= 0.6 * len(a)):
        return True
    wanted_c = concepts(wanted)
    return bool(wanted_c) and wanted_c <= concepts(have)


def degree_level(text: str | None) -> int:
    if not text:
        return 0
    low = unicodedata.normalize("NFKC", text).casefold() + " "
    for level, words in DEGREE_LEVELS:
        if any(w in low for w in words):
            return level
    return 0


def _month(value: str | None, today: dt.date) -> int:
    if value is None:
        return today.year * 12 + today.month - 1
    year, _, month = value.partition("-")
    return int(year) * 12 + (int(month) - 1 if month else 0)


def years_of_experience(experience: Iterable[dict[str, Any]], today: dt.date) -> float:
    """Total years worked, overlapping jobs counted once; an ongoing job runs to `today`."""
    spans = []
    for job in experience:
        if not job.get("start"):
            continue
        start, end = _month(job["start"], today), _month(job.get("end"), today)
        if end >= start:
            spans.append((start, end + 1))
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total / 12


@dataclass(frozen=True)
class JobRequirements:
    """What a job asks: hard requirements (all must pass) and soft wishes (scored)."""

    title: str
    min_degree: str | None = None
    licences: tuple[str, ...] = ()
    min_years: float | None = None
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    preferred_certifications: tuple[str, ...] = ()


@dataclass
class Check:
    requirement: str
    passed: bool
    reason: str


@dataclass
class Match:
    candidate: str
    passed: bool
    hard: list[Check]
    score: float
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    years: float = 0.0

    @property
    def reasons(self) -> list[str]:
        """Why the candidate fails (empty when every hard requirement passes)."""
        return [c.reason for c in self.hard if not c.passed]


def match(
    candidate: str, resume: dict[str, Any], job: JobRequirements, today: dt.date | None = None
) -> Match:
    """One resume (the parser's dict) against one job."""
    today = today or dt.date.today()
    hard: list[Check] = []
    if job.min_degree:
        best = max(
            (degree_level(e.get("degree")) for e in resume.get("education") or []), default=0
        )
        need = degree_level(job.min_degree)
        hard.append(
            Check(
                f"degree >= {job.min_degree}",
                best >= need,
                f"has the degree asked ({job.min_degree} or higher)"
                if best >= need
                else f"no degree at {job.min_degree} level or higher on the resume",
            )
        )
    certs = list(resume.get("certifications") or [])
    for licence in job.licences:
        found = next((c for c in certs if same_thing(licence, c)), None)
        hard.append(
            Check(
                f"licence {licence}",
                found is not None,
                f"holds {licence} (as '{found}')"
                if found is not None
                else f"no {licence} (or an equivalent) among the certifications",
            )
        )
    years = years_of_experience(resume.get("experience") or [], today)
    if job.min_years is not None:
        ok = years >= job.min_years
        hard.append(
            Check(
                f"experience >= {job.min_years:g} years",
                ok,
                f"{years:.1f} years of experience"
                + ("" if ok else f", below the {job.min_years:g} years required"),
            )
        )
    have = [
        *(resume.get("skills") or []),
        *certs,
        *(resume.get("languages") or []),
        *(e.get("title") or "" for e in resume.get("experience") or []),
    ]
    matched: list[str] = []
    missing: list[str] = []
    wishes = [*job.skills, *job.languages, *job.preferred_certifications]
    for wish in wishes:
        (matched if any(same_thing(wish, h) for h in have if h) else missing).append(wish)
    score = len(matched) / len(wishes) if wishes else 1.0
    return Match(
        candidate,
        all(c.passed for c in hard),
        hard,
        round(score, 3),
        matched,
        missing,
        round(years, 1),
    )


def rank(
    resumes: Sequence[tuple[str, dict[str, Any]]],
    job: JobRequirements,
    today: dt.date | None = None,
) -> list[Match]:
    """Every candidate matched and ranked: passing first, then soft score, then years."""
    results = [match(cid, resume, job, today) for cid, resume in resumes]
    return sorted(results, key=lambda m: (not m.passed, -m.score, -m.years, m.candidate))
