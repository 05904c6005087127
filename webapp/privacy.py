"""The DPO's console (/privacy, issue #8): requests and their deadlines, the consent register,
impact assessments, retention runs, deletion certificates, the bias audit page and its
export, the record of processing and the signed audit pack.

DPO only. What it shows are ids, dates, counts and texts written for everyone; no person's
value passes through here (the copies a request produces are sealed blobs the person
fetches with their own link). Every visit and action is in the audit log. Server-rendered
(templates/privacy/), no script.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from sqlalchemy import select

from appliance.clock import format_local
from appliance.records import (
    BiasAudit,
    DataRequest,
    DeletionCertificate,
    RetentionRun,
    Role,
    utcnow,
)
from appliance.settings import Settings
from compliance import audit, bias, pia, processing_record, register, requests
from compliance.audit_pack import make_pack
from compliance.deletion import ReasonRequired
from webapp.auth import current_actor, requires
from webapp.extensions import appliance_store

bp = Blueprint("privacy", __name__, url_prefix="/privacy")
PURPOSE = "data_request"


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _page(error: str | None = None, status: int = 200) -> Any:
    store = appliance_store.store
    settings = _settings()
    audit.record(store, current_actor(), "privacy.view", "privacy", PURPOSE)
    with store.session() as db:
        open_requests = list(
            db.scalars(
                select(DataRequest)
                .where(DataRequest.status.in_(requests.OPEN))
                .order_by(DataRequest.due_at)
            )
        )
        context = {
            "requests": open_requests,
            "request_stats": requests.statistics(db),
            "consents": register.statistics(db),
            "purposes": register.PURPOSES,
            "notices": {p: register.current_notice(db, p) for p in register.PURPOSES},
            "assessments": pia.listing(db),
            "runs": list(
                db.scalars(select(RetentionRun).order_by(RetentionRun.id.desc()).limit(5))
            ),
            "certificates": list(
                db.scalars(
                    select(DeletionCertificate)
                    .order_by(DeletionCertificate.issued_at.desc())
                    .limit(10)
                )
            ),
            "audits": list(db.scalars(select(BiasAudit).order_by(BiasAudit.id.desc()).limit(10))),
        }
    body = render_template(
        "privacy/console.html",
        error=error,
        now=utcnow(),
        local=lambda moment: format_local(moment, settings),
        zone=settings.timezone,
        jurisdiction=settings.jurisdiction,
        **context,
    )
    return body, status


@bp.get("/")
@requires(Role.DPO)
def console() -> Any:
    return _page()


@bp.post("/requests/<int:request_id>/verify")
@requires(Role.DPO)
def verify_identity(request_id: int) -> Any:
    try:
        requests.verify_identity(
            appliance_store.store, current_actor(), request_id, request.form.get("method", "")
        )
    except requests.RequestError as exc:
        return _page(str(exc), 400)
    return redirect(url_for("privacy.console"), 303)


@bp.post("/requests/<int:request_id>/refuse")
@requires(Role.DPO)
def refuse(request_id: int) -> Any:
    """A refusal needs its written ground: without one it is rejected (400), nothing changes."""
    try:
        requests.refuse(
            appliance_store.store, current_actor(), request_id, request.form.get("reason")
        )
    except (ReasonRequired, requests.RequestError) as exc:
        return _page(str(exc), 400)
    return redirect(url_for("privacy.console"), 303)


@bp.post("/bias")
@requires(Role.DPO)
def run_bias_audit() -> Any:
    try:
        jobs = [int(j) for j in request.form.getlist("job") if j.strip()] or None
    except ValueError:
        abort(400, description="job ids are numbers")
    row = bias.run_audit(appliance_store.store, current_actor(), jobs)
    return redirect(url_for("privacy.bias_page", audit_id=row.id), 303)


def _bias(audit_id: int) -> BiasAudit:
    with appliance_store.store.session() as db:
        row = db.get(BiasAudit, audit_id)
    if row is None:
        abort(404)
    return row


@bp.get("/bias/<int:audit_id>")
@requires(Role.DPO)
def bias_page(audit_id: int) -> Any:
    row = _bias(audit_id)
    audit.record(
        appliance_store.store, current_actor(), "bias.view", f"bias_audits:{audit_id}", PURPOSE
    )
    return render_template(
        "privacy/bias.html",
        audit=row,
        local=lambda moment: format_local(moment, _settings()),
    )


@bp.get("/bias/<int:audit_id>.csv")
@requires(Role.DPO)
def bias_export(audit_id: int) -> Any:
    row = _bias(audit_id)
    audit.record(
        appliance_store.store, current_actor(), "bias.export", f"bias_audits:{audit_id}", PURPOSE
    )
    return Response(
        bias.to_csv(row.results),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f"attachment; filename=bias-audit-{audit_id}.csv",
            "Cache-Control": "no-store",
        },
    )


@bp.get("/record")
@requires(Role.DPO)
def record() -> Any:
    store = appliance_store.store
    audit.record(store, current_actor(), "privacy.record", "processing_record", PURPOSE)
    with store.session() as db:
        built = processing_record.build(_settings(), db)
    return Response(processing_record.to_markdown(built), mimetype="text/markdown")


@bp.post("/audit-pack")
@requires(Role.DPO)
def audit_pack() -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="enclave-pack-"))
    try:
        name = f"enclave-audit-pack-{utcnow():%Y%m%dT%H%M%SZ}"
        folder = tmp / name
        make_pack(appliance_store.store, _settings(), current_actor(), folder)
        archive = tmp / f"{name}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, f"{name}/{path.name}")
        stream = archive.open("rb")  # open, then delete: nothing stays on disk
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    response = send_file(
        stream, mimetype="application/zip", as_attachment=True, download_name=f"{name}.zip"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
