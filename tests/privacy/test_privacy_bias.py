"""Bias audit (issue #8): the DCWP worked example reproduces, unknowns are counted apart,
small categories are flagged, intersections work, and on the box the audit reads the
sealed equality data through the gate and stores aggregates only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import func, select

from appliance.records import (
    Application,
    AuditEvent,
    BiasAudit,
    EqualityData,
    ScoreReport,
    Stage,
)
from appliance.store import Store
from compliance import bias
from compliance.actors import Actor
from tests.privacy.privacy_helpers import add_person


def by_group(table: dict) -> dict[str, dict]:
    return {g["group"]: g for g in table["groups"]}


def test_the_dcwp_worked_example_reproduces() -> None:
    """Scoring rates 54.3% and 44.7% for groups of 92 and 76 give impact ratios 1.00 and
    0.82 (DCWP rules for Local Law 144): 50 of 92 and 34 of 76 score above the median of
    the 168 scores."""
    scores = iter(range(168))  # distinct scores: exactly 84 lie above the median
    low = [next(scores) for _ in range(84)]
    high = [next(scores) for _ in range(84)]
    people = [bias.Person({"sex": "male"}, score=s) for s in high[:50] + low[:42]]
    people += [bias.Person({"sex": "female"}, score=s) for s in high[50:] + low[42:]]
    assert (len(people), sum(p.categories["sex"] == "male" for p in people)) == (168, 92)

    table = bias.scoring_rates(people, "sex")
    groups = by_group(table)
    assert (groups["male"]["n"], groups["female"]["n"]) == (92, 76)
    assert (groups["male"]["rate_percent"], groups["female"]["rate_percent"]) == (54.3, 44.7)
    assert round(groups["male"]["impact_ratio"], 2) == 1.00
    assert round(groups["female"]["impact_ratio"], 2) == 0.82
    assert table["unknown"] == 0


def test_selection_rates_unknowns_small_groups_and_intersections() -> None:
    people = (
        [bias.Person({"sex": "female", "age_band": "25-34"}, selected=i < 30) for i in range(100)]
        + [bias.Person({"sex": "male", "age_band": "25-34"}, selected=i < 20) for i in range(80)]
        + [bias.Person({"sex": "male", "age_band": "55-64"}, selected=True) for _ in range(3)]
        + [bias.Person({"sex": None, "age_band": "25-34"}, selected=True) for _ in range(7)]
    )
    sex = bias.selection_rates(people, "sex")
    groups = by_group(sex)
    assert sex["unknown"] == 7 and sex["assessed"] == 190
    assert groups["female"]["rate"] == 0.3 and groups["female"]["impact_ratio"] == 1.0
    assert round(groups["male"]["rate"], 4) == round(23 / 83, 4)
    assert round(groups["male"]["impact_ratio"], 4) == round((23 / 83) / 0.3, 4)

    crossed = bias.selection_rates(people, ("sex", "age_band"))
    cells = by_group(crossed)
    assert set(cells) == {"female x 25-34", "male x 25-34", "male x 55-64"}
    small = cells["male x 55-64"]  # 3 of 183 known: under 2%, left out of the ratios
    assert small["impact_ratio"] is None and "2%" in small["note"]
    assert cells["male x 25-34"]["impact_ratio"] == round(0.25 / 0.3, 4)
    assert crossed["unknown"] == 7
    assert "unstable" not in (cells["female x 25-34"]["note"] or "")

    few = [bias.Person({"sex": "f"}, selected=True)] * 10 + [
        bias.Person({"sex": "m"}, selected=False)
    ] * 10
    assert "unstable" in by_group(bias.selection_rates(few, "sex"))["f"]["note"]
    assert bias.age_band("1990", datetime(2026, 6, 1, tzinfo=UTC)) == "35-44"
    assert bias.age_band("not a year", datetime(2026, 6, 1, tzinfo=UTC)) is None


def test_the_audit_on_the_box_reads_sealed_categories_and_stores_aggregates(demo: Store) -> None:
    people = [add_person(demo, f"B{i}") for i in range(6)]
    sexes = ["female", "female", "female", "male", "male", "male"]
    with demo.transaction() as db:
        for i, (person, sex) in enumerate(zip(people, sexes, strict=True)):
            row = db.scalars(
                select(EqualityData).where(EqualityData.subject_id == person.subject_id)
            ).one()
            row.categories = json.dumps({"sex": sex, "birth_year": str(1980 + i * 4)})
            report = db.scalars(
                select(ScoreReport).where(ScoreReport.subject_id == person.subject_id)
            ).one()
            report.report = json.dumps({"overall": float(i)})
            application = db.get(Application, person.application_id)
            assert application is not None
            application.stage = Stage.OFFER if i in (0, 3, 4) else Stage.REJECTED
    job_id = _job_of(demo, people[0].application_id)
    row = bias.run_audit(demo, Actor.system("bias-test"), [job_id])
    sex = row.results["categories"]["sex"]
    selection, scoring = by_group(sex["selection"]), by_group(sex["scoring"])
    assert selection["female"]["hits"] == 1 and selection["male"]["hits"] == 2
    with demo.session() as db:
        applied = db.scalar(
            select(func.count()).select_from(Application).where(Application.job_id == job_id)
        )
    assert sex["selection"]["unknown"] == applied - 6  # the demo's candidates hold none
    assert scoring["male"]["hits"] == 3 and scoring["female"]["hits"] == 0  # above median 2.5
    assert "sex x age_band" in row.results["categories"]
    csv_text = bias.to_csv(row.results)
    assert "sex,selection,female,3,1" in csv_text
    with demo.session() as db:
        stored = db.get(BiasAudit, row.id)
        reads = db.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "bias_audit",
                AuditEvent.actor == "bias-audit(job:bias-test)",
            )
        ).all()
    assert stored is not None
    blob = json.dumps(stored.results, ensure_ascii=False)
    for person in people:
        assert person.subject_id not in blob  # aggregates only, no one's row
    assert sorted(reads[-1].subject_ids) == sorted(p.subject_id for p in people)
    assert "equality_data.categories" in reads[-1].fields


def _job_of(store: Store, application_id: int) -> int:
    with store.session() as db:
        application = db.get(Application, application_id)
        assert application is not None
        return application.job_id
