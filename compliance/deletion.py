"""Deletion that reaches everything, and the certificate that proves it (PIPL Art. 47,
GDPR Art. 17, 820 ILCS 42/15).

`erase_subject` removes one person from the box:

1. a legal hold (an ongoing dispute, an investigation) pauses it: nothing is
   deleted, the pause is audited with the hold's id, `LegalHoldActive` is raised;
2. every row about them, found by following foreign keys from every table that has a
   `subject_id` (applications, sessions, answers with their transcripts, recordings,
   evaluations, comments, referrals, parsed resumes, the issue #5 signals, embeddings
   and score reports, equality data, the candidate row itself) and the candidate's
   link tokens. A table added later with a `subject_id` or a foreign key into these
   is reached without changing this file;
3. their queued jobs (through the `cancel_jobs` hook the caller passes: Redis is the
   workers' business; `workers.privacy.cancel_subject_jobs` is the one to pass);
4. their data key: every field still sealed under it, anywhere, and every copy of
   their blobs in every backup becomes unreadable (backups never carry the subject
   keyring), and their blind-index search entries are cleared (`Store.shred_subject`);
5. their blobs (recordings, resumes, request copies), found through the rows and by
   the owner named in each blob's header, so an orphan blob goes too;
6. a deletion certificate: what was deleted (tables and counts, blob and job ids),
   when and by whom, entered in the audit log, then signed with the box's GPG key,
   with the audit event's inclusion proof in a signed checkpoint so that it verifies
   offline (`compliance/verify_privacy.py`).

What is kept, as the law's proof: the `subjects` row (an id, a kind, dates), consents
(who agreed to what notice, when), data requests, legal holds, certificates, and the
audit log. They hold ids, dates and field names, never a value of the person.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from appliance.blobs import BlobStore
from appliance.errors import ApplianceError, BlobNotFound, IntegrityError
from appliance.records import (
    Base,
    BoxInfo,
    Candidate,
    CandidateToken,
    DataRequest,
    DeletionCertificate,
    LegalHold,
    Subject,
    new_uuid,
    utcnow,
)
from appliance.store import Store
from compliance import audit
from compliance.actors import Actor

log = logging.getLogger(__name__)

FORMAT = "enclave-hr-deletion-certificate/1"
CERTIFICATE_ACTION = "deletion.certificate"
MIN_REASON = 10
"""Characters a legal hold's or a refusal's written ground needs at least."""

KEPT_TABLES = frozenset(
    {
        "subjects",
        "consents",
        "data_requests",
        "legal_holds",
        "deletion_certificates",
        "audit_events",
        "audit_checkpoints",
        "job_runs",
    }
)
"""Proof the law asks for, holding ids, dates and names only: never deleted here."""

# References without a foreign key (the token table names its candidate by id only).
_LOOSE_REFERENCES: tuple[tuple[str, str, str], ...] = (
    ("candidate_tokens", "candidate_id", "candidates"),
)


class LegalHoldActive(ApplianceError):
    """A legal hold pauses this deletion; release it (with its ground) to go on."""


class ReasonRequired(ApplianceError):
    """A refusal or a legal hold needs its ground in writing."""

    exit_code = 2


def require_reason(reason: str | None, what: str) -> str:
    """The written ground, stripped; ReasonRequired when it is missing or too short."""
    text = (reason or "").strip()
    if len(text) < MIN_REASON:
        raise ReasonRequired(
            f"{what} needs a written reason of at least {MIN_REASON} characters: cite the "
            "legal ground (e.g. the law and article) and why; no personal details"
        )
    return text


@dataclass
class Footprint:
    """Everything stored about one subject: row ids per table, blob ids, and what is kept."""

    subject_id: str
    rows: dict[str, list[Any]] = field(default_factory=dict)
    blob_ids: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    purpose: str | None = None
    """Set when only one consent was withdrawn: cancel that purpose's jobs, not all."""
    detach: dict[str, list[Any]] = field(default_factory=dict)
    """`table.column` -> ids of other subjects' rows whose reference to theirs goes NULL."""

    def ids(self, table: str) -> list[Any]:
        return self.rows.get(table, [])

    def counts(self) -> dict[str, int]:
        return {t: len(ids) for t, ids in sorted(self.rows.items()) if ids}


JobCanceller = Callable[[Footprint], list[str]]
"""Cancels the subject's queued jobs and returns their ids (`workers.privacy`)."""


# --- finding everything ---------------------------------------------------------------


def _pk(table: Table) -> Any:
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        raise ValueError(f"{table.name}: deletion needs a single-column primary key")
    return columns[0]


def _select_ids(db: Session, table: Table, column: Any, values: Iterable[Any]) -> set[Any]:
    values = list(values)
    found: set[Any] = set()
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        found.update(db.scalars(select(_pk(table)).where(column.in_(chunk))))
    return found


