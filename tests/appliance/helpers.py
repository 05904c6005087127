"""Record builders shared by the appliance tests."""

from __future__ import annotations

from sqlalchemy.orm import Session

from appliance.records import (
    Application,
    Candidate,
    Comment,
    Job,
    OrgKind,
    OrgUnit,
    SubjectKind,
    User,
)
from appliance.store import Store


def org_and_job(session: Session) -> tuple[OrgUnit, Job, User]:
    unit = OrgUnit(code="T-HQ", kind=OrgKind.HQ, name="测试医院")
    session.add(unit)
    session.flush()
    unit.place_under(None)
    job = Job(org_unit_id=unit.id, title="主管护师（ICU）")
    user = User(username="hr1", display_name="人事一", password_hash="x")
    session.add_all([job, user])
    session.flush()
    return unit, job, user


def add_candidate(
    store: Store,
    session: Session,
    unit: OrgUnit,
    job: Job,
    author: User,
    name: str,
    phone: str,
    email: str,
    comment: str = "",
) -> Candidate:
    subject = store.new_subject(session, SubjectKind.CANDIDATE)
    candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id)
    candidate.name, candidate.phone, candidate.email = name, phone, email
    session.add(candidate)
    application = Application(candidate=candidate, job=job)
    session.add(application)
    if comment:
        session.flush()
        note = Comment(application_id=application.id, subject_id=subject.id, author_id=author.id)
        note.body = comment
        session.add(note)
    session.flush()
    return candidate
