"""Row scope through every surface: HR of one branch or department cannot list, open, search
for (by phone or e-mail) or export a candidate of another, through the portal, the API or an
export; an interviewer cannot open an interview (session, answers, recording) they are not
assigned. Every read, allowed or denied, left its audit event, and no event holds a value.

Out-of-scope rows answer 404, never 403: the answer must not tell that the row exists.
"""

from __future__ import annotations

import html
import io
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from appliance.records import (
    AnalysisStatus,
    Answer,
    AnswerAnalysis,
    Application,
    AuditEvent,
    Candidate,
    Comment,
    Evaluation,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    Job,
    OrgUnit,
    Recording,
    Referral,
    ResumeParse,
    Role,
    RoleAssignment,
    ScoreOverride,
    ScoreReport,
    SubjectKind,
    User,
)
from appliance.store import Store
from webapp.api import XLSX

CSRF = "row-scope-csrf-token"


@dataclass
class CandidateFile:
    """A candidate with everything personal about them, each row's id, and the values set."""

    candidate_id: int
    subject_id: str
    application_id: int
    session_id: int
    answer_id: int
    recording_id: int
    evaluation_id: int
    comment_id: int
    referral_id: int
    report_id: int
    dimension_id: int
    """A dimension of the job's scoring template (what an override names)."""
    values: dict[str, str]
    media: bytes
    extra_session_ids: list[int] = field(default_factory=list)


def file_values(tag: str) -> dict[str, str]:
    """Distinct personal values for one test candidate (`tag`: a short ASCII marker)."""
    digits = f"{zlib.crc32(tag.encode()) % 10**8:08d}"
    return {
        "candidates.name": f"测试{tag}",
        "candidates.phone": f"139{digits}",
        "candidates.email": f"{tag.lower()}.person@example.org",
        "candidates.id_number": f"3201021990{digits}",
        "candidates.address": f"{tag} 路 {digits[:3]} 号",
        "comments.body": f"comment about {tag}",
        "referrals.note": f"referral note {tag}",
        "answers.transcript": f"transcript of {tag} answering",
        "evaluations.notes": f"evaluation notes {tag}",
        "resume_parses.parsed": f'{{"skills": ["resume skill {tag}"]}}',
        **ai_values(f"signals of {tag}", f"face timeline of {tag}", f"expression of {tag}"),
        "face_signals.embedding": f"[0.{digits}, 0.{digits[::-1]}]",
        "score_reports.report": report_value(f"report summary of {tag}", f"evidence of {tag}"),
        "score_overrides.reason": f"override reason {tag}",
    }


def ai_values(signals: str, timeline: str, expression: str) -> dict[str, str]:
    """What the workers store for one answer (issue #5), as JSON the views parse; the given
    strings are what a view that shows the field must display."""
    return {
        "answer_analyses.signals": json.dumps(
            {"speech": {"words_per_minute": 180.0}, "content": {"note": signals}},
            ensure_ascii=False,
        ),
        "face_signals.timeline": json.dumps(
            {
                "file": timeline,
                "fps": 3.0,
                "samples": [{"t": 0.0, "faces": 1, "looking": True, "same_person": True}],
                "ranges": [{"start": 0.0, "end": 0.333, "label": "one"}],
            },
            ensure_ascii=False,
        ),
        "expression_signals.signals": json.dumps(
            {"note": expression, "uncertainty": 0.4}, ensure_ascii=False
        ),
    }


def report_value(summary: str, quote: str) -> str:
    """A score report as `score_session` stores it (`workers.analysis.scoring`'s shape): a
    summary and one dimension with one quote; the ids are set when the rows are made."""
    dimension = {
        "id": "0",
        "name": "沟通能力",
        "kind": "communication",
        "weight": 0.25,
        "weight_share": 1.0,
        "score": 7.5,
        "raw": 0.75,
        "confidence": 0.6,
        "evidence_factor": 1.0,
        "answers": [0],
        "components": [{"name": "rubric", "value": 0.75, "weight": 1.0, "inputs": {}}],
        "evidence": [
            {
                "answer_id": 0,
                "quote": quote,
                "start": 0.5,
                "end": 2.0,
                "segments": [0, 0],
                "reason": "rubric",
            }
        ],
        "rubric": {"band": 4.0, "relevance": 0.7, "lines": []},
        "signals": {},
        "notes": [],
    }
    report = {
        "version": "enclave-score/1",
        "advisory": True,
        "summary": summary,
        "overall": 7.5,
        "overall_confidence": 0.6,
        "dimensions": [dimension],
        "answers": [],
        "face": None,
        "model_versions": {"scoring": "enclave-score/1"},
    }
    return json.dumps(report, ensure_ascii=False)