def footprint(db: Session, subject_id: str, blobs: BlobStore | None = None) -> Footprint:
    """Every row about the subject: tables with their `subject_id`, then whatever points at
    those rows through a foreign key, to a fixpoint. A row of *another* subject pointing at
    theirs (a referral an erased employee made) is not theirs to delete: it is detached
    (the reference set to NULL). Kept tables are counted, not listed."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    found: dict[str, set[Any]] = {}
    detach: dict[tuple[str, str], set[Any]] = {}
    for name, table in tables.items():
        if name in KEPT_TABLES or "subject_id" not in table.c:
            continue
        found[name] = _select_ids(db, table, table.c.subject_id, [subject_id])
    changed = True
    while changed:
        changed = False
        for name, table in tables.items():
            if name in KEPT_TABLES:
                continue
            links = [(fk.parent, fk.column.table.name) for fk in table.foreign_keys]
            links += [(table.c[col], target) for t, col, target in _LOOSE_REFERENCES if t == name]
            for column, target in links:
                targets = found.get(target)
                if not targets or target == name:
                    continue
                pointing = _select_ids(db, table, column, targets)
                if "subject_id" in table.c:
                    theirs = pointing - _select_ids(db, table, table.c.subject_id, [subject_id])
                    if theirs:
                        detach.setdefault((name, column.name), set()).update(theirs)
                    pointing -= theirs
                new = pointing - found.get(name, set())
                if new:
                    found.setdefault(name, set()).update(new)
                    changed = True
    result = Footprint(subject_id, {n: sorted(ids) for n, ids in found.items() if ids})
    result.detach = {f"{t}.{c}": sorted(ids) for (t, c), ids in sorted(detach.items())}
    result.blob_ids = sorted(_blob_ids(db, tables, result) | _blobs_by_header(blobs, subject_id))
    for name in sorted(KEPT_TABLES):
        kept = tables.get(name)
        if kept is not None and "subject_id" in kept.c:
            count = db.scalar(
                select(func.count()).select_from(kept).where(kept.c.subject_id == subject_id)
            )
            if count:
                result.kept[name] = int(count)
    return result


def _blob_ids(db: Session, tables: dict[str, Table], fp: Footprint) -> set[str]:
    """Blob ids named by the subject's rows (any `blob_id` / `*_blob_id` column)."""
    blob_ids: set[str] = set()
    for name, table in tables.items():
        columns = [c for c in table.c if c.name == "blob_id" or c.name.endswith("_blob_id")]
        if not columns:
            continue
        if name in fp.rows:
            where = _pk(table).in_(fp.rows[name])
        elif "subject_id" in table.c:
            where = table.c.subject_id == fp.subject_id
        else:
            continue
        for column in columns:
            blob_ids.update(v for v in db.scalars(select(column).where(where)) if v)
    return blob_ids


def _blobs_by_header(blobs: BlobStore | None, subject_id: str) -> set[str]:
    """Blobs whose header names the subject as owner, whether a row points at them or not."""
    if blobs is None:
        return set()
    owned: set[str] = set()
    for blob_id in blobs.blob_ids():
        try:
            if blobs.subject_of(blob_id) == subject_id:
                owned.add(blob_id)
        except (BlobNotFound, IntegrityError):
            continue  # deleted meanwhile, or not a blob: nothing of the subject's to find
    return owned


# --- legal holds ----------------------------------------------------------------------


def active_holds(db: Session, subject_id: str) -> list[LegalHold]:
    return list(
        db.scalars(
            select(LegalHold)
            .where(LegalHold.subject_id == subject_id, LegalHold.released_at.is_(None))
            .order_by(LegalHold.id)
        )
    )


def place_hold(store: Store, actor: Actor, subject_id: str, reason: str) -> int:
    """Pause every deletion of the subject until released; the ground is required."""
    text = require_reason(reason, "a legal hold")
    with store.transaction() as db:
        if db.get(Subject, subject_id) is None:
            raise ValueError(f"no subject {subject_id}")
        hold = LegalHold(subject_id=subject_id, reason=text, placed_by=actor.name)
        db.add(hold)
        db.flush()
        hold_id = hold.id
    audit.record(
        store,
        actor,
        "hold.place",
        f"legal_holds:{hold_id}",
        "data_request",
        subject_ids=[subject_id],
    )
    return hold_id


def release_hold(store: Store, actor: Actor, hold_id: int) -> None:
    with store.transaction() as db:
        hold = db.get(LegalHold, hold_id)
        if hold is None or hold.released_at is not None:
            raise ValueError(f"no active legal hold {hold_id}")
        hold.released_at, hold.released_by = utcnow(), actor.name
        subject_id = hold.subject_id
    audit.record(
        store,
        actor,
        "hold.release",
        f"legal_holds:{hold_id}",
        "data_request",
        subject_ids=[subject_id],
    )


