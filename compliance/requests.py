"""Data-subject requests (PIPL Art. 44-48, GDPR Art. 15-22, 820 ILCS 42/15).

A candidate or employee asks at the kiosk, through their link, or through HR. The
request is received with its deadline, which comes from the jurisdiction profile in
force: by default `settings.privacy.request_working_days` working days in the
hospital's holiday calendar (15), 30 calendar days for a deletion under Illinois,
one month under the GDPR. Reminders go out as the deadline nears and once it has
passed (`due_reminders`, run by the `maintenance` queue).

Before anything is done the person's identity is checked (`verify_identity`: their
link, an ID document at the kiosk or before HR). A request may be refused only with
a written reason (`refuse` raises `ReasonRequired` otherwise). Completing one:

- access: a copy of their data, as the person themself may see it through the gate
  (a data-request token is issued for them; the same token is the link to fetch it),
  in open formats: JSON records, their notices and consents, transcripts, AI
  signals and score reports, their recordings and documents as they were uploaded.
  The zip is a blob sealed under their key, deleted by the retention schedule;
- correct: the new values go through the gate's write (never stored here);
- delete: `compliance.deletion.erase_subject` (a legal hold pauses it: on_hold);
- withdraw: `compliance.register.withdraw` for the purpose named;
- explain: the score reports with their evidence, the scoring template's
  dimensions, weights and rubric, and the models used (PIPL Art. 24);
- human_review: done when a named person's evaluation exists after the request.

Every step is audited with ids only.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.records import (
    Answer,
    AnswerAnalysis,
    Application,
    Candidate,
    Comment,
    Consent,
    DataRequest,
    DeletionCertificate,
    Employee,
    EqualityData,
    Evaluation,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    NoticeText,
    Recording,
    Referral,
    RequestKind,
    RequestStatus,
    ResumeParse,
    ScoreOverride,
    ScoreReport,
    Subject,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance import audit, deletion, profiles, register, tokens
from compliance.actors import Actor
from compliance.deletion import JobCanceller, ReasonRequired, require_reason
from compliance.gate import Gate, Shown
from compliance.workdays import WorkingCalendar

CHANNELS = ("kiosk", "link", "hr")
IDENTITY_METHODS = ("link_token", "id_document", "known_employee")
"""Their own data-request link; an ID document checked at the kiosk or by HR; an
employee known to the person handling it."""
OPEN = (RequestStatus.RECEIVED, RequestStatus.VERIFIED, RequestStatus.ON_HOLD)
COPY_TTL = timedelta(days=30)
PURPOSE = "data_request"
FORMAT = "enclave-hr-data-copy/1"

__all__ = ["ReasonRequired", "RequestError"]


class RequestError(ValueError):
    """The request cannot move this way (unknown, closed, identity not checked, ...)."""


# --- deadlines ------------------------------------------------------------------------


def deadline(
    settings: Settings, jurisdiction: str, kind: RequestKind, received: datetime
) -> tuple[datetime, str]:
    """When a request received at `received` is due, and the rule that says so."""
    rule = profiles.load_profile(jurisdiction).deadline_for(kind.value)
    calendar = WorkingCalendar.of(settings)
    default = settings.privacy.request_working_days
    count = rule.count if rule.count is not None else default
    if rule.unit == "working_days":
        due = calendar.due_in_working_days(received, count)
    elif rule.unit == "days":
        due = calendar.due_in_days(received, count)
    else:
        due = calendar.due_in_months(received, count)
    return due, rule.describe(default)


# --- receiving and checking -----------------------------------------------------------


def receive(
    store: Store,
    settings: Settings,
    actor: Actor,
    subject_id: str,
    kind: RequestKind | str,
    channel: str,
    purpose: str | None = None,
    fields: tuple[str, ...] = (),
    received_at: datetime | None = None,
) -> DataRequest:
    """Record a request and its deadline under the profile in force."""
    kind = RequestKind(kind)
    if channel not in CHANNELS:
        raise RequestError(f"channel must be one of {', '.join(CHANNELS)}")
    if kind is RequestKind.WITHDRAW:
        register.purpose_enum(purpose or "")
    if kind is RequestKind.CORRECT and not fields:
        raise RequestError("a correction names the fields to correct (table.field)")
    received = received_at or utcnow()
    with store.transaction() as db:
        if db.get(Subject, subject_id) is None:
            raise RequestError(f"no subject {subject_id}")
        jurisdiction = settings.jurisdiction
        due, rule = deadline(settings, jurisdiction, kind, received)
        request = DataRequest(
            subject_id=subject_id,
            kind=kind,
            channel=channel,
            status=RequestStatus.RECEIVED,
            jurisdiction=jurisdiction,
            received_at=received,
            received_by=actor.name,
            due_at=due,
            deadline_rule=rule,
            purpose=purpose,
            fields=list(fields),
            outcome={},
        )
        db.add(request)
        db.flush()
    _event(store, actor, "dsr.receive", request, [f"kind:{kind.value}"])
    return request


def _event(
    store: Store, actor: Actor, action: str, request: DataRequest, fields: list[str] | None = None
) -> None:
    audit.record(
        store,
        actor,
        action,
        f"data_requests:{request.id}",
        PURPOSE,
        subject_ids=[request.subject_id],
        fields=fields or [],
    )


def _open_request(db: Session, request_id: int) -> DataRequest:
    request = db.get(DataRequest, request_id)
    if request is None:
        raise RequestError(f"no data request {request_id}")
    if request.status not in OPEN:
        raise RequestError(f"data request {request_id} is already {request.status.value}")
    return request


def verify_identity(store: Store, actor: Actor, request_id: int, method: str) -> None:
    """Record how the person's identity was checked (never the document's number)."""
    if method not in IDENTITY_METHODS:
        raise RequestError(f"identity method must be one of {', '.join(IDENTITY_METHODS)}")
    with store.transaction() as db:
        request = _open_request(db, request_id)
        request.identity_method = method
        request.identity_checked_at = utcnow()
        request.identity_checked_by = actor.name
        if request.status is RequestStatus.RECEIVED:
            request.status = RequestStatus.VERIFIED
    _event(store, actor, "dsr.verify", request, [f"method:{method}"])


def refuse(store: Store, actor: Actor, request_id: int, reason: str | None) -> None:
    """Refuse with the written ground (PIPL Art. 50: the person may then go to court).
    Without one the refusal is rejected (ReasonRequired) and the request stays open."""
    text = require_reason(reason, "refusing a request")
    with store.transaction() as db:
        request = _open_request(db, request_id)
        request.status = RequestStatus.REFUSED
        request.refused_at = utcnow()
        request.refusal_reason = text
        request.handled_by = actor.name
    _event(store, actor, "dsr.refuse", request)


def _start(db: Session, request_id: int, kind: RequestKind) -> DataRequest:
    request = _open_request(db, request_id)
    if request.kind is not kind:
        raise RequestError(f"data request {request_id} is a {request.kind.value} request")
    if request.identity_checked_at is None:
        raise RequestError(f"check the identity of the person behind request {request_id} first")
    return request


def _finish(
    store: Store, actor: Actor, request_id: int, outcome: dict[str, Any], **values: Any
) -> DataRequest:
    with store.transaction() as db:
        request = _open_request(db, request_id)
        request.status = RequestStatus.COMPLETED
        request.completed_at = utcnow()
        request.handled_by = actor.name
        request.outcome = outcome
        for name, value in values.items():
            setattr(request, name, value)
    _event(store, actor, "dsr.complete", request, [f"kind:{request.kind.value}"])
    return request


# --- completing -----------------------------------------------------------------------


def complete_delete(
    store: Store, actor: Actor, request_id: int, cancel_jobs: JobCanceller | None = None
) -> DeletionCertificate:
    """Erase the person and certify it; a legal hold puts the request on hold instead."""
    with store.session() as db:
        request = _start(db, request_id, RequestKind.DELETE)
        subject_id, jurisdiction = request.subject_id, request.jurisdiction
    law = profiles.load_profile(jurisdiction).deadline_for("delete").law
    basis = f"data-subject request {request_id} ({law}; PIPL Art. 47)"
    try:
        certificate = deletion.erase_subject(
            store, actor, subject_id, basis, request_id=request_id, cancel_jobs=cancel_jobs
        )
    except deletion.LegalHoldActive:
        with store.transaction() as db:
            held = _open_request(db, request_id)
            held.status = RequestStatus.ON_HOLD
        _event(store, actor, "dsr.hold", held)
        raise
    _finish(
        store,
        actor,
        request_id,
        {"certificate_id": certificate.id},
        certificate_id=certificate.id,
    )
    return certificate


def complete_withdraw(
    store: Store, actor: Actor, request_id: int, cancel_jobs: JobCanceller | None = None
) -> register.Withdrawal:
    with store.session() as db:
        request = _start(db, request_id, RequestKind.WITHDRAW)
        subject_id, purpose = request.subject_id, request.purpose or ""
    result = register.withdraw(store, actor, subject_id, purpose, cancel_jobs)
    _finish(
        store,
        actor,
        request_id,
        {"deleted": result.deleted, "blobs": result.blobs, "jobs": result.jobs_cancelled},
    )
    return result


def complete_correct(
    store: Store, actor: Actor, request_id: int, changes: Mapping[str, str | None]
) -> DataRequest:
    """Apply corrections (`table.field` -> new value) to the person's one row of that table,
    through the gate as `actor` (the person themself through their link, or HR)."""
    with store.session() as db:
        request = _start(db, request_id, RequestKind.CORRECT)
        subject_id, asked = request.subject_id, set(request.fields)
    unasked = sorted(set(changes) - asked)
    if unasked:
        raise RequestError(f"request {request_id} did not ask to correct {', '.join(unasked)}")
    gate = Gate(store)
    purpose = PURPOSE if gate.may(actor, "view", PURPOSE) else gate.default_purpose(actor)
    by_table: dict[str, dict[str, str | None]] = {}
    for name, value in changes.items():
        table, _, column = name.partition(".")
        by_table.setdefault(table, {})[column] = value
    models: dict[str, Any] = {Candidate.__tablename__: Candidate, Employee.__tablename__: Employee}
    with store.session() as db:
        for table, values in by_table.items():
            model = models.get(table)
            if model is None:
                raise RequestError(f"corrections of {table} go through the person's file")
            row = db.scalars(select(model).where(model.subject_id == subject_id)).one()
            gate.update(actor, row, values, purpose or PURPOSE)
    return _finish(store, actor, request_id, {"corrected": sorted(changes)})


def complete_human_review(
    store: Store, actor: Actor, request_id: int, evaluation_id: int
) -> DataRequest:
    """Done once a named person evaluated the person after the request (AI advises only)."""
    with store.session() as db:
        request = _start(db, request_id, RequestKind.HUMAN_REVIEW)
        evaluation = db.get(Evaluation, evaluation_id)
        if (
            evaluation is None
            or evaluation.subject_id != request.subject_id
            or evaluation.evaluator_id is None
            or evaluation.created_at < request.received_at
        ):
            raise RequestError(
                f"evaluation {evaluation_id} is not a person's evaluation of this subject "
                "made after the request"
            )
    return _finish(store, actor, request_id, {"evaluation_id": evaluation_id})


@dataclass(frozen=True)
class Copy:
    request_id: int
    blob_id: str
    token: str | None
    """The person's data-request link token (candidates), to fetch the copy with."""
    files: list[str]