def user_id(store: Store, username: str) -> int:
    with store.session() as db:
        return db.scalars(select(User.id).where(User.username == username)).one()


def add_candidate_file(
    store: Store,
    org_code: str,
    tag: str,
    interviewers: Iterable[str] = (),
    values: dict[str, str] | None = None,
) -> CandidateFile:
    """A candidate in org unit `org_code` applying to the demo cardiology job, with an interview
    session assigned to `interviewers`, an answer, its recording, an evaluation, a comment and a
    referral. Written directly to the store: this is the data the gate is tested against."""
    values = values or file_values(tag)
    media = f"MEDIA-{tag}-".encode() * 64
    assigned = [user_id(store, name) for name in interviewers]
    author = user_id(store, "hradmin")
    with store.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == org_code)).one()
        job = db.scalars(select(Job).order_by(Job.id)).first()
        assert job is not None
        plan = job.plans[0]
        subject = store.new_subject(db, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
        db.add(candidate)
        db.flush()
        candidate.name = values["candidates.name"]
        candidate.phone = values["candidates.phone"]
        candidate.email = values["candidates.email"]
        candidate.id_number = values["candidates.id_number"]
        candidate.address = values["candidates.address"]
        application = Application(candidate_id=candidate.id, job_id=job.id)
        db.add(application)
        db.flush()
        session = InterviewSession(
            application_id=application.id, plan_id=plan.id, interviewer_ids=assigned
        )
        db.add(session)
        db.flush()
        answer = Answer(
            session_id=session.id, question_id=plan.questions[0].id, subject_id=subject.id
        )
        comment = Comment(application_id=application.id, subject_id=subject.id, author_id=author)
        referral = Referral(candidate_id=candidate.id, subject_id=subject.id, channel="job fair")
        evaluation = Evaluation(
            application_id=application.id,
            session_id=session.id,
            subject_id=subject.id,
            evaluator_id=assigned[0] if assigned else author,
            kind="human",
            overall=4.0,
        )
        db.add_all([answer, comment, referral, evaluation])
        db.flush()
        answer.transcript = values["answers.transcript"]
        comment.body = values["comments.body"]
        referral.note = values["referrals.note"]
        evaluation.notes = values["evaluations.notes"]
        blob_id = store.blobs.put(subject.id, [media])
        recording = Recording(
            answer_id=answer.id,
            subject_id=subject.id,
            blob_id=blob_id,
            media_type="video/webm",
            size_bytes=len(media),
            complete=True,
        )
        resume = ResumeParse(
            blob_id=store.blobs.put(subject.id, [b"%PDF-1.4 resume"]),
            subject_id=subject.id,
            parser_version="test",
        )
        db.add_all([recording, resume])
        db.flush()
        resume.parsed = values["resume_parses.parsed"]
        report_id, dimension_id = _add_ai_rows(db, job, session, answer, author, values)
        return CandidateFile(
            candidate_id=candidate.id,
            subject_id=subject.id,
            application_id=application.id,
            session_id=session.id,
            answer_id=answer.id,
            recording_id=recording.id,
            evaluation_id=evaluation.id,
            comment_id=comment.id,
            referral_id=referral.id,
            report_id=report_id,
            dimension_id=dimension_id,
            values=values,
            media=media,
        )


def _add_ai_rows(
    db: Any,
    job: Job,
    session: InterviewSession,
    answer: Answer,
    author: int,
    values: dict[str, str],
) -> tuple[int, int]:
    """The rows issue #5's workers write for one answer and session, with `values` sealed."""
    subject_id = answer.subject_id
    assert job.scoring_template is not None
    dimension_id = job.scoring_template.dimensions[0].id
    analysis = AnswerAnalysis(
        answer_id=answer.id, subject_id=subject_id, status=AnalysisStatus.DONE, language="zh"
    )
    face = FaceSignals(answer_id=answer.id, subject_id=subject_id)
    expression = ExpressionSignals(answer_id=answer.id, subject_id=subject_id)
    report = ScoreReport(
        session_id=session.id, application_id=session.application_id, subject_id=subject_id
    )
    db.add_all([analysis, face, expression, report])
    db.flush()
    override = ScoreOverride(
        report_id=report.id,
        subject_id=subject_id,
        dimension_id=dimension_id,
        score=8.0,
        by_id=author,
    )
    db.add(override)
    db.flush()
    analysis.signals = values["answer_analyses.signals"]
    face.timeline = values["face_signals.timeline"]
    face.embedding = values["face_signals.embedding"]
    expression.signals = values["expression_signals.signals"]
    # The report names the template's real dimension, so the override sits beside it.
    stored = json.loads(values["score_reports.report"])
    stored["dimensions"][0]["id"] = str(dimension_id)
    stored["dimensions"][0]["answers"] = [answer.id]
    stored["dimensions"][0]["evidence"][0]["answer_id"] = answer.id
    report.report = json.dumps(stored, ensure_ascii=False)
    override.reason = values["score_overrides.reason"]
    return report.id, dimension_id


def add_session(store: Store, application_id: int, interviewers: Iterable[str]) -> int:
    """Another interview session (a second round) of an existing application."""
    assigned = [user_id(store, name) for name in interviewers]
    with store.transaction() as db:
        application = db.get(Application, application_id)
        assert application is not None
        session = InterviewSession(
            application_id=application_id,
            plan_id=application.job.plans[0].id,
            interviewer_ids=assigned,
        )
        db.add(session)
        db.flush()
        return session.id


def add_staff(store: Store, username: str, role: Role, org_code: str) -> None:
    with store.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == org_code)).one()
        user = User(username=username, display_name=username, password_hash="-")
        user.roles.append(RoleAssignment(role=role, org_unit=unit))
        db.add(user)


