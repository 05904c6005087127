"""Deletion that reaches everything (issue #8, "Must show").

After a completed deletion request, none of the person's strings is anywhere: not in
any column of any table read with the box's keys (sealed columns opened with every key
that still exists), not in any blob opened with the current keys, not in the Redis
dump, not in the logs, and not in a backup taken before the deletion and restored
after it with the current keyring. The certificate verifies offline with the
standalone verifier, and the audit log still verifies. Real SQLCipher, real
redis-server, real gpg.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.backup import Credential, backup, export_keyring, restore
from appliance.records import (
    AuditEvent,
    Consent,
    DataRequest,
    Employee,
    OrgUnit,
    Recording,
    Referral,
    RequestKind,
    RequestStatus,
    Subject,
    SubjectKind,
)
from appliance.store import Store
from compliance import audit, deletion, register, requests, tokens
from compliance.actors import Actor
from tests.conftest import PASSPHRASE, Box, settings_for
from tests.privacy.privacy_helpers import (
    add_person,
    blob_texts,
    database_texts,
    file_texts,
    found,
)
from workers.jobs import JobContext, job, queue_for
from workers.privacy import canceller

VERIFIER = Path(__file__).resolve().parents[2] / "compliance" / "verify_privacy.py"
DPO = Actor(kind="system", name="cli:dpo")


@job(queue="analysis", retries=0)
def privacy_test_answer_job(ctx: JobContext, answer_id: int) -> None:
    """Stands in for an analysis job waiting in the queue with an answer's id."""


@job(queue="documents", retries=0)
def privacy_test_blob_job(ctx: JobContext, blob_id: str) -> None:
    """Stands in for a job naming a blob by its id."""


def redis_files(box: Box) -> list[Path]:
    """Everything redis-server keeps on disk after a SAVE (compression off: plain strings)."""
    box.redis.config_set("rdbcompression", "no")
    box.redis.save()
    folder = Path(str(box.redis.config_get("dir")["dir"]))
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".sock")]


def verify_offline(folder: Path) -> subprocess.CompletedProcess[str]:
    """The verifier copied alone to another folder, run by the system's Python: it needs
    nothing of Enclave HR."""
    alone = folder.parent / f"verifier-{folder.name}"
    alone.mkdir()
    shutil.copy(VERIFIER, alone / "verify_privacy.py")
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    return subprocess.run(
        [python, str(alone / "verify_privacy.py"), str(folder)],
        capture_output=True,
        text=True,
        check=False,
        cwd=alone,
    )