def complete_access(store: Store, actor: Actor, request_id: int) -> Copy:
    """A copy of the person's data (PIPL Art. 45, GDPR Art. 15)."""
    return _complete_copy(store, actor, request_id, RequestKind.ACCESS)


def complete_explain(store: Store, actor: Actor, request_id: int) -> Copy:
    """The explanation of the automated results about the person (PIPL Art. 24)."""
    return _complete_copy(store, actor, request_id, RequestKind.EXPLAIN)


def _complete_copy(store: Store, actor: Actor, request_id: int, kind: RequestKind) -> Copy:
    with store.session() as db:
        request = _start(db, request_id, kind)
        subject_id = request.subject_id
        candidate = db.scalars(
            select(Candidate).where(Candidate.subject_id == subject_id)
        ).one_or_none()
        candidate_id = candidate.id if candidate is not None else None
    token: str | None = None
    reader = actor
    if candidate_id is not None:
        token = tokens.issue(store, candidate_id, PURPOSE, COPY_TTL, actor)
        reader = Actor.candidate(tokens.token_id(store, token), candidate_id, PURPOSE)
    files = _bundle(store, reader, subject_id, request_id, kind)
    blob_id = store.blobs.put(subject_id, [_zip(files)])
    _finish(
        store,
        actor,
        request_id,
        {"files": sorted(files), "blob_id": blob_id},
        bundle_blob_id=blob_id,
    )
    return Copy(request_id, blob_id, token, sorted(files))


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    return buffer.getvalue()


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode()


