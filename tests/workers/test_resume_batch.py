"""Batch screening on the `documents` queue: blob ids in, every file parsed, duplicates grouped."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from appliance.store import Store
from workers.jobs import JobContext, get_job_logger
from workers.resumes.jobs import find_duplicates, screen_documents, screen_resumes
from workers.resumes.sandbox import ResumeParser

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "resumes"


def test_screen_job_is_a_documents_job_with_ids_only() -> None:
    """The job is declared on the documents queue; its payload is ids (checked at enqueue)."""
    assert screen_resumes.spec.queue == "documents"


def test_batch_reads_encrypted_blobs_reports_progress_and_finds_duplicates(store: Store) -> None:
    """Resumes stored as encrypted blobs are parsed; a bad one fails alone; the same person
    uploaded twice (PDF and a renamed copy) is one duplicate group."""
    subject = uuid.uuid4().hex
    store.keyring.create(subject)
    files = ["zh_04.pdf", "en_03.txt", "zh_07.docx", "zh_04.pdf", "bad/exe_renamed.pdf"]
    ids = [store.blobs.put(subject, [(FIXTURES / f).read_bytes()]) for f in files]
    seen: list[float] = []

    def read(blob_id: str) -> bytes:
        with store.blobs.open(blob_id) as reader:
            return bytes(reader.read())

    with ResumeParser() as parser:
        report = screen_documents(ids, read, parser, seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert report.failed == [ids[4]]
    assert "Windows executable" in report.results[ids[4]]["error"]
    assert report.results[ids[0]]["name"] == "周婧怡"
    assert report.duplicates == [sorted([ids[0], ids[3]])]


def test_job_saves_sealed_parses_through_the_gate(store: Store) -> None:
    """The job stores one row per file: parsed fields readable only with the subject's key,
    errors and duplicate groups in the clear, and one audit event naming every subject."""
    from sqlalchemy import select

    from appliance.records import AuditEvent, JobRun, ResumeParse, RunStatus, SubjectKind

    with store.transaction() as session:
        subjects = [store.new_subject(session, SubjectKind.CANDIDATE).id for _ in range(3)]
    files = [
        (subjects[0], "en_03.txt"),
        (subjects[1], "en_03.txt"),
        (subjects[2], "bad/exe_renamed.pdf"),
    ]
    blobs = [store.blobs.put(sid, [(FIXTURES / f).read_bytes()]) for sid, f in files]
    with store.transaction() as session:
        run = JobRun(
            rq_job_id=uuid.uuid4().hex,
            name=screen_resumes.name,
            queue="documents",
            status=RunStatus.RUNNING,
            progress=0.0,
            attempts=1,
        )
        session.add(run)
        session.flush()
        run_id, rq_id = run.id, run.rq_job_id
    ctx = JobContext(
        store=store, run_id=run_id, rq_job_id=rq_id, logger=get_job_logger("test", rq_id)
    )
    screen_resumes(ctx, *blobs)

    with store.session() as session:
        assert session.get(JobRun, run_id).progress == 1.0
        rows = {r.blob_id: r for r in session.scalars(select(ResumeParse))}
        good, twin, bad = (rows[b] for b in blobs)
        parsed = json.loads(good.parsed)
        assert parsed["email"] and parsed["error"] is None
        assert good.duplicate_group == twin.duplicate_group == min(blobs[0], blobs[1])
        assert bad.parsed is None and "Windows executable" in bad.error
        events = session.scalars(select(AuditEvent).where(AuditEvent.actor == f"job:{rq_id}")).all()
    assert [(e.action, e.result) for e in events] == [("update", "allowed")]
    assert sorted(events[0].subject_ids) == sorted(subjects[:2])
    assert events[0].fields == ["resume_parses.parsed"]
    store.keyring.destroy(subjects[0])
    with store.session() as session:
        assert str(session.get(ResumeParse, good.id).parsed) == "[unavailable]"


def test_duplicates_by_phone_email_or_name_and_school() -> None:
    results = {
        "a": {"email": "X@example.com", "phone": None, "name": "A", "education": []},
        "b": {"email": "x@example.com", "phone": "13800000001", "name": "B", "education": []},
        "c": {"email": None, "phone": "13800000001", "name": "C", "education": []},
        "d": {"email": None, "phone": None, "name": "张三", "education": [{"school": "甲大学"}]},
        "e": {"email": None, "phone": None, "name": "张三", "education": [{"school": "甲大学"}]},
        "f": {"email": None, "phone": None, "name": "张三", "education": [{"school": "乙大学"}]},
    }
    assert find_duplicates(results) == [["a", "b", "c"], ["d", "e"]]
