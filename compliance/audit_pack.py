"""The audit pack: what the DPO hands an auditor, signed with the box's key.

A folder:

    processing_record.json / .md   the record of processing activities (generated)
    impact_assessments.json        every assessment (PIPL Art. 55-56)
    consents.json                  notice texts in force and retired, consent statistics
    requests.json                  data-subject request statistics (on time, late, open)
    retention_runs.json            every retention run (dry or not) and its results
    deletion_certificates.json     every certificate (ids, counts, audit seq, signature)
    bias_audits.json               every bias audit's aggregate results
    models.json                    model versions the AI results name
    jurisdiction.json              the profile in force and every change of it
    box-public-key.asc             the box's OpenPGP key
    manifest.json                  sha256 of each file, the audit log's newest signed
                                   checkpoint (sealing the pack's own audit event)
    manifest.json.asc              the box's detached signature over manifest.json

Nothing in it is a person's value: ids, counts, dates, texts written for everyone.
Check it offline with `python3 compliance/verify_privacy.py <folder>`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from appliance.records import (
    AnswerAnalysis,
    BiasAudit,
    DeletionCertificate,
    ExpressionSignals,
    FaceSignals,
    JurisdictionChange,
    NoticeText,
    RetentionRun,
    ScoreReport,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance import audit, pia, processing_record, profiles, register, requests
from compliance.actors import Actor

FORMAT = "enclave-hr-audit-pack/1"


def _json(obj: Any) -> bytes:
    return (
        json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
    ).encode()


def _time(value: Any) -> str | None:
    return None if value is None else audit.format_time(value)


def contents(store: Store, settings: Settings) -> dict[str, bytes]:
    """The pack's files (not yet signed)."""
    with store.session() as db:
        record = processing_record.build(settings, db)
        notices = [
            {
                "purpose": n.purpose,
                "version": n.version,
                "language": n.language,
                "sha256": n.sha256,
                "published_at": _time(n.published_at),
                "published_by": n.published_by,
                "retired_at": _time(n.retired_at),
                "text": n.body,
            }
            for n in db.scalars(select(NoticeText).order_by(NoticeText.id))
        ]
        runs = [
            {
                "id": r.id,
                "started_at": _time(r.started_at),
                "finished_at": _time(r.finished_at),
                "dry_run": r.dry_run,
                "actor": r.actor,
                "results": r.results,
                "error": r.error,
            }
            for r in db.scalars(select(RetentionRun).order_by(RetentionRun.id))
        ]
        certificates = [
            {
                "id": c.id,
                "subject_id": c.subject_id,
                "request_id": c.request_id,
                "issued_at": _time(c.issued_at),
                "issued_by": c.issued_by,
                "audit_seq": c.audit_seq,
                "body": json.loads(c.body),
                "signature": c.signature,
            }
            for c in db.scalars(select(DeletionCertificate).order_by(DeletionCertificate.issued_at))
        ]
        audits = [
            {"id": b.id, "made_at": _time(b.made_at), "made_by": b.made_by, "scope": b.scope,
             "results": b.results}
            for b in db.scalars(select(BiasAudit).order_by(BiasAudit.id))
        ]  # fmt: skip
        models: dict[str, set[str]] = {}
        for model in (AnswerAnalysis, FaceSignals, ExpressionSignals, ScoreReport):
            for versions in db.scalars(select(model.model_versions)):
                for name, version in (versions or {}).items():
                    text = version if isinstance(version, str) else json.dumps(version)
                    models.setdefault(str(name), set()).add(text)
        changes = [
            {"at": _time(c.at), "from": c.from_profile, "to": c.to_profile, "actor": c.actor}
            for c in db.scalars(select(JurisdictionChange).order_by(JurisdictionChange.id))
        ]
        files = {
            "processing_record.json": _json(record),
            "processing_record.md": processing_record.to_markdown(record).encode(),
            "impact_assessments.json": _json(pia.listing(db)),
            "consents.json": _json({"notices": notices, "statistics": register.statistics(db)}),
            "requests.json": _json(requests.statistics(db)),
            "retention_runs.json": _json(runs),
            "deletion_certificates.json": _json(certificates),
            "bias_audits.json": _json(audits),
            "models.json": _json({name: sorted(values) for name, values in sorted(models.items())}),
            "jurisdiction.json": _json(
                {
                    "in_force": settings.jurisdiction,
                    "recorded": profiles.recorded_profile(db),
                    "profile": profiles.load_profile(settings.jurisdiction).model_dump(),
                    "changes": changes,
                }
            ),
        }
    return files


def make_pack(store: Store, settings: Settings, actor: Actor, out_dir: Path) -> dict[str, Any]:
    """Record the export, seal the audit log, write the files and sign the manifest."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty; give a new folder for the audit pack")
    audit.record(store, actor, "audit_pack.export", "audit_pack", "processing")
    checkpoint = audit.checkpoint_now(store)
    files = contents(store, settings)
    signer = audit.signer_for(store)
    files["box-public-key.asc"] = signer.export_public_key().encode()
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    manifest = {
        "format": FORMAT,
        "created": audit.format_time(utcnow()),
        "controller": settings.privacy.controller,
        "box_key_fingerprint": signer.fingerprint,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        "audit_checkpoint": None if checkpoint is None else checkpoint.as_dict(),
        "verify": "python3 verify_privacy.py <this folder>   (compliance/verify_privacy.py)",
    }
    raw = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (out_dir / "manifest.json").write_bytes(raw)
    (out_dir / "manifest.json.asc").write_text(signer.sign_detached(raw))
    return manifest
