"""The internal worker API (issue #9, scale-out): what worker hosts use instead of the database.

Worker hosts never open the database and hold no keys (ARCHITECTURE.md, "Scale-out"):
they fetch a job's inputs here, decrypted by the box for that job only and never
written to their disk, and post the results back, which the box writes through the
permission gate. A stolen worker host holds no personal data at rest.

Where it listens, and why not on the portal's gunicorn: this blueprint is mounted only
by `webapp.create_internal_app`, served by `serve_internal` on its own port (the
firewall opens it to the worker hosts only) with TLS that *requires* a client
certificate issued by the box's internal CA (`appliance certs worker NAME`). The
audit log must name the worker that read a recording, so the view needs the peer
certificate itself: gunicorn does not put it in the WSGI environ, werkzeug's server
does (`SSL_CLIENT_CERT`). Every request also checks that certificate here (OU=worker,
clientAuth), so the blueprint refuses to serve if it were ever mounted without mTLS.
The listener handles one TLS handshake at a time; worker hosts are few and trusted.

Endpoints (answer ids only in URLs, never personal data):

    GET  /internal/v1/answers/<id>/task        {"answer_id", "language", "prompt"}
    GET  /internal/v1/answers/<id>/recording   the recording's bytes (octet-stream)
    POST /internal/v1/answers/<id>/transcript  {"transcript": Transcript.stored(), "job_id"?}
    POST /internal/v1/answers/<id>/failure     {"error": REASON, "job_id"?}

With `[workers] transcription = "remote"` the box queues an answer's transcription for the
worker hosts (`workers.analysis.jobs.enqueue_answer`); the transcript's arrival here
queues the rest of the analysis on the box, and a failure report marks the answer failed.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from appliance.records import Answer, ConsentPurpose
from certs.authority import CA_CERT, SERVER_CERT, SERVER_KEY, worker_name_of
from compliance import consent
from compliance.actors import Actor
from compliance.gate import Gate
from webapp.extensions import appliance_store

bp = Blueprint("internal", __name__, url_prefix="/internal/v1")
log = logging.getLogger("enclave.internal")

PURPOSE = "processing"
JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""An rq job id: the box's `JobRun.rq_job_id` (32 hex) or one rq made (a uuid)."""
WORKER_ACTOR_PREFIX = "worker:"


@bp.before_request
def require_worker_certificate() -> None:
    """Only a worker certificate of the box's CA opens this API (see the module docstring)."""
    pem = request.environ.get("SSL_CLIENT_CERT")
    name = worker_name_of(pem) if isinstance(pem, str) else None
    if name is None:
        abort(403, "a worker client certificate of the box's CA is required")
    g.worker = name


@bp.app_errorhandler(HTTPException)
def json_error(exc: HTTPException) -> tuple[Response, int]:
    """Workers are programs: every refusal is JSON with the reason (ids only)."""
    return jsonify(error=exc.name, message=exc.description), exc.code or 500


def _actor() -> Actor:
    # The audit log names the worker host that read or wrote, not a generic job.
    return Actor(kind="system", name=f"{WORKER_ACTOR_PREFIX}{g.worker}")


def _plan(answer_id: int) -> Any:
    from workers.analysis.jobs import plan_answer

    with appliance_store.store.session() as db:
        try:
            plan = plan_answer(db, answer_id)
        except LookupError:
            abort(404, f"answer {answer_id} does not exist")
        # PIPL Art. 14: no processing of the recording without the person's consent.
        if not consent.holds(db, plan.subject_id, ConsentPurpose.RECORDING):
            abort(409, f"answer {answer_id}: the recording consent does not hold")
    return plan


@bp.get("/answers/<int:answer_id>/task")
def answer_task(answer_id: int) -> Response:
    plan = _plan(answer_id)
    return jsonify(answer_id=answer_id, language=plan.language, prompt=plan.prompt)


@bp.get("/answers/<int:answer_id>/recording")
def answer_recording(answer_id: int) -> Response:
    from workers.analysis.jobs import MissingRecording, read_recording

    plan = _plan(answer_id)
    try:
        media = read_recording(appliance_store.store, plan)
    except MissingRecording:
        abort(404, f"answer {answer_id} has no complete recording")
    log.info("answer %d recording sent to worker %s", answer_id, g.worker)
    return Response(media, mimetype="application/octet-stream")


@bp.post("/answers/<int:answer_id>/transcript")
def answer_transcript(answer_id: int) -> Response:
    """Store the worker's transcript; where the answer waited for it (`[workers]
    transcription = "remote"`), queue the rest of its analysis on the box, which uses this
    transcript instead of transcribing again (`workers.analysis.jobs.enqueue_answer`)."""
    from workers.analysis.jobs import analyse_answer, remote_transcript_stored
    from workers.analysis.transcript import Transcript

    _plan(answer_id)  # consent may have been withdrawn while the worker transcribed
    body: Any = request.get_json(silent=True)
    try:
        transcript = Transcript.from_stored(body["transcript"])
    except (TypeError, KeyError, ValueError):
        abort(400, "the body must be {'transcript': Transcript.stored()}")
    job_id = _job_id(body)
    store = appliance_store.store
    with store.session() as db:
        answer = db.get(Answer, answer_id)
        text = json.dumps(transcript.stored(), ensure_ascii=False)
        Gate(store).update_many(_actor(), [(answer, {"transcript": text})], PURPOSE)
    waiting = remote_transcript_stored(store, answer_id, g.worker, transcript.model, job_id)
    log.info("answer %d transcript from worker %s", answer_id, g.worker)
    if waiting:
        try:
            analyse_answer.enqueue(store, appliance_store.redis, answer_id)
        except Exception as exc:  # noqa: BLE001 (said to the worker, whose job then fails)
            abort(503, f"answer {answer_id}: transcript stored, analysis not queued ({exc})")
    return jsonify(answer_id=answer_id, stored=True, analysis=waiting)


@bp.post("/answers/<int:answer_id>/failure")
def answer_failure(answer_id: int) -> Response:
    """The worker host gave up on the answer: its analysis says failed at step asr, with
    the worker's reason (exception type and decoder message, ids only; never content)."""
    from workers.analysis.jobs import plan_answer, remote_transcription_failed

    body: Any = request.get_json(silent=True)
    reason = body.get("error") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        abort(400, "the body must be {'error': REASON, 'job_id': RQ_JOB_ID}")
    store = appliance_store.store
    with store.session() as db:
        try:
            plan_answer(db, answer_id)
        except LookupError:
            abort(404, f"answer {answer_id} does not exist")
    remote_transcription_failed(store, answer_id, g.worker, reason, _job_id(body))
    log.warning("answer %d: transcription failed on worker %s", answer_id, g.worker)
    return jsonify(answer_id=answer_id, failed=True)


def _job_id(body: Any) -> str | None:
    """The rq job id the worker ran (the box's `JobRun`, if it made one), if it sent one."""
    value = body.get("job_id") if isinstance(body, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        abort(400, "job_id must be the rq job's id (letters, digits, - and _)")
    return value


def mtls_context(certs_dir: Path) -> ssl.SSLContext:
    """Server TLS that refuses any client without a certificate from the box's CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs_dir / CA_CERT))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(certs_dir / SERVER_CERT), str(certs_dir / SERVER_KEY))
    return context


def internal_server(app: Any, host: str, port: int, certs_dir: Path) -> BaseWSGIServer:
    """The internal listener (threaded; `serve_forever()` it, `shutdown()` to stop)."""
    return make_server(host, port, app, threaded=True, ssl_context=mtls_context(certs_dir))
