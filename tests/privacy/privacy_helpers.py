"""Builders and scanners for the privacy tests: a candidate with something in every
personal table, and readers that look for their strings everywhere the box keeps data."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, text

from appliance import crypto
from appliance.errors import SubjectKeyDestroyed
from appliance.personal import PersonalField
from appliance.records import (
    Answer,
    AnswerAnalysis,
    Application,
    Candidate,
    Comment,
    EqualityData,
    Evaluation,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    Job,
    OrgUnit,
    Recording,
    Referral,
    ResumeParse,
    ScoreOverride,
    ScoreReport,
    SubjectKind,
    User,
)
from appliance.store import Store


@dataclass
class Person:
    subject_id: str
    candidate_id: int
    application_id: int
    session_id: int
    answer_id: int
    recording_id: int
    values: dict[str, str]
    media: bytes

    def strings(self) -> list[str]:
        """Every personal string of the person (and a piece of their recording)."""
        return [*self.values.values(), self.media[:24].decode()]


def person_values(tag: str) -> dict[str, str]:
    digits = f"{zlib.crc32(tag.encode()) % 10**8:08d}"
    return {
        "candidates.name": f"欧阳{tag}明",
        "candidates.phone": f"139{digits}",
        "candidates.email": f"{tag.lower()}.erase@example.org",
        "candidates.id_number": f"1101011990{digits}",
        "candidates.address": f"北京市{tag}路{digits[:3]}号",
        "comments.body": f"评语{tag}沉稳可靠",
        "referrals.note": f"推荐人说明{tag}",
        "answers.transcript": f"我先核对医嘱{tag}再上报",
        "evaluations.notes": f"评价记录{tag}清楚",
        "resume_parses.parsed": json.dumps({"skill": f"心电图判读{tag}"}, ensure_ascii=False),
        "answer_analyses.signals": json.dumps({"note": f"语速信号{tag}"}, ensure_ascii=False),
        "face_signals.timeline": json.dumps({"file": f"人脸时间线{tag}"}, ensure_ascii=False),
        "face_signals.embedding": f"[0.{digits}1, -0.{digits}2]",
        "expression_signals.signals": json.dumps({"note": f"表情{tag}信号"}, ensure_ascii=False),
        "score_reports.report": json.dumps(
            {"summary": f"报告摘要{tag}", "overall": 3.5}, ensure_ascii=False
        ),
        "score_overrides.reason": f"调整理由{tag}充分",
        "equality_data.categories": json.dumps(
            {"sex": f"性别{tag}", "birth_year": "1990"}, ensure_ascii=False
        ),
    }


def add_person(store: Store, tag: str, org_code: str = "EAST-CARD") -> Person:
    """A candidate of the demo hospital with a row in every personal table, a recording
    and a resume blob, and the AI's results (written directly, as the workers would)."""
    values = person_values(tag)
    media = f"MEDIA-{tag}-bytes-of-the-recording-".encode() * 32
    with store.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == org_code)).one()
        job = db.scalars(select(Job).order_by(Job.id)).first()
        author = db.scalars(select(User.id).where(User.username == "hradmin")).one()
        assert job is not None and job.scoring_template is not None
        subject = store.new_subject(db, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
        db.add(candidate)
        db.flush()
        for name in ("name", "phone", "email", "id_number", "address"):
            setattr(candidate, name, values[f"candidates.{name}"])
        application = Application(candidate_id=candidate.id, job_id=job.id)
        db.add(application)
        db.flush()
        session = InterviewSession(application_id=application.id, plan_id=job.plans[0].id)
        db.add(session)
        db.flush()
        sid = subject.id
        answer = Answer(
            session_id=session.id, question_id=job.plans[0].questions[0].id, subject_id=sid
        )
        comment = Comment(application_id=application.id, subject_id=sid, author_id=author)
        referral = Referral(candidate_id=candidate.id, subject_id=sid, channel="job fair")
        evaluation = Evaluation(
            application_id=application.id, session_id=session.id, subject_id=sid,
            evaluator_id=author, kind="human", overall=4.0,
        )  # fmt: skip
        report = ScoreReport(session_id=session.id, application_id=application.id, subject_id=sid)
        equality = EqualityData(subject_id=sid)
        db.add_all([answer, comment, referral, evaluation, report, equality])
        db.flush()
        analysis = AnswerAnalysis(answer_id=answer.id, subject_id=sid)
        face = FaceSignals(answer_id=answer.id, subject_id=sid)
        expression = ExpressionSignals(answer_id=answer.id, subject_id=sid)
        override = ScoreOverride(
            report_id=report.id,
            subject_id=sid,
            dimension_id=job.scoring_template.dimensions[0].id,
            score=4.0,
            by_id=author,
        )
        recording = Recording(
            answer_id=answer.id,
            subject_id=sid,
            blob_id=store.blobs.put(sid, [media]),
            media_type="video/webm",
            size_bytes=len(media),
            complete=True,
        )
        resume = ResumeParse(
            blob_id=store.blobs.put(
                sid, [f"%PDF-1.4 resume of {values['candidates.name']}".encode()]
            ),
            subject_id=sid,
            parser_version="test",
        )
        db.add_all([analysis, face, expression, override, recording, resume])
        db.flush()
        answer.transcript = values["answers.transcript"]
        comment.body = values["comments.body"]
        referral.note = values["referrals.note"]
        evaluation.notes = values["evaluations.notes"]
        report.report = values["score_reports.report"]
        equality.categories = values["equality_data.categories"]
        analysis.signals = values["answer_analyses.signals"]
        face.timeline = values["face_signals.timeline"]
        face.embedding = values["face_signals.embedding"]
        expression.signals = values["expression_signals.signals"]
        override.reason = values["score_overrides.reason"]
        resume.parsed = values["resume_parses.parsed"]
        return Person(
            sid, candidate.id, application.id, session.id, answer.id, recording.id, values, media
        )


# --- looking everywhere -----------------------------------------------------------------


def _wheres() -> list[str]:
    return sorted({pf.where for _owner, pf in PersonalField.registry})


def database_texts(store: Store) -> Iterator[tuple[str, str]]:
    """(where, text) for every cell of every table, read with the box's database key; every
    binary cell also opened with every subject key that still exists, under every field's
    associated data (whatever still decrypts is read)."""
    keys = {sid: store.keyring.data_key(sid) for sid in store.keyring.subject_ids()}
    wheres = _wheres()
    with store.engine.connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        ]
        for table in tables:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for value in row:
                    if value is None:
                        continue
                    if isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        yield table, raw.decode("utf-8", "replace")
                        yield from _opened(table, raw, keys, wheres)
                    else:
                        yield table, str(value)


