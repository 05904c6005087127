"""The auditor console (/audit): search the log, verify it with one click, export a range.

Auditors and the audit admin only. The log holds ids and field names, never
personal values, so nothing here passes the personal-data gate; the
console's own use is recorded in the log all the same (who searched, verified
or exported, and when). Server-rendered (templates/audit/), no script.

An export is built in a private temp folder and zipped there; the folder is
removed before the zip streams out (from the open file). It holds ids and
field names only.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, send_file
from flask.blueprints import BlueprintSetupState

from appliance.clock import format_local
from appliance.errors import ApplianceError
from appliance.records import Role, utcnow
from appliance.settings import Settings
from compliance import audit
from compliance.export import export_log, parse_time
from webapp.auth import current_actor, requires
from webapp.extensions import appliance_store

bp = Blueprint("audit", __name__, url_prefix="/audit")
AUDIT_ROLES = (Role.AUDITOR, Role.AUDIT_ADMIN)
FILTERS = ("from", "to", "actor", "subject", "action", "result")
PAGE = 100


@bp.record_once
def _configure_checkpoints(state: BlueprintSetupState) -> None:
    """The web app's store seals the log with the box's settings, not the defaults."""
    store = state.app.extensions.get("enclave.store")
    if store is not None:
        audit.configure(store, state.app.config["SETTINGS"])


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _query(args: Any) -> tuple[audit.EventQuery, dict[str, str]]:
    form = {name: (args.get(name) or "").strip() for name in FILTERS}
    zone = _settings().zone
    try:
        start, end = parse_time(form["from"], zone), parse_time(form["to"], zone)
        before = int(args["before"]) if args.get("before") else None
    except (ApplianceError, ValueError):
        abort(400, description="时间格式不正确 / a time or page is malformed (ISO 8601).")
    if form["result"] and form["result"] not in audit.RESULTS:
        abort(400, description="result must be allowed, denied or failed")
    query = audit.EventQuery(
        start=start,
        end=end,
        actor=form["actor"] or None,
        subject_id=form["subject"] or None,
        action=form["action"] or None,
        result=form["result"] or None,
        before_seq=before,
        limit=PAGE,
    )
    return query, form


def _page(**extra: Any) -> str:
    query, form = _query(request.args)
    store = appliance_store.store
    if request.method == "GET":  # a verify or export records its own event
        used = sorted(name for name in FILTERS if form[name])
        audit.record(
            store, current_actor(), "audit.search", "audit_events", "audit review", fields=used
        )
    events = audit.search_events(store, query)
    latest = audit.latest_checkpoint(store)
    settings = _settings()
    return render_template(
        "audit/console.html",
        events=events,
        form=form,
        results=audit.RESULTS,
        local=lambda moment: format_local(moment, settings),
        zone=settings.timezone,
        latest=latest,
        fingerprint=audit.signer_for(store).fingerprint,
        more=len(events) == PAGE,
        filters={name: value for name, value in form.items() if value},
        **extra,
    )


@bp.get("/")
@requires(*AUDIT_ROLES)
def console() -> Any:
    return _page()


@bp.post("/verify")
@requires(*AUDIT_ROLES)
def verify() -> Any:
    store = appliance_store.store
    audit.record(store, current_actor(), "audit.verify", "audit_events", "integrity check")
    result = audit.verify_live(store)
    return _page(verified=result)


@bp.post("/export")
@requires(*AUDIT_ROLES)
def export() -> Any:
    zone = _settings().zone
    try:
        start = parse_time(request.form.get("from"), zone)
        end = parse_time(request.form.get("to"), zone)
    except ApplianceError:
        abort(400, description="时间格式不正确 / a time is malformed (ISO 8601).")
    tmp = Path(tempfile.mkdtemp(prefix="enclave-audit-"))
    try:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        name = f"enclave-audit-{stamp}"
        folder = tmp / name
        export_log(appliance_store.store, current_actor(), folder, start, end, _settings())
        archive = tmp / f"{name}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, f"{name}/{path.name}")
        # Open, then delete: the open file streams out and nothing is left on disk, even
        # when the download is never read to its end.
        stream = archive.open("rb")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    response = send_file(
        stream, mimetype="application/zip", as_attachment=True, download_name=f"{name}.zip"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