def test_a_completed_deletion_request_leaves_nothing_of_the_person(
    demo: Store, redis_box: Box, short_tmp: Path
) -> None:
    redis = redis_box.redis
    redis.flushdb()
    log_file = demo.data_dir / "logs" / "privacy-test.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        person = add_person(demo, "Erase")
        other = add_person(demo, "Keep")
        notice = register.publish_notice(demo, DPO, "face_analysis", "v1", "人脸分析告知 v1")
        register.record_consent(demo, DPO, person.subject_id, "face_analysis", True, notice.id)
        token = tokens.issue(demo, person.candidate_id, "interview", timedelta(days=7), DPO)
        mine = privacy_test_answer_job.enqueue(demo, redis, person.answer_id)
        theirs = privacy_test_answer_job.enqueue(demo, redis, other.answer_id)
        with demo.session() as db:
            recording_blob = db.get(Recording, person.recording_id).blob_id  # type: ignore[union-attr]
        by_blob = privacy_test_blob_job.enqueue(demo, redis, recording_blob)
        strings = person.strings()

        # Before: the scanners find every string (so their silence afterwards means something).
        assert {s for s, _ in found(strings, [*database_texts(demo), *blob_texts(demo)])} == set(
            strings
        )
        before = short_tmp / "before.backup"
        backup(demo, before)

        settings = settings_for(demo.data_dir)
        request = requests.receive(demo, settings, DPO, person.subject_id, RequestKind.DELETE, "hr")
        requests.verify_identity(demo, DPO, request.id, "id_document")
        certificate = requests.complete_delete(demo, DPO, request.id, canceller(redis, demo))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()

    # The request is completed, with its certificate; proof rows are kept (ids only).
    with demo.session() as db:
        done = db.get(DataRequest, request.id)
        assert done is not None and done.status is RequestStatus.COMPLETED
        assert done.certificate_id == certificate.id
        subject = db.get(Subject, person.subject_id)
        assert subject is not None and subject.shredded_at is not None
        assert db.scalars(select(Consent).where(Consent.subject_id == person.subject_id)).all()
    assert not demo.keyring.exists(person.subject_id)
    body = json.loads(certificate.body)
    records = body["deleted"]["records"]
    for table in (
        "candidates",
        "answers",
        "recordings",
        "face_signals",
        "expression_signals",
        "score_reports",
        "score_overrides",
        "answer_analyses",
        "equality_data",
        "resume_parses",
        "comments",
        "referrals",
        "evaluations",
        "candidate_tokens",
    ):
        assert records.get(table, 0) >= 1, table  # fmt: skip
    assert len(body["deleted"]["blobs"]) == 2
    assert sorted(body["deleted"]["queued_jobs_cancelled"]) == sorted(
        [mine.rq_job_id, by_blob.rq_job_id]
    )
    assert body["deleted"]["subject_key_destroyed"] is True

    # The other person's job still waits; the subject's are gone from Redis altogether.
    waiting = queue_for("analysis", redis).get_job_ids()
    assert theirs.rq_job_id in waiting and mine.rq_job_id not in waiting
    assert not redis.exists(f"rq:job:{mine.rq_job_id}")
    with pytest.raises(tokens.TokenRevoked):
        tokens.resolve(demo, token, "interview")

    # Nowhere: database (every table and column), blobs, Redis on disk, logs.
    assert found(strings, database_texts(demo)) == []
    assert found(strings, blob_texts(demo)) == []
    on_disk = list(file_texts(redis_files(redis_box)))
    dump = "".join(content for where, content in on_disk if where.endswith("dump.rdb"))
    assert theirs.rq_job_id in dump and mine.rq_job_id not in dump  # a real, readable dump
    assert found(strings, on_disk) == []
    logs = [
        *demo.data_dir.joinpath("logs").rglob("*"),
        *redis_box.settings.data_dir.joinpath("logs").rglob("*"),
    ]
    assert log_file.read_text(encoding="utf-8")  # the deletion did log (ids and counts)
    assert found(strings, file_texts(logs)) == []
    # The other person is untouched.
    assert {
        s for s, _ in found(other.strings(), [*database_texts(demo), *blob_texts(demo)])
    } == set(other.strings())

    # A backup from before the deletion, restored with the current keyring: still nothing.
    keyring_now = short_tmp / "keyring.now"
    export_keyring(demo, keyring_now)
    restored_dir = short_tmp / "restored"
    restored_settings = settings_for(restored_dir)
    restore(
        restored_dir,
        before,
        keyring_now,
        Credential(passphrase=PASSPHRASE),
        restored_settings.unseal_key_file,
    )
    restored = Store.open(restored_settings)
    try:
        assert found(strings, database_texts(restored)) == []
        assert found(strings, blob_texts(restored)) == []
        kept = found(other.strings(), [*database_texts(restored), *blob_texts(restored)])
        assert {s for s, _ in kept} == set(other.strings())
    finally:
        restored.close()

    # The certificate verifies offline; a changed one does not. The audit log still holds.
    folder = deletion.export_certificate(demo, certificate.id, short_tmp / "certificate")
    result = verify_offline(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL CHECKS PASSED" in result.stdout
    forged = short_tmp / "forged"
    shutil.copytree(folder, forged)
    raw = json.loads((forged / "certificate.json").read_text(encoding="utf-8"))
    raw["deleted"]["blobs"] = []
    (forged / "certificate.json").write_text(json.dumps(raw), encoding="utf-8")
    assert verify_offline(forged).returncode == 1
    checked = audit.verify_live(demo)
    assert checked.ok, checked.problem
    with demo.session() as db:
        entry = db.get(AuditEvent, certificate.audit_seq)
        assert entry is not None and entry.action == "deletion.certificate"
        assert entry.subject_ids == [person.subject_id]


def test_a_legal_hold_pauses_deletion_with_its_reason_logged(demo: Store) -> None:
    """Under a hold the request goes on hold, nothing is deleted and the pause is audited
    with the hold's id; a hold without a written ground is refused; after the release the
    deletion completes."""
    person = add_person(demo, "Held")
    settings = settings_for(demo.data_dir)
    with pytest.raises(deletion.ReasonRequired):
        deletion.place_hold(demo, DPO, person.subject_id, "  ")
    hold_id = deletion.place_hold(
        demo, DPO, person.subject_id, "labour arbitration case pending (PIPL Art. 13(3))"
    )
    request = requests.receive(demo, settings, DPO, person.subject_id, "delete", "kiosk")
    requests.verify_identity(demo, DPO, request.id, "id_document")
    with pytest.raises(deletion.LegalHoldActive):
        requests.complete_delete(demo, DPO, request.id)
    with demo.session() as db:
        held = db.get(DataRequest, request.id)
        assert held is not None and held.status is RequestStatus.ON_HOLD
        paused = db.scalars(select(AuditEvent).where(AuditEvent.action == "deletion.paused")).one()
        assert paused.fields == [f"legal_holds:{hold_id}"]
    assert demo.keyring.exists(person.subject_id)
    assert found([person.values["candidates.name"]], database_texts(demo))

    deletion.release_hold(demo, DPO, hold_id)
    certificate = requests.complete_delete(demo, DPO, request.id)
    assert certificate.request_id == request.id
    assert found(person.strings(), database_texts(demo)) == []


def test_erasing_an_employee_leaves_other_peoples_rows_and_detaches_them(demo: Store) -> None:
    """The candidate an erased employee referred keeps their referral (it is theirs), with
    the reference to the employee gone; the employee's own strings are nowhere."""
    candidate = add_person(demo, "Referred")
    with demo.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == "EAST-CARD")).one()
        subject = demo.new_subject(db, SubjectKind.EMPLOYEE)
        employee = Employee(subject_id=subject.id, org_unit_id=unit.id, employee_no="E-7")
        db.add(employee)
        db.flush()
        employee.name, employee.phone = "司马员工乙", "13600007777"
        referral = db.scalars(
            select(Referral).where(Referral.subject_id == candidate.subject_id)
        ).one()
        referral.referrer_employee_id = employee.id
        employee_subject, referral_id = subject.id, referral.id

    certificate = deletion.erase_subject(demo, DPO, employee_subject, "PIPL Art. 47(1)(1)")

    body = json.loads(certificate.body)
    assert body["deleted"]["records"] == {"employees": 1}
    assert body["deleted"]["references_detached"] == {"referrals.referrer_employee_id": 1}
    assert found(["司马员工乙", "13600007777"], database_texts(demo)) == []
    with demo.session() as db:
        referral = db.get(Referral, referral_id)
        assert referral is not None and referral.referrer_employee_id is None
        assert referral.note == candidate.values["referrals.note"]
