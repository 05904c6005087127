"""Retention schedules (issue #8): a dry run lists what would go and deletes nothing; the run
deletes what is due with a certificate each, never a candidate still in a process, never
one under a legal hold; the law's minimums cannot be configured away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from appliance.errors import SettingsError
from appliance.records import (
    Application,
    AuditEvent,
    DataRequest,
    DeletionCertificate,
    Job,
    JobClosure,
    JobStatus,
    RetentionRun,
    Stage,
    utcnow,
)
from appliance.settings import PrivacySettings, Settings
from appliance.store import Store
from compliance import deletion, requests, retention
from compliance.actors import Actor
from tests.privacy.privacy_helpers import add_person, database_texts, found
from workers.jobs import JobContext, get_job_logger
from workers.privacy import apply_retention

DPO = Actor(kind="system", name="cli:dpo")
JOB = Actor.system("retention-test")


def set_stage(store: Store, application_id: int, stage: Stage, days_ago: int) -> None:
    with store.transaction() as db:
        application = db.get(Application, application_id)
        assert application is not None
        application.stage = stage
        application.updated_at = utcnow() - timedelta(days=days_ago)
    with store.transaction() as db:  # `onupdate` set it to now: put the past back
        db.execute(
            Application.__table__.update()
            .where(Application.id == application_id)
            .values(updated_at=utcnow() - timedelta(days=days_ago))
        )


def test_dry_run_lists_and_the_run_deletes_what_is_due(demo: Store, settings: Settings) -> None:
    rejected = add_person(demo, "Rejected")
    fresh = add_person(demo, "Fresh")
    active = add_person(demo, "Active")
    held = add_person(demo, "Held")
    hired = add_person(demo, "Hired")
    set_stage(demo, rejected.application_id, Stage.REJECTED, days_ago=200)
    set_stage(demo, fresh.application_id, Stage.REJECTED, days_ago=10)
    set_stage(demo, active.application_id, Stage.INTERVIEWED, days_ago=400)
    set_stage(demo, held.application_id, Stage.REJECTED, days_ago=300)
    set_stage(demo, hired.application_id, Stage.HIRED, days_ago=900)
    deletion.place_hold(
        demo, DPO, held.subject_id, "pending complaint to the regulator (PIPL Art. 65)"
    )

    dry = retention.run(demo, settings, JOB, dry_run=True)
    listed = dry.results["candidates_not_hired"]
    assert sorted(listed["due"]) == sorted([rejected.subject_id, held.subject_id])
    assert listed["held"] == [held.subject_id] and listed["deleted"] == []
    assert dry.results["audit_log"]["days"] == 184
    assert found([rejected.values["candidates.name"]], database_texts(demo))  # nothing went

    done = retention.run(demo, settings, JOB, dry_run=False)
    result = done.results["candidates_not_hired"]
    assert result["deleted"] == [rejected.subject_id]
    assert len(result["certificates"]) == 1
    assert found(rejected.strings(), database_texts(demo)) == []
    for kept in (fresh, active, held, hired):
        assert found([kept.values["candidates.name"]], database_texts(demo)), kept.subject_id
    with demo.session() as db:
        certificate = db.get(DeletionCertificate, result["certificates"][0])
        assert certificate is not None and "candidates_not_hired" in certificate.body
        runs = db.scalars(select(RetentionRun).order_by(RetentionRun.id)).all()
        actions = db.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("retention.%"))
        ).all()
    assert [r.dry_run for r in runs] == [True, False] and all(r.finished_at for r in runs)
    assert actions == ["retention.dry_run", "retention.run"]


def test_candidates_of_a_closed_job_go_n_days_after_it_was_seen_closed(
    demo: Store, settings: Settings
) -> None:
    person = add_person(demo, "Closed")
    set_stage(demo, person.application_id, Stage.INTERVIEWED, days_ago=500)
    with demo.transaction() as db:
        application = db.get(Application, person.application_id)
        assert application is not None
        job = db.get(Job, application.job_id)
        assert job is not None
        job.status = JobStatus.CLOSED
    short = settings.model_copy(
        update={"privacy": PrivacySettings(retention_days={"candidates_not_hired": 30})}
    )
    first = retention.run(demo, short, JOB, dry_run=False)
    assert first.results["candidates_not_hired"]["due"] == []  # closed just now, as far as known
    with demo.session() as db:
        assert db.scalars(select(JobClosure)).all()
    later = retention.run(demo, short, JOB, dry_run=True, now=utcnow() + timedelta(days=31))
    assert person.subject_id in later.results["candidates_not_hired"]["due"]


def test_request_copies_are_deleted_after_their_days(demo: Store, settings: Settings) -> None:
    person = add_person(demo, "Copy")
    request = requests.receive(demo, settings, DPO, person.subject_id, "access", "hr")
    requests.verify_identity(demo, DPO, request.id, "id_document")
    copy = requests.complete_access(demo, DPO, request.id)
    assert retention.run(demo, settings, JOB, dry_run=False).results["request_copies"]["due"] == []
    later = utcnow() + timedelta(days=31)
    result = retention.run(demo, settings, JOB, dry_run=False, now=later).results
    assert result["request_copies"]["deleted"] == [request.id]
    assert copy.blob_id not in set(demo.blobs.blob_ids())
    with demo.session() as db:
        row = db.get(DataRequest, request.id)
        assert row is not None and row.bundle_blob_id is None


def test_legal_minimums_cannot_be_configured_away(settings: Settings) -> None:
    for category, days in (("audit_log", 90), ("impact_assessments", 365)):
        short = settings.model_copy(
            update={"privacy": PrivacySettings(retention_days={category: days})}
        )
        with pytest.raises(SettingsError, match="legal minimum"):
            retention.schedule(short)
    unknown = settings.model_copy(update={"privacy": PrivacySettings(retention_days={"x": 5})})
    with pytest.raises(SettingsError, match="unknown"):
        retention.check_settings(unknown)
    rows = {r["category"]: r for r in retention.schedule(settings)}
    assert rows["audit_log"]["action"] == "keep" and rows["audit_log"]["days"] >= 184
    assert rows["impact_assessments"]["days"] >= 3 * 365


def test_the_maintenance_job_applies_the_schedules(demo: Store) -> None:
    person = add_person(demo, "Job")
    set_stage(demo, person.application_id, Stage.REJECTED, days_ago=365)
    ctx = JobContext(store=demo, run_id=0, rq_job_id="ret1", logger=get_job_logger("t", "ret1"))
    apply_retention(ctx)
    assert not demo.keyring.exists(person.subject_id)
    with demo.session() as db:
        run = db.scalars(select(RetentionRun)).one()
    assert run.actor == "job:ret1" and not run.dry_run
