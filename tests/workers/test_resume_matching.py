"""Matching: a nurse job (护士执业证书, 3 years) ranks the qualified nurses first, with reasons."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from workers.resumes import parse_resume, result_dict
from workers.resumes.matching import JobRequirements, rank, same_thing, years_of_experience

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "resumes"
TODAY = dt.date(2026, 1, 1)
NURSE_JOB = JobRequirements(
    title="临床护士",
    licences=("护士执业证书",),
    min_years=3,
    skills=("心肺复苏", "静脉输液", "Wound care"),
    languages=("英语",),
)


@pytest.fixture(scope="module")
def candidates() -> tuple[list[tuple[str, dict]], dict[str, str]]:
    index = json.loads((FIXTURES / "index.json").read_text("utf-8"))
    # every text-layer resume, plus one English nurse scan (zh/en semantic match)
    chosen = [i for i in index if not i["format"].startswith("scan") or i["id"] == "en_09"]
    parsed = [
        (i["id"], result_dict(i["file"], parse_resume((FIXTURES / i["file"]).read_bytes())))
        for i in chosen
    ]
    return parsed, {i["id"]: i["role"] for i in chosen}


def test_qualified_nurses_rank_first_and_the_others_say_why(candidates) -> None:
    parsed, roles = candidates
    ranked = rank(parsed, NURSE_JOB, today=TODAY)
    passing = [m.candidate for m in ranked if m.passed]
    print(
        "\n"
        + "\n".join(
            f"{m.candidate:6} {'PASS' if m.passed else 'fail'} score={m.score:.2f} "
            f"years={m.years:4.1f} matched={m.matched} missing={m.missing} {m.reasons}"
            for m in ranked
        )
    )
    assert set(passing) == {"zh_05", "zh_10", "en_09"}
    assert [m.candidate for m in ranked[: len(passing)]] == passing  # passing ones first
    for m in ranked[len(passing) :]:
        assert m.reasons, m.candidate
        assert any("护士执业证书" in r for r in m.reasons), m.reasons  # none of them is a nurse
        assert roles[m.candidate] != "nurse"
    en09 = next(m for m in ranked if m.candidate == "en_09")
    licence = next(c for c in en09.hard if c.requirement.startswith("licence"))
    assert "Nurse Practising Certificate" in licence.reason  # matched across languages
    assert "英语" in en09.matched and en09.score > 0


def test_too_little_experience_fails_with_the_years_in_the_reason() -> None:
    resume = {
        "certifications": ["护士执业证书"],
        "experience": [{"employer": "某医院", "title": "护士", "start": "2024-09", "end": None}],
    }
    [m] = rank([("new", resume)], NURSE_JOB, today=TODAY)
    assert not m.passed
    assert m.reasons == ["1.4 years of experience, below the 3 years required"]


def test_degree_requirement_and_overlapping_jobs() -> None:
    job = JobRequirements(title="x", min_degree="本科")
    assert rank([("a", {"education": [{"degree": "Bachelor of Science"}]})], job)[0].passed
    assert not rank([("b", {"education": [{"degree": "大专"}]})], job)[0].passed
    jobs = [{"start": "2020-01", "end": "2021-12"}, {"start": "2021-01", "end": "2022-12"}]
    assert years_of_experience(jobs, TODAY) == 3.0


def test_bilingual_equivalents() -> None:
    assert same_thing("护士执业证书", "Nurse Practising Certificate (PRC)")
    assert same_thing("主管护师", "Supervisor Nurse Qualification (intermediate title)")
    assert same_thing("规培", "Standardised Residency Training Certificate")
    assert same_thing("English", "英语")
    assert not same_thing("护士执业证书", "执业药师资格证书")