def _shown(rows: list[Shown], parse: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for shown in rows:
        item: dict[str, Any] = {"id": shown.id, **shown.values}
        for name in parse:
            value = item.get(name)
            if isinstance(value, str):
                try:
                    item[name] = json.loads(value)
                except ValueError:
                    pass
        if shown.masked:
            item["masked"] = sorted(shown.masked)
        if shown.hidden:
            item["withheld"] = sorted(shown.hidden)
        out.append(item)
    return out


# Rows of the person the copy shows, by file, through the gate (self scope for candidates).
_PERSONAL: tuple[tuple[str, type[Any], tuple[str, ...]], ...] = (
    ("records/answers.json", Answer, ()),
    ("records/evaluations.json", Evaluation, ()),
    ("records/comments.json", Comment, ()),
    ("records/referrals.json", Referral, ()),
    ("ai/answer_signals.json", AnswerAnalysis, ("signals",)),
    ("ai/face_signals.json", FaceSignals, ("timeline", "embedding")),
    ("ai/expression_signals.json", ExpressionSignals, ("signals",)),
    ("ai/score_reports.json", ScoreReport, ("report",)),
    ("ai/score_overrides.json", ScoreOverride, ()),
)
_EXPLAIN = ("ai/score_reports.json", "ai/score_overrides.json", "ai/answer_signals.json")


def _bundle(
    store: Store, reader: Actor, subject_id: str, request_id: int, kind: RequestKind
) -> dict[str, bytes]:
    gate = Gate(store)
    files: dict[str, bytes] = {}
    withheld: list[str] = []
    with store.session() as db:
        person = db.scalars(select(Candidate).where(Candidate.subject_id == subject_id)).first()
        employee = db.scalars(select(Employee).where(Employee.subject_id == subject_id)).first()
        for row in (person, employee):
            if row is not None and kind is RequestKind.ACCESS:
                files[f"records/{row.__tablename__}.json"] = _dump(
                    _shown([gate.view(reader, row, PURPOSE, action="copy")])
                )
        for name, model, parse in _PERSONAL:
            if kind is RequestKind.EXPLAIN and name not in _EXPLAIN:
                continue
            rows = list(
                db.scalars(select(model).where(model.subject_id == subject_id).order_by(model.id))
            )
            if rows:
                files[name] = _dump(
                    _shown(gate.view_many(reader, rows, PURPOSE, action="copy"), parse)
                )
        files.update(_non_personal(db, subject_id, person, kind))
        if kind is RequestKind.ACCESS:
            withheld += _media(store, gate, reader, db, subject_id, files)
            held = db.scalars(select(EqualityData.id).where(EqualityData.subject_id == subject_id))
            if held.first() is not None:
                # The gate's self scope does not reach these rows yet: named, so the DPO
                # hands them over with the copy (PIPL Art. 45).
                withheld.append("equality_data: categories held for bias audits; ask the DPO")
    files["manifest.json"] = _dump(
        {
            "format": FORMAT,
            "request_id": request_id,
            "kind": kind.value,
            "subject_id": subject_id,
            "made_at": audit.format_time(utcnow()),
            "files": sorted(files),
            "withheld": withheld,
            "formats": "JSON (UTF-8); recordings and documents as they were received",
        }
    )
    return files


def _non_personal(
    db: Session, subject_id: str, person: Candidate | None, kind: RequestKind
) -> dict[str, bytes]:
    """What the person's rows say without sealed fields: applications, sessions, consents and
    the notices they answered, their requests, and how scoring works (the template)."""
    files: dict[str, bytes] = {}
    applications = (
        list(db.scalars(select(Application).where(Application.candidate_id == person.id)))
        if person is not None
        else []
    )
    templates = []
    for app in applications:
        template = app.job.scoring_template
        if template is not None:
            templates.append(
                {
                    "job": app.job.title,
                    "template": template.name,
                    "dimensions": [
                        {
                            "name": d.name,
                            "weight": d.weight,
                            "rubric": [{"score": r.score, "text": r.text} for r in d.rubric],
                        }
                        for d in template.dimensions
                    ],
                }
            )
    files["ai/how_scoring_works.json"] = _dump(
        {
            "automated_scoring": (
                "The AI scores each dimension of the job's template from the transcript, with "
                "the evidence it used and its confidence; it only advises. A named person "
                "decides, and you may ask for a human-only evaluation (PIPL Art. 24)."
            ),
            "templates": templates,
        }
    )
    if kind is RequestKind.EXPLAIN:
        return files
    sessions: list[InterviewSession] = (
        list(
            db.scalars(
                select(InterviewSession).where(
                    InterviewSession.application_id.in_([a.id for a in applications])
                )
            )
        )
        if applications
        else []
    )
    files["records/applications.json"] = _dump(
        [
            {
                "id": a.id,
                "job": a.job.title,
                "stage": a.stage.value,
                "created_at": a.created_at,
                "updated_at": a.updated_at,
            }
            for a in applications
        ]
        + [
            {"session_id": s.id, "status": s.status.value, "completed_at": s.completed_at}
            for s in sessions
        ]
    )
    consents = list(db.scalars(select(Consent).where(Consent.subject_id == subject_id)))
    notices = {
        (n.purpose, n.sha256): n
        for n in db.scalars(
            select(NoticeText).where(NoticeText.sha256.in_([c.text_sha256 for c in consents]))
        )
    }
    files["records/consents.json"] = _dump(
        [
            {
                "purpose": c.purpose.value,
                "granted": c.granted,
                "notice_version": c.notice_version,
                "notice_text": getattr(notices.get((c.purpose.value, c.text_sha256)), "body", None),
                "channel": c.channel,
                "given_at": c.given_at,
                "withdrawn_at": c.withdrawn_at,
            }
            for c in consents
        ]
    )
    requests = db.scalars(select(DataRequest).where(DataRequest.subject_id == subject_id))
    files["records/requests.json"] = _dump(
        [
            {
                "id": r.id,
                "kind": r.kind.value,
                "status": r.status.value,
                "received_at": r.received_at,
                "due_at": r.due_at,
            }
            for r in requests
        ]
    )
    return files


def _media(
    store: Store, gate: Gate, reader: Actor, db: Session, subject_id: str, files: dict[str, bytes]
) -> list[str]:
    """Recordings through the gate's media rule, documents as sent. Returns what the policy
    withheld (named, so the person knows to ask)."""
    withheld = []
    recordings = list(db.scalars(select(Recording).where(Recording.subject_id == subject_id)))
    if recordings and not gate.may(reader, "download", PURPOSE):
        withheld.append(f"recordings ({len(recordings)}): the policy gives no download")
        recordings = []
    for recording in recordings:
        with gate.open_media(reader, recording, "download", PURPOSE) as media:
            extension = recording.media_type.split("/")[-1].split(";")[0] or "bin"
            files[f"recordings/{recording.id}.{extension}"] = media.read()
    documents = list(db.scalars(select(ResumeParse).where(ResumeParse.subject_id == subject_id)))
    if documents:
        audit.record(
            store,
            reader,
            "copy",
            "resume_parses",
            PURPOSE,
            subject_ids=[subject_id],
            fields=["resume_parses.blob"],
        )
    for document in documents:
        files[f"documents/resume-{document.id}"] = store.blobs.read_bytes(document.blob_id)
    return withheld


# --- deadlines and reminders ----------------------------------------------------------


@dataclass(frozen=True)
class Reminder:
    request_id: int
    subject_id: str
    kind: str
    due_at: datetime
    working_days_left: int
    """Negative when overdue."""

    @property
    def overdue(self) -> bool:
        return self.working_days_left < 0


def due_reminders(store: Store, settings: Settings, now: datetime | None = None) -> list[Reminder]:
    """Open requests due within `settings.privacy.reminder_working_days` working days, or
    overdue, not yet reminded today: each is marked reminded and audited."""
    moment = now or utcnow()
    calendar = WorkingCalendar.of(settings)
    today = calendar.local_day(moment)
    out: list[Reminder] = []
    with store.transaction() as db:
        rows = db.scalars(
            select(DataRequest)
            .where(DataRequest.status.in_((RequestStatus.RECEIVED, RequestStatus.VERIFIED)))
            .order_by(DataRequest.due_at)
        )
        for request in rows:
            left = calendar.working_days_between(today, calendar.local_day(request.due_at))
            if moment > request.due_at:
                left = min(left, -1)
            if left > settings.privacy.reminder_working_days:
                continue
            if request.reminded_at is not None and calendar.local_day(request.reminded_at) == today:
                continue
            request.reminded_at = moment
            request.reminders += 1
            out.append(
                Reminder(request.id, request.subject_id, request.kind.value, request.due_at, left)
            )
    for reminder in out:
        audit.record(
            store,
            Actor.system("dsr-reminders"),
            "dsr.overdue" if reminder.overdue else "dsr.reminder",
            f"data_requests:{reminder.request_id}",
            PURPOSE,
            subject_ids=[reminder.subject_id],
        )
    return out


def statistics(db: Session) -> dict[str, Any]:
    """Counts by kind and status, how many were answered late, and open ones overdue."""
    counts: dict[str, dict[str, int]] = {}
    for kind, status, n in db.execute(
        select(DataRequest.kind, DataRequest.status, func.count()).group_by(
            DataRequest.kind, DataRequest.status
        )
    ):
        counts.setdefault(kind.value, {})[status.value] = int(n)
    done = db.execute(
        select(DataRequest.due_at, DataRequest.completed_at, DataRequest.refused_at).where(
            DataRequest.status.in_((RequestStatus.COMPLETED, RequestStatus.REFUSED))
        )
    ).all()
    late = sum(1 for due, completed, refused in done if (completed or refused or due) > due)
    overdue = db.scalar(
        select(func.count()).where(DataRequest.status.in_(OPEN), DataRequest.due_at < utcnow())
    )
    return {
        "by_kind": counts,
        "answered": len(done),
        "answered_late": late,
        "open_overdue": overdue,
    }
