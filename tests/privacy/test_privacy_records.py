"""Records for auditors (issue #8): the record of processing activities is generated from the
policy and the retention schedules; an approved impact assessment must exist before face
analysis or AI scoring runs; the audit pack is signed and verifies offline, and holds no
person's values."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.records import ImpactAssessment, ScoreReport
from appliance.settings import Settings
from appliance.store import Store
from compliance import audit_pack, pia, processing_record, register, requests, retention
from compliance.actors import Actor
from compliance.policy import default_policy
from tests.privacy.privacy_helpers import add_person, file_texts, found

DPO = Actor(kind="system", name="cli:dpo")
SECOND = Actor(kind="system", name="cli:security-admin")
VERIFIER = Path(__file__).resolve().parents[2] / "compliance" / "verify_privacy.py"
BODY = {
    "purpose_and_method": "Automated scoring of transcripts against the job's rubric.",
    "necessity": "Consistent first reading of many answers; a person decides.",
    "impact_and_risks": "Unfair scores for some groups; opaque results.",
    "measures": "Bias audits, explanations, human review on request, consent.",
    "conclusion": "Acceptable with these measures.",
}


def test_the_record_of_processing_is_generated_from_the_policy_and_schedules(
    demo: Store, settings: Settings
) -> None:
    policy = default_policy()
    with demo.session() as db:
        record = processing_record.build(settings, db)
    assert [a["purpose"] for a in record["activities"]] == list(policy.purposes)
    listed = {item["field"] for a in record["activities"] for item in a["personal_data"]}
    assert listed == set(policy.fields)  # every field the policy rules on, for some purpose
    by_purpose = {a["purpose"]: a for a in record["activities"]}
    screening = {i["field"]: i for i in by_purpose["screening"]["personal_data"]}
    assert screening["candidates.id_number"]["access"]["hr"] == "masked"
    assert screening["candidates.id_number"]["sensitive"]
    assert "equality_data.categories" not in screening  # never seen by those who decide
    assert {r["category"] for r in record["retention"]} == set(retention.CATEGORIES)
    assert record["features"]["face_analysis"]["impact_assessment"] is None
    assert record["jurisdiction"]["profile"] == settings.jurisdiction
    text = processing_record.to_markdown(record)
    assert "# Record of processing activities" in text and "`face_signals.embedding`" in text


def test_face_analysis_and_ai_scoring_need_an_approved_assessment(demo: Store) -> None:
    with demo.session() as db:
        assert not pia.required_ok(db, "face_analysis")
        assert not pia.required_ok(db, "ai_scoring")
    with pytest.raises(pia.AssessmentIncomplete, match="measures"):
        pia.record(demo, DPO, "ai_scoring", "v1", "AI scoring", {**BODY, "measures": " "})
    row = pia.record(demo, DPO, "ai_scoring", "v1", "AI scoring", BODY)
    with demo.session() as db:
        assert not pia.required_ok(db, "ai_scoring")  # written, not yet approved
    with pytest.raises(PermissionError):
        pia.approve(demo, DPO, row.id)  # not by its own author
    pia.approve(demo, SECOND, row.id)
    with demo.session() as db:
        assert pia.required_ok(db, "ai_scoring")
        assert not pia.required_ok(db, "face_analysis")
        stored = db.get(ImpactAssessment, row.id)
        assert stored is not None
        assert stored.keep_until - stored.assessed_at >= timedelta(days=3 * 365)
        assert pia.current(db, "ai_scoring", now=stored.review_by + timedelta(days=1)) is None
    pia.withdraw(demo, DPO, row.id)
    with demo.session() as db:
        assert not pia.required_ok(db, "ai_scoring")


def run_verifier(folder: Path) -> subprocess.CompletedProcess[str]:
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    return subprocess.run(
        [python, str(VERIFIER), str(folder)], capture_output=True, text=True, check=False
    )


def test_the_audit_pack_is_signed_verifies_offline_and_holds_no_values(
    demo: Store, settings: Settings, short_tmp: Path
) -> None:
    person = add_person(demo, "Pack")
    row = pia.record(demo, DPO, "face_analysis", "v1", "Face analysis", BODY)
    pia.approve(demo, SECOND, row.id)
    notice = register.publish_notice(demo, DPO, "face_analysis", "v1", "人脸分析告知")
    register.record_consent(demo, DPO, person.subject_id, "face_analysis", True, notice.id)
    request = requests.receive(demo, settings, DPO, person.subject_id, "delete", "hr")
    requests.verify_identity(demo, DPO, request.id, "id_document")
    requests.complete_delete(demo, DPO, request.id)
    retention.run(demo, settings, Actor.system("ret"), dry_run=True)
    other = add_person(demo, "Models")
    with demo.transaction() as db:
        report = db.scalars(
            select(ScoreReport).where(ScoreReport.subject_id == other.subject_id)
        ).one()
        report.model_versions = {"scorer": "rubric-1.2", "asr": "faster-whisper base int8"}

    folder = short_tmp / "pack"
    manifest = audit_pack.make_pack(demo, settings, DPO, folder)
    assert {
        "processing_record.json",
        "processing_record.md",
        "impact_assessments.json",
        "consents.json",
        "requests.json",
        "retention_runs.json",
        "deletion_certificates.json",
        "bias_audits.json",
        "models.json",
        "jurisdiction.json",
        "box-public-key.asc",
    } == set(manifest["files"])
    assert manifest["audit_checkpoint"]["size"] >= 1
    models = json.loads((folder / "models.json").read_text())
    assert models["scorer"] == ["rubric-1.2"]
    consents = json.loads((folder / "consents.json").read_text())
    assert consents["statistics"]["face_analysis"]["granted"] == 1
    certificates = json.loads((folder / "deletion_certificates.json").read_text())
    assert [c["subject_id"] for c in certificates] == [person.subject_id]
    assert json.loads((folder / "requests.json").read_text())["by_kind"]["delete"] == {
        "completed": 1
    }
    assert found([*person.strings(), *other.strings()], file_texts(folder.iterdir())) == []

    result = run_verifier(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    changed = short_tmp / "changed"
    shutil.copytree(folder, changed)
    (changed / "requests.json").write_text('{"by_kind": {}}\n')
    result = run_verifier(changed)
    assert result.returncode == 1 and "requests.json" in result.stdout