def pdf_text(data: bytes) -> str:
    """The text a PDF shows (pdfium's extraction), without whitespace: a PDF wraps lines and
    spaces glyphs where the source had none, so values are compared without it."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        text = "".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()
    return "".join(text.split())


def response_text(response: Any) -> str:
    """Every string a response shows, whatever its format (HTML, JSON, CSV, PDF)."""
    if response.mimetype == "application/pdf":
        return pdf_text(response.get_data())
    if response.mimetype == XLSX:
        book = load_workbook(io.BytesIO(response.get_data()), read_only=True)
        cells = (v for sheet in book for row in sheet.iter_rows(values_only=True) for v in row)
        return "\n".join(str(v) for v in cells if v is not None)
    if response.is_json:
        strings: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                strings.append(node)
            elif isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(response.get_json())
        return "\n".join(strings)
    return html.unescape(response.get_data(as_text=True))


def events_since(store: Store, seq: int) -> list[AuditEvent]:
    with store.session() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.seq > seq)))


def last_seq(store: Store) -> int:
    with store.session() as db:
        return int(db.scalar(select(func.coalesce(func.max(AuditEvent.seq), -1))) or 0)


def assert_no_values_in_audit(store: Store, values: Iterable[str]) -> None:
    """No event column (actor, role, action, subject ids, entity, fields, purpose, ip) holds
    any of `values`, in full or in part of a JSON list."""
    values = [v for v in values if v]
    with store.session() as db:
        events = list(db.scalars(select(AuditEvent)))
    assert events
    for event in events:
        columns = [
            event.actor,
            event.role,
            event.action,
            json.dumps(event.subject_ids, ensure_ascii=False),
            event.entity,
            json.dumps(event.fields, ensure_ascii=False),
            event.purpose,
            event.source_ip or "",
            event.result,
        ]
        for value in values:
            for column in columns:
                assert value not in column, f"event {event.seq} holds a personal value"


# --- the surfaces ------------------------------------------------------------------------------

SURFACES = {
    "portal": "/portal",
    "api": "/api/v1",
}


class Surface:
    """The same operations through the portal (HTML, forms) or the API (JSON)."""

    def __init__(self, client: FlaskClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def list(self) -> Any:
        return self.client.get(f"{self.prefix}/candidates")

    def open(self, candidate_id: int) -> Any:
        return self.client.get(f"{self.prefix}/candidates/{candidate_id}")

    def export(self) -> Any:
        return self.client.get(f"{self.prefix}/candidates/export.csv")

    def search(self, by: str, value: str) -> Any:
        url = f"{self.prefix}/candidates/search"
        if self.prefix == "/portal":
            return self.client.post(url, data={by: value, "csrf_token": CSRF})
        return self.client.post(url, json={by: value}, headers={"X-CSRF-Token": CSRF})

    def interview(self, session_id: int) -> Any:
        return self.client.get(f"{self.prefix}/interviews/{session_id}")

    def stream(self, recording_id: int) -> Any:
        return self.client.get(f"{self.prefix}/recordings/{recording_id}/stream")


@pytest.fixture
def sign_in(login_as: Callable[[str], FlaskClient]) -> Callable[[str, str], Surface]:
    def make(username: str, surface: str) -> Surface:
        client = login_as(username)
        with client.session_transaction() as sess:
            sess["csrf"] = CSRF
        return Surface(client, SURFACES[surface])

    return make


@pytest.fixture
def files(demo_store: Store) -> dict[str, CandidateFile]:
    """East cardiology (assigned to the interviewer), east ER and west nursing candidates,
    and an HR account of the east ER department only."""
    add_staff(demo_store, "hr.er", Role.HR, "EAST-ER")
    return {
        "east_card": add_candidate_file(demo_store, "EAST-CARD", "EastCard", ["interviewer"]),
        "east_er": add_candidate_file(demo_store, "EAST-ER", "EastEr"),
        "west": add_candidate_file(demo_store, "WEST-NURS", "WestNurs"),
    }


def _shows(response: Any, person: CandidateFile) -> bool:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return person.values["candidates.name"] in response_text(response)


def _assert_unreachable(
    store: Store, surface: Surface, username: str, person: CandidateFile
) -> None:
    """Nothing of `person` through list, open, search, export, interview or recording."""
    before = last_seq(store)
    assert not _shows(surface.list(), person)
    assert not _shows(surface.search("phone", person.values["candidates.phone"]), person)
    assert not _shows(surface.search("email", person.values["candidates.email"]), person)
    assert not _shows(surface.export(), person)
    assert surface.open(person.candidate_id).status_code == 404
    assert surface.interview(person.session_id).status_code == 404
    stream = surface.stream(person.recording_id)
    assert stream.status_code == 404
    assert person.media not in stream.get_data()

    events = events_since(store, before)
    mine = [e for e in events if e.actor == username]
    # The person was never disclosed: no allowed event names them ...
    assert not [e for e in mine if person.subject_id in e.subject_ids and e.result == "allowed"]
    # ... each refused open left a denied event naming them (ids only) ...
    denied = {(e.action, e.entity) for e in mine if e.result == "denied"}
    assert ("read", f"candidates:{person.candidate_id}") in denied
    assert ("read", f"interview_sessions:{person.session_id}") in denied
    assert ("stream", f"recordings:{person.recording_id}") in denied
    for event in mine:
        if event.result == "denied" and event.entity != "candidates":
            assert event.subject_ids == [person.subject_id]
    # ... and each search, hit or not, is on record by the field searched by.
    searches = [e for e in mine if e.action == "search"]
    assert {tuple(e.fields) for e in searches} >= {("candidates.phone",), ("candidates.email",)}


def _assert_reachable(store: Store, surface: Surface, username: str, person: CandidateFile) -> None:
    before = last_seq(store)
    assert _shows(surface.list(), person)
    assert _shows(surface.search("phone", person.values["candidates.phone"]), person)
    assert _shows(surface.search("email", person.values["candidates.email"]), person)
    assert _shows(surface.export(), person)
    assert _shows(surface.open(person.candidate_id), person)
    assert surface.interview(person.session_id).status_code == 200
    assert surface.stream(person.recording_id).get_data() == person.media
    mine = [e for e in events_since(store, before) if e.actor == username]
    actions = [e.action for e in mine if person.subject_id in e.subject_ids]
    # One event per person per read: list, 2 searches, export, open, interview, stream.
    assert sorted(actions) == sorted(
        ["list", "search", "search", "export", "read", "read", "stream"]
    )
    assert all(e.result == "allowed" for e in mine)


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_hr_of_one_branch_cannot_reach_a_candidate_of_another(
    demo_store: Store,
    files: dict[str, CandidateFile],
    sign_in: Callable[[str, str], Surface],
    surface: str,
) -> None:
    """hr.east (east branch subtree) sees east candidates and nothing of the west one."""
    hr_east = sign_in("hr.east", surface)
    _assert_reachable(demo_store, hr_east, "hr.east", files["east_card"])
    _assert_unreachable(demo_store, hr_east, "hr.east", files["west"])
    assert_no_values_in_audit(demo_store, [v for f in files.values() for v in f.values.values()])


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_hr_of_one_department_cannot_reach_a_candidate_of_another(
    demo_store: Store,
    files: dict[str, CandidateFile],
    sign_in: Callable[[str, str], Surface],
    surface: str,
) -> None:
    """HR of the east ER department: its own candidate yes; east cardiology and west, no."""
    hr_er = sign_in("hr.er", surface)
    _assert_reachable(demo_store, hr_er, "hr.er", files["east_er"])
    _assert_unreachable(demo_store, hr_er, "hr.er", files["east_card"])
    _assert_unreachable(demo_store, hr_er, "hr.er", files["west"])


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_interviewer_cannot_open_an_interview_they_are_not_assigned(
    demo_store: Store,
    files: dict[str, CandidateFile],
    sign_in: Callable[[str, str], Surface],
    surface: str,
) -> None:
    """Assigned session: open, with its answers and recording. Another candidate's session,
    and a second round of the same candidate not assigned to them: 404, answers and media too."""
    mine, other = files["east_card"], files["east_er"]
    second_round = add_session(demo_store, mine.application_id, interviewers=[])
    interviewer = sign_in("interviewer", surface)
    before = last_seq(demo_store)

    opened = interviewer.interview(mine.session_id)
    assert opened.status_code == 200
    assert mine.values["answers.transcript"] in response_text(opened)
    assert interviewer.stream(mine.recording_id).get_data() == mine.media

    for session_id in (other.session_id, second_round):
        refused = interviewer.interview(session_id)
        assert refused.status_code == 404
        assert other.values["answers.transcript"] not in response_text(refused)
    refused_media = interviewer.stream(other.recording_id)
    assert refused_media.status_code == 404
    assert other.media not in refused_media.get_data()
    assert interviewer.open(other.candidate_id).status_code == 404

    # Their list holds the candidate of their session only, and they may not search or export.
    listed = response_text(interviewer.list())
    assert mine.values["candidates.name"] in listed
    assert other.values["candidates.name"] not in listed
    assert files["west"].values["candidates.name"] not in listed
    assert interviewer.search("phone", other.values["candidates.phone"]).status_code == 403
    assert interviewer.export().status_code == 403

    events = [e for e in events_since(demo_store, before) if e.actor == "interviewer"]
    denied = {(e.entity, tuple(e.subject_ids)) for e in events if e.result == "denied"}
    assert (f"interview_sessions:{other.session_id}", (other.subject_id,)) in denied
    assert (f"interview_sessions:{second_round}", (mine.subject_id,)) in denied
    assert (f"recordings:{other.recording_id}", (other.subject_id,)) in denied
    allowed = [e for e in events if e.result == "allowed"]
    assert {(e.action, e.entity) for e in allowed} >= {
        ("read", f"interview_sessions:{mine.session_id}"),
        ("stream", f"recordings:{mine.recording_id}"),
        ("list", f"candidates:{mine.candidate_id}"),
    }
    opened_event = next(e for e in allowed if e.entity == f"interview_sessions:{mine.session_id}")
    # The interviewer's evaluation notes are theirs to write (so read); transcript and name too,
    # and what the AI derived, except expression estimates (policy: HR may see them, not they).
    assert opened_event.fields == [
        "answer_analyses.signals",
        "answers.transcript",
        "candidates.name",
        "evaluations.notes",
        "face_signals.timeline",
        "score_overrides.reason",
        "score_reports.report",
    ]
    assert opened_event.subject_ids == [mine.subject_id]
    assert opened_event.purpose == "interview_review"
    assert_no_values_in_audit(demo_store, [v for f in files.values() for v in f.values.values()])


def test_an_unknown_row_and_an_out_of_scope_row_answer_alike(
    files: dict[str, CandidateFile], sign_in: Callable[[str, str], Surface]
) -> None:
    """404 with the same body for a candidate that does not exist and one out of scope."""
    hr_east = sign_in("hr.east", "api")
    missing = hr_east.open(999_999)
    hidden = hr_east.open(files["west"].candidate_id)
    assert missing.status_code == hidden.status_code == 404
    assert missing.get_json() == hidden.get_json()


def test_admins_and_auditor_read_no_candidate_data(
    demo_store: Store, files: dict[str, CandidateFile], sign_in: Callable[[str, str], Surface]
) -> None:
    """The three administrators and the auditor get 403 on every candidate surface, recorded."""
    person = files["east_card"]
    for username in ("sysadmin", "secadmin", "auditadmin", "auditor"):
        for surface in SURFACES:
            s = sign_in(username, surface)
            before = last_seq(demo_store)
            responses = [
                s.list(),
                s.open(person.candidate_id),
                s.search("phone", person.values["candidates.phone"]),
                s.export(),
                s.interview(person.session_id),
                s.stream(person.recording_id),
            ]
            assert [r.status_code for r in responses] == [403] * 6
            for r in responses:
                assert person.values["candidates.name"] not in response_text(r)
            events = events_since(demo_store, before)
            assert len(events) == 6
            assert {e.result for e in events} == {"denied"}
            assert {e.actor for e in events} == {username}