# --- erasing --------------------------------------------------------------------------


def delete_rows(db: Session, rows: dict[str, list[Any]]) -> dict[str, int]:
    """Delete the listed rows, children before parents (reverse foreign-key order)."""
    deleted: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        ids = rows.get(table.name)
        if not ids:
            continue
        pk = _pk(table)
        for start in range(0, len(ids), 500):
            db.execute(delete(table).where(pk.in_(ids[start : start + 500])))
        deleted[table.name] = len(ids)
    return deleted


def detach_rows(db: Session, detach: dict[str, list[Any]]) -> dict[str, int]:
    """Set to NULL the references other subjects' rows hold to the rows being deleted; a
    reference that cannot be NULL means the row cannot outlive the subject's: refuse."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    done: dict[str, int] = {}
    for where, ids in detach.items():
        name, _, column_name = where.partition(".")
        table = tables[name]
        column = table.c[column_name]
        if not column.nullable:
            raise IntegrityError(
                f"{len(ids)} row(s) of {name} of another subject need this subject's rows "
                f"({column_name}); resolve them before the deletion"
            )
        pk = _pk(table)
        db.execute(update(table).where(pk.in_(ids)).values({column_name: None}))
        done[where] = len(ids)
    return done


def delete_blobs(store: Store, blob_ids: Iterable[str]) -> int:
    gone = 0
    for blob_id in blob_ids:
        try:
            store.blobs.delete(blob_id)
            gone += 1
        except (BlobNotFound, FileNotFoundError):
            continue
    return gone


def erase_subject(
    store: Store,
    actor: Actor,
    subject_id: str,
    basis: str,
    request_id: int | None = None,
    cancel_jobs: JobCanceller | None = None,
) -> DeletionCertificate:
    """Delete everything about the subject and return the signed certificate.

    `basis`: the legal ground, e.g. "PIPL Art. 47(1)(3): consent withdrawn". Raises
    LegalHoldActive (recorded, nothing deleted) while a hold stands. Running it again
    for an erased subject finds nothing left and certifies that.
    """
    with store.session() as db:
        subject = db.get(Subject, subject_id)
        if subject is None:
            raise ValueError(f"no subject {subject_id}")
        kind = subject.kind.value
        holds = [h.id for h in active_holds(db, subject_id)]
        merged = merged_subjects(db, subject_id)
    if holds:
        audit.record(
            store,
            actor,
            "deletion.paused",
            f"subjects:{subject_id}",
            "data_request",
            subject_ids=[subject_id],
            fields=[f"legal_holds:{h}" for h in holds],
        )
        raise LegalHoldActive(
            f"subject {subject_id} is under legal hold {', '.join(map(str, holds))}; "
            "the deletion is paused until the hold is released"
        )
    # Records merged into this one (issue 6) keep their own key for the files sealed under
    # it; erasing the person shreds those keys too, each with its own certificate.
    for merged_id in merged:
        erase_subject(store, actor, merged_id, basis, request_id, cancel_jobs)
    audit.record(
        store,
        actor,
        "deletion.start",
        f"subjects:{subject_id}",
        "data_request",
        subject_ids=[subject_id],
    )
    started = utcnow()
    with store.session() as db:
        queued = footprint(db, subject_id)
    cancelled = sorted(cancel_jobs(queued)) if cancel_jobs is not None else []
    # Found again under the write lock (BEGIN IMMEDIATE): a job that wrote a row since the
    # first look cannot slip in between finding and deleting.
    with store.session() as db:
        db.connection(execution_options={"begin": "IMMEDIATE"})
        fp = footprint(db, subject_id, store.blobs)
        _revoke_tokens(db, fp)
        detached = detach_rows(db, fp.detach)
        deleted = delete_rows(db, fp.rows)
        db.execute(
            update(DataRequest)
            .where(DataRequest.subject_id == subject_id)
            .values(bundle_blob_id=None)
        )
        store.shred_subject(db, subject_id)
        db.commit()
    blobs_gone = delete_blobs(store, fp.blob_ids)
    log.info(
        "erased subject %s: %d rows in %d tables, %d blobs, %d queued jobs",
        subject_id,
        sum(deleted.values()),
        len(deleted),
        blobs_gone,
        len(cancelled),
    )
    summary = {
        "records": deleted,
        "references_detached": detached,
        "blobs": fp.blob_ids,
        "queued_jobs_cancelled": cancelled,
        "subject_key_destroyed": not store.keyring.exists(subject_id),
        "blind_indexes_cleared": True,
    }
    return issue_certificate(
        store, actor, subject_id, kind, basis, request_id, started, summary, fp.kept
    )


def merged_subjects(db: Session, subject_id: str) -> list[str]:
    """Subjects of candidate records merged into this subject's record (not yet erased)."""
    from appliance.records import Candidate
    from appliance.records.pipeline import CandidateMerge

    rows = db.scalars(
        select(CandidateMerge.merged_subject_id)
        .join(Candidate, Candidate.id == CandidateMerge.survivor_id)
        .where(Candidate.subject_id == subject_id)
    )
    return sorted({sid for sid in rows if sid != subject_id and _not_shredded(db, sid)})


