"""Retention schedules per data category, run by the `maintenance` queue (issue #8).

PIPL Art. 19 keeps personal information only as long as the purpose needs; Art.
47(1)(1) deletes it once the purpose is met. Some records the law keeps for *at least*
a time: the audit log 184 days (MLPS-3), impact assessments and processing records
three years (PIPL Art. 56). So a category either deletes after its days, or is kept
for at least its days and never pruned here (`keep`).

Candidates not hired are deleted N days after their last job closed or their last
application was rejected, with `compliance.deletion.erase_subject` (a certificate
each), unless they consented to the talent pool (a longer schedule) or a legal hold
stands. When a job closed is not stored on the job: the first retention pass that
sees it closed records the moment (`JobClosure`), which is never earlier than the
closing, so a retention counted from it is never shorter than the schedule.

`run(..., dry_run=True)` lists what would go and deletes nothing. Every run, dry or
not, is recorded (`RetentionRun`) and audited, with ids and counts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import SettingsError
from appliance.records import (
    Application,
    Candidate,
    ConsentPurpose,
    DataRequest,
    Job,
    JobClosure,
    JobStatus,
    RequestStatus,
    RetentionRun,
    Stage,
    Subject,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance import audit, consent, deletion
from compliance.actors import Actor
from compliance.deletion import JobCanceller


@dataclass(frozen=True)
class Category:
    name: str
    title: str
    days: int
    """Default; `settings.privacy.retention_days[name]` overrides it."""
    minimum: int
    """The law's minimum: settings may not go below it."""
    starts: str
    """What the days count from."""
    action: str
    """delete (after the days) or keep (at least the days; never pruned here)."""
    law: str
    data: str


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            "candidates_not_hired",
            "Candidates not hired",
            180,
            0,
            "the day their last job closed or their last application was rejected",
            "delete",
            "PIPL Art. 19, Art. 47(1)(1)",
            "the candidate's whole file: application, resume, interview, AI results",
        ),
        Category(
            "talent_pool",
            "Candidates in the talent pool (with consent)",
            730,
            0,
            "the day their last job closed or their last application was rejected",
            "delete",
            "PIPL Art. 14, 19, 47(1)(1)",
            "the candidate's whole file",
        ),
        Category(
            "request_copies",
            "Copies made for data-subject requests",
            30,
            0,
            "the day the request was completed",
            "delete",
            "PIPL Art. 19",
            "the zip of the person's data handed to them",
        ),
        Category(
            "audit_log",
            "Audit log",
            184,
            184,
            "the event",
            "keep",
            "MLPS-3 (GB/T 22239-2019 8.1.4.3): at least six months",
            "who accessed whose data when (ids and field names, no values)",
        ),
        Category(
            "impact_assessments",
            "Impact assessments",
            3 * 365,
            3 * 365,
            "the assessment",
            "keep",
            "PIPL Art. 56: at least three years",
            "assessment reports",
        ),
        Category(
            "processing_records",
            "Processing records (requests, certificates, retention runs, bias audits, consents)",
            3 * 365,
            3 * 365,
            "the record",
            "keep",
            "PIPL Art. 56; GB/T 35273-2020 11.3",
            "ids, dates, counts and law citations, no personal values",
        ),
    )
}


def days_of(settings: Settings, name: str) -> int:
    """The category's days under the settings; SettingsError below the legal minimum."""
    category = CATEGORIES[name]
    days = settings.privacy.retention_days.get(name, category.days)
    if days < category.minimum or days < 1:
        raise SettingsError(
            f"privacy.retention_days.{name} = {days} is below the legal minimum of "
            f"{category.minimum} days ({category.law})"
        )
    return days


def check_settings(settings: Settings) -> None:
    unknown = sorted(set(settings.privacy.retention_days) - set(CATEGORIES))
    if unknown:
        raise SettingsError(
            f"privacy.retention_days names unknown categories {unknown}; known: "
            f"{sorted(CATEGORIES)}"
        )
    for name in CATEGORIES:
        days_of(settings, name)


def schedule(settings: Settings) -> list[dict[str, Any]]:
    """The schedules in force, for the record of processing and the DPO's page."""
    check_settings(settings)
    return [
        {
            "category": c.name,
            "title": c.title,
            "days": days_of(settings, c.name),
            "counted_from": c.starts,
            "action": c.action,
            "law": c.law,
            "data": c.data,
        }
        for c in CATEGORIES.values()
    ]


# --- what is due ----------------------------------------------------------------------

_KEEP_STAGES = (Stage.OFFER, Stage.HIRED)
_TALENT_POOL = "talent_pool"


def _closures(db: Session, now: datetime, record: bool) -> dict[int, datetime]:
    seen = {c.job_id: c.seen_closed_at for c in db.scalars(select(JobClosure))}
    for job_id in db.scalars(select(Job.id).where(Job.status == JobStatus.CLOSED)):
        if job_id not in seen:
            seen[job_id] = now
            if record:
                db.add(JobClosure(job_id=job_id, seen_closed_at=now))
    return seen


def _in_talent_pool(db: Session, subject_id: str) -> bool:
    purpose = ConsentPurpose.__members__.get(_TALENT_POOL.upper())
    return purpose is not None and consent.holds(db, subject_id, purpose)