def _opened(
    table: str, raw: bytes, keys: dict[str, bytes], wheres: list[str]
) -> Iterator[tuple[str, str]]:
    for sid, key in keys.items():
        for where in wheres:
            aad = f"enclave:field:{where}:{sid}".encode()
            try:
                plain = crypto.open_sealed(key, raw, aad)
            except Exception:  # noqa: S112 (not sealed under this key and place)
                continue
            yield f"{table} ({where}, opened)", plain.decode("utf-8", "replace")


def blob_texts(store: Store) -> Iterator[tuple[str, str]]:
    """Every blob's file bytes, and its plaintext where the current keys still open it."""
    for blob_id in store.blobs.blob_ids():
        path = store.blobs.root / blob_id[:2] / blob_id
        yield f"blob {blob_id} (file)", path.read_bytes().decode("utf-8", "replace")
        try:
            plain = store.blobs.read_bytes(blob_id)
        except SubjectKeyDestroyed:
            continue
        yield f"blob {blob_id}", plain.decode("utf-8", "replace")


def file_texts(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        if path.is_file():
            yield str(path), path.read_bytes().decode("utf-8", "replace")


def found(strings: Iterable[str], texts: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(string, where) for every personal string found in the texts."""
    wanted = [s for s in strings if s]
    hits = []
    for where, content in texts:
        for value in wanted:
            if value in content:
                hits.append((value, where))
    return hits