def _not_shredded(db: Session, subject_id: str) -> bool:
    subject = db.get(Subject, subject_id)
    return subject is not None and subject.shredded_at is None


def _revoke_tokens(db: Session, fp: Footprint) -> None:
    """Tokens are deleted with the rows; nothing to keep of a link to erased data."""
    candidate_ids = fp.ids(Candidate.__tablename__)
    if candidate_ids:
        rows = db.scalars(
            select(CandidateToken.id).where(CandidateToken.candidate_id.in_(candidate_ids))
        )
        fp.rows.setdefault(CandidateToken.__tablename__, [])
        known = set(fp.rows[CandidateToken.__tablename__])
        fp.rows[CandidateToken.__tablename__] += [t for t in rows if t not in known]


# --- the certificate ------------------------------------------------------------------


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def issue_certificate(
    store: Store,
    actor: Actor,
    subject_id: str,
    subject_kind: str,
    basis: str,
    request_id: int | None,
    started: Any,
    deleted: dict[str, Any],
    kept: dict[str, int],
) -> DeletionCertificate:
    """Enter the certificate in the audit log, seal the log, then sign the whole body."""
    signer = audit.signer_for(store)
    with store.session() as db:
        info = db.get(BoxInfo, 1)
        box_id = info.box_id if info is not None else None
    cert = DeletionCertificate(id=new_uuid(), subject_id=subject_id, request_id=request_id)
    core = {
        "format": FORMAT,
        "certificate_id": cert.id,
        "box_id": box_id,
        "box_key_fingerprint": signer.fingerprint,
        "subject_id": subject_id,
        "subject_kind": subject_kind,
        "request_id": request_id,
        "basis": basis,
        "started_at": audit.format_time(started),
        "deleted_at": audit.format_time(utcnow()),
        "issued_by": actor.name,
        "deleted": deleted,
        "backups": (
            "The subject's data key is destroyed. Backups never hold the subject keyring and "
            "are restored with the current one, so their copies of this subject's fields and "
            "files cannot be opened again (crypto-shredding, PIPL Art. 47)."
        ),
        "kept": {
            **kept,
            "note": "kept as proof: ids, dates and field names only, never a value",
        },
    }
    core_sha = hashlib.sha256(canonical(core)).hexdigest()
    seq = audit.record(
        store,
        actor,
        CERTIFICATE_ACTION,
        f"deletion_certificates:{cert.id}",
        "data_request",
        subject_ids=[subject_id],
        fields=[f"certificate.sha256:{core_sha}"],
    )
    checkpoint = audit.checkpoint_now(store)
    if checkpoint is None:  # not reachable: the event above is in the log
        raise audit.AuditIntegrityError("the audit log is empty")
    proof = audit.inclusion_proof(store, seq, checkpoint.size)
    event = next(audit.iter_stored_events(store, seq, seq + 1))
    if event.data is None or not proof.verify():
        raise IntegrityError(f"audit event {seq} of the certificate does not verify")
    body = {
        **core,
        "audit": {
            "seq": seq,
            "event": event.data.decode("utf-8"),
            "core_sha256": core_sha,
            "inclusion_path": [h.hex() for h in proof.path],
            "checkpoint": checkpoint.as_dict(),
        },
    }
    raw = canonical(body)
    cert.body = raw.decode("utf-8")
    cert.signature = signer.sign_detached(raw)
    cert.issued_by = actor.name
    cert.issued_at = utcnow()
    cert.audit_seq = seq
    with store.transaction() as db:
        db.add(cert)
        if request_id is not None:
            request = db.get(DataRequest, request_id)
            if request is not None:
                request.certificate_id = cert.id
    return cert


def export_certificate(store: Store, certificate_id: str, out_dir: Path) -> Path:
    """Write the certificate folder an auditor or the person takes away:
    certificate.json (the signed bytes), certificate.json.asc, box-public-key.asc."""
    with store.session() as db:
        cert = db.get(DeletionCertificate, certificate_id)
        if cert is None:
            raise ValueError(f"no deletion certificate {certificate_id}")
        body, signature = cert.body, cert.signature
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; give a new folder")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out_dir / "certificate.json").write_bytes(body.encode("utf-8"))
    (out_dir / "certificate.json.asc").write_text(signature)
    (out_dir / "box-public-key.asc").write_text(audit.signer_for(store).export_public_key())
    return out_dir