def due_candidates(
    db: Session, settings: Settings, now: datetime, record_closures: bool = False
) -> dict[str, list[str]]:
    """Subject ids of candidates whose retention has run out, by category."""
    closed = _closures(db, now, record_closures)
    limits = {name: timedelta(days=days_of(settings, name)) for name in CATEGORIES}
    due: dict[str, list[str]] = {"candidates_not_hired": [], "talent_pool": []}
    candidates = db.scalars(
        select(Candidate)
        .join(Subject, Subject.id == Candidate.subject_id)
        .where(Subject.shredded_at.is_(None))
        .order_by(Candidate.id)
    )
    for candidate in candidates:
        anchor = _anchor(db, candidate, closed)
        if anchor is None:
            continue
        category = (
            "talent_pool" if _in_talent_pool(db, candidate.subject_id) else "candidates_not_hired"
        )
        if now - anchor >= limits[category]:
            due[category].append(candidate.subject_id)
    return due


def _anchor(db: Session, candidate: Candidate, closed: dict[int, datetime]) -> datetime | None:
    """When the candidate's last application ended; None while one is still going on or
    they were offered or hired (their file then follows the employee schedules)."""
    applications = list(
        db.scalars(select(Application).where(Application.candidate_id == candidate.id))
    )
    if not applications:
        return candidate.created_at
    ends = []
    for application in applications:
        if application.stage in _KEEP_STAGES:
            return None
        if application.job_id in closed:
            ends.append(max(closed[application.job_id], application.updated_at))
        elif application.stage is Stage.REJECTED:
            ends.append(application.updated_at)
        else:
            return None
    return max(ends)


def due_copies(db: Session, settings: Settings, now: datetime) -> list[int]:
    """Completed requests whose copy has been kept its days."""
    limit = now - timedelta(days=days_of(settings, "request_copies"))
    return list(
        db.scalars(
            select(DataRequest.id).where(
                DataRequest.status == RequestStatus.COMPLETED,
                DataRequest.bundle_blob_id.is_not(None),
                DataRequest.completed_at < limit,
            )
        )
    )


# --- running --------------------------------------------------------------------------


def run(
    store: Store,
    settings: Settings,
    actor: Actor,
    dry_run: bool = True,
    now: datetime | None = None,
    cancel_jobs: JobCanceller | None = None,
) -> RetentionRun:
    """Apply the schedules (or, with `dry_run`, only list what would go)."""
    check_settings(settings)
    moment = now or utcnow()
    with store.transaction() as db:
        run_row = RetentionRun(started_at=utcnow(), dry_run=dry_run, actor=actor.name, results={})
        db.add(run_row)
        db.flush()
        run_id = run_row.id
        due = due_candidates(db, settings, moment, record_closures=not dry_run)
        copies = due_copies(db, settings, moment)
        held = {sid for sids in due.values() for sid in sids if deletion.active_holds(db, sid)}
    results: dict[str, Any] = {}
    error = None
    try:
        for category, subject_ids in due.items():
            results[category] = _apply(
                store, actor, category, settings, subject_ids, held, dry_run, cancel_jobs
            )
        results["request_copies"] = _drop_copies(store, copies, dry_run, settings)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        for name, schedule_of in CATEGORIES.items():
            if schedule_of.action == "keep":
                results[name] = {
                    "days": days_of(settings, name),
                    "kept": "at least this long; never pruned by retention",
                }
        with store.transaction() as db:
            row = db.get(RetentionRun, run_id)
            if row is not None:
                row.results, row.finished_at, row.error = results, utcnow(), error
        audit.record(
            store,
            actor,
            "retention.dry_run" if dry_run else "retention.run",
            f"retention_runs:{run_id}",
            "processing",
            result="failed" if error else "allowed",
            subject_ids=sorted(
                {s for name in due for s in results.get(name, {}).get("deleted", [])}
            ),
        )
    with store.session() as db:
        done = db.get(RetentionRun, run_id)
        assert done is not None  # noqa: S101 (written above)
        return done


def _apply(
    store: Store,
    actor: Actor,
    category: str,
    settings: Settings,
    subject_ids: list[str],
    held: set[str],
    dry_run: bool,
    cancel_jobs: JobCanceller | None,
) -> dict[str, Any]:
    days = days_of(settings, category)
    out: dict[str, Any] = {
        "days": days,
        "due": subject_ids,
        "held": sorted(set(subject_ids) & held),
        "deleted": [],
        "certificates": [],
    }
    if dry_run:
        return out
    basis = f"retention schedule {category}: {days} days ({CATEGORIES[category].law})"
    for subject_id in subject_ids:
        if subject_id in held:
            continue
        try:
            cert = deletion.erase_subject(store, actor, subject_id, basis, cancel_jobs=cancel_jobs)
        except deletion.LegalHoldActive:
            out["held"].append(subject_id)
            continue
        out["deleted"].append(subject_id)
        out["certificates"].append(cert.id)
    return out


def _drop_copies(
    store: Store, request_ids: list[int], dry_run: bool, settings: Settings
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "days": days_of(settings, "request_copies"),
        "due": request_ids,
        "deleted": [],
    }
    if dry_run:
        return out
    for request_id in request_ids:
        with store.transaction() as db:
            request = db.get(DataRequest, request_id)
            if request is None or request.bundle_blob_id is None:
                continue
            blob_id, request.bundle_blob_id = request.bundle_blob_id, None
        deletion.delete_blobs(store, [blob_id])
        out["deleted"].append(request_id)
    return out
