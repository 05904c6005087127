"""Offline suggested interview questions (issue 6, item 2): deterministic and explained."""

from __future__ import annotations

from workers.questions import (
    BankEntry,
    JobProfile,
    job_terms,
    pick,
    suggest,
)

CARDIOLOGY = JobProfile(
    title="住院医师（心内科）",
    description="东院区心内科招聘住院医师，负责病房及急诊胸痛患者的诊治，参与夜班。",
    requirements={
        "education": "本科",
        "licences": ["执业医师资格证", "医师执业证书"],
        "professional_title": "主治医师",
        "years": 3,
        "keywords": ["胸痛中心"],
    },
    competencies=("沟通能力", "专业知识", "应变能力", "团队协作"),
)

BANK = (
    BankEntry(1, "专业知识", "请描述您对急性胸痛患者的初步评估和处理流程。", ("胸痛", "心电图")),
    BankEntry(2, "沟通能力", "遇到情绪激动的患者家属时，您会如何沟通？", ("家属", "投诉")),
    BankEntry(3, "应变能力", "如果夜班时发现用药错误，您会怎么做？", ("夜班", "用药")),
    BankEntry(4, "药学服务", "请谈谈您如何审核处方中的配伍禁忌。", ("处方", "配伍")),
)


def _kinds(suggestion: object) -> dict[str, list[str]]:
    return {r.kind: list(r.terms) for r in suggestion.reasons}  # type: ignore[attr-defined]


def test_requirement_terms_stay_whole_and_weigh_most() -> None:
    """Licences and the title are terms of their own (jieba's dictionary gets them first)."""
    terms = job_terms(CARDIOLOGY)
    assert terms["执业医师资格证"] == terms["主治医师"] == 2.0
    assert "胸痛" in terms and terms["胸痛"] < 2.0
    assert "执业" not in terms  # not split into pieces


def test_bank_question_matching_job_keywords_ranks_first_with_its_reasons() -> None:
    first = suggest(CARDIOLOGY, BANK)[0]
    assert first.bank_question_id == 1 and first.source == "bank"
    reasons = _kinds(first)
    assert reasons["competency"] == ["专业知识"]
    assert "胸痛" in reasons["keywords"]


def test_other_competency_needs_a_keyword_to_be_suggested() -> None:
    """The pharmacy question shares no term and no competency with a cardiology job."""
    assert 4 not in {s.bank_question_id for s in suggest(CARDIOLOGY, BANK, limit=50)}


def test_licence_title_and_years_give_templated_questions() -> None:
    templated = {
        s.reasons[0].kind: s for s in suggest(CARDIOLOGY, BANK, limit=50) if s.source == "template"
    }
    assert (
        "执业医师资格证" in templated["licence"].text or "医师执业证书" in templated["licence"].text
    )
    assert templated["professional_title"].text.startswith("作为主治医师")
    assert "3年" in templated["years"].text


def test_competency_without_bank_questions_gets_a_template() -> None:
    """团队协作 has no bank question here: a templated one, saying why, fills the gap."""
    found = [s for s in suggest(CARDIOLOGY, BANK, limit=50) if _kinds(s).get("competency_template")]
    assert [_kinds(s)["competency_template"] for s in found] == [["团队协作"]]


def test_same_input_same_output() -> None:
    first = [(s.text, s.score) for s in suggest(CARDIOLOGY, BANK)]
    second = [(s.text, s.score) for s in suggest(CARDIOLOGY, tuple(reversed(BANK)))]
    assert first == second


def test_pick_covers_different_competencies_first() -> None:
    chosen = pick(suggest(CARDIOLOGY, BANK), 3)
    assert len(chosen) == 3
    assert len({s.competency for s in chosen}) == 3


def test_empty_bank_still_suggests_from_templates() -> None:
    suggestions = suggest(JobProfile(title="注册护士", competencies=("沟通能力",)), [])
    assert [s.source for s in suggestions] == ["template"]
    assert suggestions[0].competency == "沟通能力"
