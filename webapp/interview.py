"""The candidate's interview (issue #7, items 1-4, 6-7 on the web side).

Entry (item 1): the invitation link (`GET /c/<token>/start`, linked from the landing page)
or, at the on-site kiosk, a short code reception hands out (`GET/POST /kiosk`; HR makes
one with `POST /interview/sessions/<id>/kiosk-code`). Both end in a candidate session
(`webapp.auth.sign_in_candidate`: the token sits in the signed cookie, never in a URL
after entry). Kiosk mode: `POST /interview/leave` ends the session and answers
`Clear-Site-Data`, so the next candidate finds no cookie, storage or cache; the page
calls it after the end and after inactivity, and stops every camera and microphone
track first.

Then, always in this order, driven by server-side state so a reload or a dropped
connection resumes where the candidate was (`InterviewSession.current_position`,
`Answer.attempt`):

1. device check (item 2): the browser tests camera, microphone, speaker, round-trip
   time and upload bandwidth (`/interview/probe`) and browser support; the result is
   posted to `/interview/device-check` (pass/fail per check, no media);
2. notice and consent (item 3, PIPL Art. 14, 17, 28-29; 820 ILCS 42/5): recording, then
   face analysis as its own separate step, then AI scoring, whose refusal means a
   human-only evaluation (PIPL Art. 24). Each answer is a `Consent` row through
   `compliance.register.record_consent` (version, time, text hash). Nothing is captured
   before the recording consent holds;
3. the questions (item 4): `GET /interview/state` (JSON, also the heartbeat that keeps
   this browser's lease), `POST /interview/answers` (a new take), the WebRTC offer and
   stop forwarded to the media service over its unix socket (item 5's contract:
   `POST /answers/{id}/offer` {sdp,type} -> {sdp,type}; `POST /answers/{id}/stop` ->
   {recording_id,...}), or the fallback upload (item 6): numbered parts streamed
   straight into encrypted blobs (`PUT /interview/answers/<id>/parts/<seq>`),
   resumable (`GET .../parts` says the next part), joined into one `Recording` by
   `POST .../parts/finish`; then `POST /interview/next`;
4. after each answer (item 7): `workers.analysis.jobs.analyse_answer` is enqueued with
   the answer's id only.

One live interview per token: the first browser holds an `InterviewLease`; a second
one is refused while the first keeps polling. Every refusal (replayed or expired
token or code, second browser, malformed offer, wrong upload type or size) answers a
clear message in Chinese and English and writes an audit event (`result=denied`).
URLs carry ids only; audit events carry ids and names, never content.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.crypto import derive_key
from appliance.records import (
    Answer,
    Application,
    Candidate,
    CandidateToken,
    ConsentPurpose,
    InterviewLease,
    InterviewPlan,
    InterviewQuestion,
    InterviewSession,
    Invitation,
    KioskCode,
    Recording,
    Role,
    SessionStatus,
    UploadPart,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from appliance.supervisor import media_socket
from compliance import audit, consent, register, retention, tokens
from compliance.actors import Actor
from compliance.gate import AccessDenied, Gate
from webapp import N_
from webapp.api import answer_denied, no_store
from webapp.auth import current_actor, load_actor, requires, sign_in_candidate
from webapp.extensions import appliance_store

bp = Blueprint("interview", __name__)

PURPOSE = "interview"
"""Audit purpose of what a candidate does while taking their interview."""
TOKEN_PURPOSE = "interview"  # noqa: S105 (a token purpose name, not a secret)
LEASE_STALE = timedelta(seconds=90)
"""A browser that has not polled for this long has gone; another may take over."""
KIOSK_CODE_TTL = timedelta(hours=4)
KIOSK_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
"""No 0/O, 1/I/L: read aloud at a reception desk without mistakes."""
KIOSK_CODE_LENGTH = 8
PART_MAX_BYTES = 8 << 20
"""One fallback upload part (MediaRecorder hands out a chunk every few seconds)."""
MAX_BYTES_PER_SECOND = 1 << 20
"""8 Mbit/s: more than any 720p MediaRecorder stream; bounds one answer's whole upload."""
UPLOAD_TYPES = ("video/webm", "audio/webm", "video/mp4", "audio/ogg")
SDP_MAX_BYTES = 64 << 10
MEDIA_TIMEOUT_S = 15.0
READ_BLOCK = 64 << 10
CONSENT_STEPS = (
    ConsentPurpose.RECORDING,
    ConsentPurpose.FACE_ANALYSIS,
    ConsentPurpose.AI_SCORING,
)
"""In this order, one page each: face analysis is never bundled (PIPL Art. 29)."""
NOTICE_VERSION = "interview-2026.11"


class Refused(Exception):
    """A request the interview refuses; rendered with both languages and audited."""

    def __init__(
        self, status: int, zh: str, en: str, action: str, entity: str = "interview_sessions"
    ) -> None:
        super().__init__(en)
        self.status, self.zh, self.en, self.action, self.entity = status, zh, en, action, entity


@dataclass(frozen=True)
class Taking:
    """Who is taking which interview in this request."""

    actor: Actor
    session_id: int
    subject_id: str


def _store() -> Store:
    return appliance_store.store


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


# --- refusals --------------------------------------------------------------------------------


def _actor_for_audit() -> Actor:
    actor = load_actor()
    if actor is not None:
        return actor
    return Actor(kind="candidate", name="unknown", source_ip=request.remote_addr)


def _json_wanted() -> bool:
    """The page's scripts get JSON; a browser's page load or form post gets a page."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    if best == "application/json":
        return True
    return request.method != "GET" and request.mimetype not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    )


@bp.errorhandler(Refused)
def _refused(exc: Refused) -> Any:
    audit.record(_store(), _actor_for_audit(), exc.action, exc.entity, PURPOSE, result="denied")
    if _json_wanted():
        return jsonify({"error": exc.action, "message": exc.zh, "message_en": exc.en}), exc.status
    return render_template("interview/refused.html", zh=exc.zh, en=exc.en), exc.status


def _token_refusal(exc: tokens.TokenError) -> Refused:
    """A refused token (already audited by compliance.tokens) in this page's words."""
    from webapp.invitations import TOKEN_EN, TOKEN_STATUS

    kind = next((k for k in TOKEN_STATUS if isinstance(exc, k)), tokens.BadTokenSignature)
    return Refused(TOKEN_STATUS[kind], exc.zh, TOKEN_EN[kind], "interview.token_refused")


@bp.errorhandler(tokens.TokenError)
def _token_error(exc: tokens.TokenError) -> Any:
    refusal = _token_refusal(exc)
    if _json_wanted():
        return jsonify(
            {"error": refusal.action, "message": refusal.zh, "message_en": refusal.en}
        ), (refusal.status)
    return render_template("interview/refused.html", zh=refusal.zh, en=refusal.en), refusal.status


# --- entry: link and kiosk ----------------------------------------------------------------------


def _session_of_token(db: Session, token_id: str) -> InterviewSession | None:
    invitation = db.scalars(select(Invitation).where(Invitation.token_id == token_id)).first()
    return invitation.session if invitation is not None else None


def _refuse_finished(status: SessionStatus, entity: str) -> None:
    """A link or code used again after its interview ended is a replay (issue #7)."""
    if status in (SessionStatus.COMPLETED, SessionStatus.EXPIRED, SessionStatus.CANCELLED):
        raise Refused(
            410,
            "此面试已结束，链接不能再次使用。如有疑问请联系招聘人员。",
            "This interview has ended; the link cannot be used again. Please contact the "
            "recruiter if you have a question.",
            "interview.replay_refused",
            entity,
        )


def _enter(token: str, kiosk: bool) -> Any:
    store = _store()
    tid = tokens.token_id(store, token)
    with store.session() as db:
        found = _session_of_token(db, tid)
        if found is None:
            raise _token_refusal(tokens.TokenRevoked())
        _refuse_finished(found.status, f"interview_sessions:{found.id}")
    if session.get("ctoken") != token:
        sign_in_candidate(token, TOKEN_PURPOSE)
        session["browser"] = secrets.token_urlsafe(24)
    else:
        tokens.resolve(store, token, TOKEN_PURPOSE, source_ip=request.remote_addr)
    session["kiosk"] = kiosk
    return redirect(url_for("interview.page"), code=303)


@bp.get("/c/<token>/start")
def start(token: str) -> Any:
    """From the invitation's landing page: into the interview (the URL is left behind)."""
    return _enter(token, kiosk=False)


def _kiosk_key(store: Store) -> bytes:
    return derive_key(store.keys.signing, b"enclave:kiosk-code:v1")


def kiosk_code_hash(store: Store, code: str) -> str:
    """Keyed hash of a normalised code: only this is stored (a DB reader cannot use it)."""
    normal = re.sub(r"[\s-]", "", code).upper()
    return hmac.new(_kiosk_key(store), normal.encode("ascii", "replace"), "sha256").hexdigest()


def new_kiosk_code(store: Store, actor: Actor, session_id: int) -> str:
    """A fresh single-use code for one session (shown once, at the reception desk)."""
    code = "".join(secrets.choice(KIOSK_ALPHABET) for _ in range(KIOSK_CODE_LENGTH))
    now = utcnow()
    with store.transaction() as db:
        row = KioskCode(
            code_hash=kiosk_code_hash(store, code),
            session_id=session_id,
            created_by_id=actor.user_id,
            created_at=now,
            expires_at=now + KIOSK_CODE_TTL,
        )
        db.add(row)
        db.flush()
        row_id = row.id
    audit.record(store, actor, "kiosk_code.issue", f"kiosk_codes:{row_id}", "screening")
    return f"{code[:4]}-{code[4:]}"


def _redeem(store: Store, code: str) -> str:
    """The interview token a kiosk code stands for; the code is used up."""
    bad = Refused(
        400,
        "接待码无效，请核对后重新输入，或请前台工作人员协助。",
        "This code is not valid: check it and enter it again, or ask the reception desk.",
        "kiosk.code_refused",
        "kiosk_codes",
    )
    if not 4 <= len(code) <= 20:
        raise bad
    with store.transaction() as db:
        row = db.scalars(
            select(KioskCode).where(KioskCode.code_hash == kiosk_code_hash(store, code))
        ).first()
        if row is None:
            raise bad
        entity = f"kiosk_codes:{row.id}"
        if row.used_at is not None:
            raise Refused(
                410,
                "此接待码已使用过，请向前台索取新的接待码。",
                "This code was already used: ask the reception desk for a new one.",
                "kiosk.replay_refused",
                entity,
            )
        if row.expires_at <= utcnow():
            raise Refused(
                410,
                "此接待码已过期，请向前台索取新的接待码。",
                "This code has expired: ask the reception desk for a new one.",
                "kiosk.code_expired",
                entity,
            )
        invitation = db.scalars(
            select(Invitation).where(Invitation.session_id == row.session_id)
        ).first()
        if invitation is None:
            raise bad
        token_row = db.get(CandidateToken, invitation.token_id)
        if token_row is None:
            raise bad
        row.used_at = utcnow()
        return tokens.token_of(store, token_row)


@bp.get("/kiosk")
def kiosk() -> Any:
    """The kiosk's start page: a code field, nothing else (no sign-in, no menu)."""
    return render_template("interview/kiosk.html")


@bp.post("/kiosk")
def kiosk_enter() -> Any:
    token = _redeem(_store(), request.form.get("code", ""))
    return _enter(token, kiosk=True)


@bp.post("/interview/sessions/<int:session_id>/kiosk-code")
@requires(Role.HR, Role.HR_ADMIN)
def kiosk_code(session_id: int) -> Any:
    """Reception (HR) makes a code for a candidate who came to the kiosk."""
    actor, store = current_actor(), _store()
    the_gate = Gate(store)
    with store.session() as db:
        found = db.scalar(
            select(InterviewSession.id)
            .join(Application, Application.id == InterviewSession.application_id)
            .where(
                InterviewSession.id == session_id,
                the_gate.scope(actor, Application, "view", "screening"),
            )
        )
    if found is None:
        abort(404)
    code = new_kiosk_code(store, actor, session_id)
    return render_template("interview/kiosk_code.html", code=code, session_id=session_id)


@bp.post("/interview/leave")
def leave() -> Any:
    """End the candidate's session and leave the browser clean (kiosk mode, item 1)."""
    kiosk_mode = bool(session.get("kiosk"))
    taking = _taking_or_none()
    if taking is not None:
        _release_lease(taking.session_id)
        audit.record(_store(), taking.actor, "interview.leave", _entity(taking), PURPOSE)
    session.clear()
    target = url_for("interview.kiosk") if kiosk_mode else url_for("interview.left")
    response = redirect(target, code=303)
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@bp.get("/interview/left")
def left() -> Any:
    return render_template("interview/left.html")


# --- who is taking the interview, and the one-browser lease ----------------------------------


def _entity(taking: Taking) -> str:
    return f"interview_sessions:{taking.session_id}"


def _taking_or_none() -> Taking | None:
    token = session.get("ctoken")
    actor = load_actor()
    if token is None or actor is None or actor.kind != "candidate":
        return None
    store = _store()
    with store.session() as db:
        found = _session_of_token(db, tokens.token_id(store, str(token)))
        if found is None:
            return None
        subject_id = db.scalar(
            select(Candidate.subject_id).where(Candidate.id == found.application.candidate_id)
        )
        if subject_id is None or found.application.candidate_id != actor.candidate_id:
            return None
        return Taking(actor, found.id, subject_id)


def _taking() -> Taking:
    """The candidate of this browser session, holding the lease; refused otherwise."""
    taking = _taking_or_none()
    if taking is None:
        raise Refused(
            401,
            "面试会话已结束或链接无效，请重新打开邀请链接，或在自助机输入接待码。",
            "Your interview session has ended or the link is not valid: open your invitation "
            "link again, or enter your code at the kiosk.",
            "interview.no_session",
        )
    _hold_lease(taking)
    return taking


def _browser_hash() -> str:
    browser = session.get("browser")
    if not browser:
        browser = session["browser"] = secrets.token_urlsafe(24)
    return hashlib.sha256(str(browser).encode()).hexdigest()


def _hold_lease(taking: Taking) -> None:
    """One live interview per token: refuse a second browser while the first is active."""
    mine, now = _browser_hash(), utcnow()
    with _store().write_transaction() as db:
        lease = db.get(InterviewLease, taking.session_id)
        if lease is None:
            db.add(InterviewLease(session_id=taking.session_id, browser_hash=mine, seen_at=now))
            return
        if lease.browser_hash != mine and now - lease.seen_at < LEASE_STALE:
            raise Refused(
                409,
                "此面试正在另一个浏览器或设备上进行。请关闭其他窗口；如需帮助请联系招聘人员。",
                "This interview is open in another browser or device. Close the other window; "
                "contact the recruiter if you need help.",
                "interview.second_browser_refused",
                _entity(taking),
            )
        if lease.browser_hash != mine:
            lease.acquired_at = now
        lease.browser_hash, lease.seen_at = mine, now


def _release_lease(session_id: int) -> None:
    with _store().transaction() as db:
        lease = db.get(InterviewLease, session_id)
        if lease is not None and lease.browser_hash == _browser_hash():
            db.delete(lease)


# --- notice and consent -----------------------------------------------------------------------


def _notice_language() -> str:
    from webapp.i18n import current_language

    return "en" if current_language() == "en" else "zh-CN"


def default_notice(purpose: ConsentPurpose, language: str, settings: Settings) -> str:
    """The box's own notice text for a purpose, until the DPO publishes another one
    (PIPL Art. 17: what, why, how long, who sees it; 820 ILCS 42/5: how the AI works)."""
    days = retention.days_of(settings, "candidates_not_hired")
    texts = NOTICES_EN if language == "en" else NOTICES_ZH
    return texts[purpose].format(days=days)


NOTICES_ZH = {
    ConsentPurpose.RECORDING: (
        "录制什么：您回答每道题时的摄像头画面和声音。\n"
        "为什么：供医院招聘人员和面试官评估您的回答，并在本机将语音转写为文字。\n"
        "保存多久：未被录用时，在职位关闭或申请结束后 {days} 天删除；您可随时要求删除。\n"
        "谁能看到：负责该职位的人事人员和被指派的面试官，只能在线播放，不能下载；"
        "每次查看都会记录在审计日志中。\n"
        "数据不离开医院：录像在本机加密保存，不发送给任何外部服务。\n"
        "不同意录制则无法进行视频面试，请联系招聘人员安排其他方式。"
    ),
    ConsentPurpose.FACE_ANALYSIS: (
        "人脸信息属于敏感个人信息，因此单独征求您的同意。\n"
        "分析什么：从面试视频中检测人脸是否在画面中、视线方向、是否有他人出现，"
        "以及整场面试是否为同一人；法规允许时还包括表情估计。\n"
        "为什么：确认面试由您本人完成，并作为评分的参考信号之一。\n"
        "保存多久：与面试录像相同，最长 {days} 天；撤回同意后立即删除。\n"
        "不同意：面试照常进行，只使用声音和回答内容，不会产生任何人脸数据，也不影响您的机会。"
    ),
    ConsentPurpose.AI_SCORING: (
        "AI 如何工作：本机的语音识别将回答转为文字，再按职位的评分维度（如沟通能力、"
        "专业知识）和评分细则给出建议分数，并附上依据（对应的原话和时间）。\n"
        "AI 使用什么：您的回答内容和说话方式（语速、停顿）；只有您另行同意时才使用人脸信号。"
        "不使用您的性别、年龄、民族等信息。\n"
        "AI 只提供建议，录用与否由具名的工作人员决定；您可以要求解释任何 AI 分数。\n"
        "不同意：选择“仅人工评估”，您的面试将完全由工作人员评估，不会生成 AI 分数。"
    ),
}

NOTICES_EN = {
    ConsentPurpose.RECORDING: (
        "What is recorded: your camera picture and voice while you answer each question.\n"
        "Why: so the hospital's recruiters and interviewers can evaluate your answers, and "
        "so your speech can be transcribed on this box.\n"
        "How long: if you are not hired, deleted {days} days after the job closes or your "
        "application ends; you may ask for deletion at any time.\n"
        "Who sees it: the HR staff responsible for the job and the interviewers assigned, "
        "streaming only, no download; every viewing is recorded in the audit log.\n"
        "It stays in the hospital: recordings are stored encrypted on this box and sent to "
        "no outside service.\n"
        "Without this consent a video interview is not possible; please contact the "
        "recruiter for another arrangement."
    ),
    ConsentPurpose.FACE_ANALYSIS: (
        "Face data is sensitive personal information, so your consent is asked for "
        "separately.\n"
        "What is analysed: from the interview video, whether a face is in the picture, gaze "
        "direction, whether someone else appears, and whether the same person answers "
        "throughout; where the law allows it, also expression estimates.\n"
        "Why: to confirm that you took the interview yourself, and as one input to the "
        "suggested scores.\n"
        "How long: as long as the recording, at most {days} days; deleted at once if you "
        "withdraw.\n"
        "If you decline: the interview goes ahead on your voice and answers alone, no face "
        "data is produced, and your chances are not affected."
    ),
    ConsentPurpose.AI_SCORING: (
        "How the AI works: speech recognition on this box turns your answers into text; "
        "suggested scores are then given per dimension of the job's scoring template (for "
        "example communication, professional knowledge) and its rubric, each with its "
        "evidence (your words and their time).\n"
        "What it uses: what you say and how (pace, pauses); face signals only if you "
        "consented to them separately. It does not use your sex, age or ethnicity.\n"
        "The AI only advises: a named member of staff decides; you may ask for an "
        "explanation of any AI score.\n"
        "If you decline: choose 'human evaluation only', and your interview is evaluated by "
        "people alone, with no AI score."
    ),
}

STEP_TITLES = {
    ConsentPurpose.RECORDING: N_("面试录制与转写告知"),
    ConsentPurpose.FACE_ANALYSIS: N_("人脸分析（敏感个人信息）单独同意"),
    ConsentPurpose.AI_SCORING: N_("AI 辅助评分告知"),
}


def current_notice(purpose: ConsentPurpose) -> Any:
    """The notice in force for `purpose` in the page's language; the box's default text is
    published (as version NOTICE_VERSION) when the DPO has published none yet."""
    store, language = _store(), _notice_language()
    with store.session() as db:
        notice = register.current_notice(db, purpose.value, language)
        if notice is None and language != "zh-CN":
            notice = register.current_notice(db, purpose.value, "zh-CN")
    if notice is not None:
        return notice
    body = default_notice(purpose, language, _settings())
    system = Actor(kind="system", name="system")
    return register.publish_notice(store, system, purpose.value, NOTICE_VERSION, body, language)


def _answered(db: Session, subject_id: str, purpose: ConsentPurpose) -> bool:
    """The person gave an answer (yes or no) under the text in force, not withdrawn since."""
    row = consent.latest(db, subject_id, purpose)
    return row is not None and row.withdrawn_at is None and consent.is_current(db, row)


def next_consent_step(db: Session, subject_id: str) -> ConsentPurpose | None:
    for purpose in CONSENT_STEPS:
        if not _answered(db, subject_id, purpose):
            return purpose
    return None


# --- the page and its state -----------------------------------------------------------------


def _questions(db: Session, plan_id: int) -> list[InterviewQuestion]:
    return list(
        db.scalars(
            select(InterviewQuestion)
            .where(InterviewQuestion.plan_id == plan_id)
            .order_by(InterviewQuestion.position, InterviewQuestion.id)
        )
    )


def _live_captions(db: Session, plan_id: int) -> bool:
    """Whether the job shows the candidate live captions of their own answer (issue 5)."""
    plan = db.get(InterviewPlan, plan_id)
    return bool(plan is not None and plan.job.live_captions)


def _complete_takes(db: Session, session_id: int, question_id: int) -> int:
    """Takes with a complete recording: an interrupted take (media lost) does not count
    against the retakes allowed, so it can be taken again (issue #7, "Must show")."""
    return int(
        db.scalar(
            select(func.count(func.distinct(Answer.id)))
            .join(Recording, Recording.answer_id == Answer.id)
            .where(
                Answer.session_id == session_id,
                Answer.question_id == question_id,
                Recording.complete.is_(True),
            )
        )
        or 0
    )


def _latest_take(db: Session, session_id: int, question_id: int) -> Answer | None:
    return db.scalars(
        select(Answer)
        .where(Answer.session_id == session_id, Answer.question_id == question_id)
        .order_by(Answer.attempt.desc(), Answer.id.desc())
        .limit(1)
    ).first()


def _has_complete_recording(db: Session, answer_id: int) -> bool:
    return (
        db.scalar(
            select(Recording.id).where(
                Recording.answer_id == answer_id, Recording.complete.is_(True)
            )
        )
        is not None
    )


def interview_state(db: Session, taking: Taking) -> dict[str, Any]:
    """What the page shows now; everything it needs to resume after a reload."""
    row = db.get(InterviewSession, taking.session_id)
    if row is None:
        abort(404)
    step = "device" if not session.get("device_ok") else "consent"
    pending = next_consent_step(db, taking.subject_id)
    questions = _questions(db, row.plan_id)
    state: dict[str, Any] = {
        "status": row.status.value,
        "total": len(questions),
        "position": row.current_position,
        "kiosk": bool(session.get("kiosk")),
        "face": consent.holds(db, taking.subject_id, ConsentPurpose.FACE_ANALYSIS),
        "human_only": not consent.holds(db, taking.subject_id, ConsentPurpose.AI_SCORING),
    }
    if row.status is SessionStatus.COMPLETED or row.current_position >= len(questions):
        state["step"] = "done"
        return state
    if step == "consent" and pending is None:
        step = "question"
        if not consent.holds(db, taking.subject_id, ConsentPurpose.RECORDING):
            step = "no_recording"
    state["step"] = step
    if step == "consent" and pending is not None:
        state["consent"] = pending.value
    if step == "question":
        question = questions[row.current_position]
        take = _latest_take(db, row.id, question.id)
        used = _complete_takes(db, row.id, question.id)
        state["question"] = {
            "position": row.current_position,
            "text": question.text,
            "think_seconds": question.think_seconds,
            "answer_seconds": question.answer_seconds,
            "takes_allowed": 1 + question.retakes,
            "takes_used": used,
            "captions": _live_captions(db, row.plan_id),
        }
        state["take"] = (
            {
                "answer_id": take.id,
                "attempt": take.attempt,
                "recorded": _has_complete_recording(db, take.id),
            }
            if take is not None
            else None
        )
    return state


@bp.get("/interview")
def page() -> Any:
    """The interview page: device check, then consent, then the questions."""
    taking = _taking()
    with _store().session() as db:
        state = interview_state(db, taking)
    if state["step"] == "consent":
        return redirect(url_for("interview.consent_step", purpose=state["consent"]), code=303)
    return render_template("interview/interview.html", state=state, advice=ADVICE)


@bp.get("/interview/state")
def state() -> Any:
    """JSON state; polled by the page, which keeps this browser's lease alive."""
    taking = _taking()
    with _store().session() as db:
        return jsonify(interview_state(db, taking))


# --- device check ------------------------------------------------------------------------------

ADVICE = {
    "browser": N_("此浏览器不支持视频面试。请使用最新版的 Chrome、Edge 或 Firefox。"),
    "camera": N_("无法使用摄像头。请检查连接、关闭占用摄像头的程序，并允许浏览器使用摄像头。"),
    "microphone": N_("没有检测到声音。请检查麦克风是否连接、未静音，并允许浏览器使用麦克风。"),
    "speaker": N_("如果听不到测试音，请检查扬声器或耳机的连接和音量。"),
    "rtt": N_("网络延迟较高，建议使用有线网络，或靠近无线路由器。"),
    "bandwidth": N_("上传速度较慢，建议使用有线网络，并关闭其他占用网络的程序。"),
}
"""Plain advice per failed check (issue #7, item 2); the page shows the ones that apply."""
CHECKS = ("browser", "camera", "microphone", "speaker", "rtt", "bandwidth")
RTT_LIMIT_MS = 300
BANDWIDTH_MIN_KBPS = 1500
"""720p VP8 at a good quality needs about 1.5 Mbit/s up."""
PROBE_MAX_BYTES = 2 << 20


@bp.get("/interview/probe")
def probe() -> Any:
    """Round-trip time: an empty answer as fast as the box can give it."""
    _taking()
    return Response(b"", 204)


@bp.post("/interview/probe")
def probe_upload() -> Any:
    """Upload bandwidth: reads (and drops) up to 2 MB; the page times it."""
    _taking()
    length = request.content_length
    if length is None or length > PROBE_MAX_BYTES:
        raise Refused(
            413,
            "测速数据过大。",
            "The speed test sent too much data.",
            "interview.probe_refused",
        )
    received = 0
    for block in _body_blocks():
        received += len(block)
    return jsonify({"received": received})


def check_results(payload: Any) -> tuple[dict[str, bool], list[str]]:
    """The browser's measurements as pass/fail per check, and the advice keys to show."""
    if not isinstance(payload, dict):
        payload = {}
    results = {name: bool(payload.get(name)) for name in ("browser", "camera", "microphone")}
    results["speaker"] = bool(payload.get("speaker"))
    rtt, kbps = payload.get("rtt_ms"), payload.get("upload_kbps")
    results["rtt"] = isinstance(rtt, int | float) and 0 <= rtt <= RTT_LIMIT_MS
    results["bandwidth"] = isinstance(kbps, int | float) and kbps >= BANDWIDTH_MIN_KBPS
    return results, [name for name in CHECKS if not results[name]]


@bp.post("/interview/device-check")
def device_check() -> Any:
    """The check's outcome. Camera, microphone and browser support are required; slow
    network and an unheard test tone get advice, and the candidate may go on."""
    taking = _taking()
    results, failed = check_results(request.get_json(silent=True))
    blocking = [name for name in ("browser", "camera", "microphone") if not results[name]]
    session["device_ok"] = not blocking
    audit.record(
        _store(),
        taking.actor,
        "interview.device_check",
        _entity(taking),
        PURPOSE,
        result="allowed" if not blocking else "denied",
        fields=[f"failed:{name}" for name in failed],
    )
    return jsonify(
        {
            "ok": not blocking,
            "results": results,
            "advice": [{"check": name, "text": _(ADVICE[name])} for name in failed],
        }
    )


# --- consent pages (plain forms) ------------------------------------------------------------


def _purpose_of(value: str) -> ConsentPurpose:
    try:
        purpose = ConsentPurpose(value)
    except ValueError:
        abort(404)
    if purpose not in CONSENT_STEPS:
        abort(404)
    return purpose


@bp.get("/interview/consent/<purpose>")
def consent_step(purpose: str) -> Any:
    _taking()
    if not session.get("device_ok"):
        return redirect(url_for("interview.page"), code=303)
    step = _purpose_of(purpose)
    notice = current_notice(step)
    return render_template(
        "interview/consent.html",
        purpose=step.value,
        title=STEP_TITLES[step],
        notice=notice,
        number=CONSENT_STEPS.index(step) + 1,
        steps=len(CONSENT_STEPS),
    )


@bp.post("/interview/consent/<purpose>")
def consent_answer(purpose: str) -> Any:
    """One answer to one notice (never several purposes at once: PIPL Art. 29)."""
    taking = _taking()
    step = _purpose_of(purpose)
    answer = request.form.get("answer")
    if answer not in ("yes", "no"):
        raise Refused(
            400,
            "请选择“同意”或“不同意”。",
            "Choose 'I agree' or 'I do not agree'.",
            "consent.refused",
        )
    try:
        notice_id = int(request.form.get("notice_id", ""))
    except ValueError:
        notice_id = -1
    channel = "kiosk" if session.get("kiosk") else "link"
    try:
        register.record_consent(
            _store(),
            taking.actor,
            taking.subject_id,
            step.value,
            answer == "yes",
            notice_id,
            channel,
        )
    except register.RegisterError:
        raise Refused(
            409,
            "告知内容已更新，请阅读新的内容后重新选择。",
            "The notice was updated: please read the new text and choose again.",
            "consent.stale_notice",
        ) from None
    return redirect(url_for("interview.page"), code=303)


# --- takes ------------------------------------------------------------------------------------


def _current_question(db: Session, row: InterviewSession) -> InterviewQuestion:
    questions = _questions(db, row.plan_id)
    if row.status is SessionStatus.COMPLETED or row.current_position >= len(questions):
        raise Refused(409, "面试已经结束。", "The interview has ended.", "interview.ended")
    return questions[row.current_position]


def _require_recording_consent(db: Session, taking: Taking) -> None:
    """Nothing is captured before the notice was read and recording agreed (PIPL Art. 14)."""
    if next_consent_step(db, taking.subject_id) is not None or not consent.holds(
        db, taking.subject_id, ConsentPurpose.RECORDING
    ):
        raise Refused(
            403,
            "请先阅读告知并完成同意步骤。",
            "Read the notice and complete the consent steps first.",
            "interview.capture_without_consent",
            _entity(taking),
        )


@bp.post("/interview/answers")
def new_take() -> Any:
    """Start a take of the current question, if a take is left (retakes per the template)."""
    taking = _taking()
    with _store().write_transaction() as db:
        _require_recording_consent(db, taking)
        row = db.get(InterviewSession, taking.session_id)
        if row is None:
            abort(404)
        question = _current_question(db, row)
        if _complete_takes(db, row.id, question.id) >= 1 + question.retakes:
            raise Refused(
                409,
                "这道题的重答次数已用完。",
                "No retakes are left for this question.",
                "interview.retake_refused",
                _entity(taking),
            )
        attempts = db.scalar(
            select(func.max(Answer.attempt)).where(
                Answer.session_id == row.id, Answer.question_id == question.id
            )
        )
        now = utcnow()
        take = Answer(
            session_id=row.id,
            question_id=question.id,
            subject_id=taking.subject_id,
            attempt=int(attempts or 0) + 1,
            started_at=now,
        )
        db.add(take)
        if row.status is SessionStatus.SCHEDULED:
            row.status, row.started_at = SessionStatus.IN_PROGRESS, now
        db.flush()
        answer_id, attempt = take.id, take.attempt
    audit.record(_store(), taking.actor, "answer.start", f"answers:{answer_id}", PURPOSE)
    return jsonify({"answer_id": answer_id, "attempt": attempt}), 201


def _own_take(db: Session, taking: Taking, answer_id: int, open_only: bool = True) -> Answer:
    """This session's latest take of its current question (404 for anything else)."""
    take = db.get(Answer, answer_id)
    if take is None or take.session_id != taking.session_id:
        abort(404)
    row = db.get(InterviewSession, taking.session_id)
    if row is None:
        abort(404)
    question = _current_question(db, row)
    latest = _latest_take(db, row.id, question.id)
    if latest is None or latest.id != take.id or (open_only and take.ended_at is not None):
        raise Refused(
            409,
            "这次作答已经结束，请开始新的作答。",
            "This take has ended: start a new one.",
            "answer.closed",
            f"answers:{answer_id}",
        )
    return take


@bp.post("/interview/next")
def next_question() -> Any:
    """Keep the latest take and move on; after the last question the interview ends."""
    taking = _taking()
    with _store().write_transaction() as db:
        row = db.get(InterviewSession, taking.session_id)
        if row is None:
            abort(404)
        question = _current_question(db, row)
        take = _latest_take(db, row.id, question.id)
        if take is None or not _has_complete_recording(db, take.id):
            raise Refused(
                409,
                "这道题还没有完整的回答录像，请先作答。",
                "This question has no complete recorded answer yet: answer it first.",
                "interview.next_refused",
                _entity(taking),
            )
        row.current_position += 1
        total = len(_questions(db, row.plan_id))
        if row.current_position >= total:
            row.status, row.completed_at = SessionStatus.COMPLETED, utcnow()
        finished = row.status is SessionStatus.COMPLETED
    if finished:
        audit.record(_store(), taking.actor, "interview.complete", _entity(taking), PURPOSE)
        _release_lease(taking.session_id)
    with _store().session() as db:
        return jsonify(interview_state(db, taking))


def _analyse(answer_id: int) -> bool:
    """Enqueue the answer's analysis, ids only (item 7); False if the queue refused it
    (its `JobRun` then says failed; an operator re-runs the session's analysis)."""
    from workers.analysis.jobs import enqueue_answer

    try:
        # Routed by `[workers] transcription` (box or the scale-out worker hosts, issue 9).
        enqueue_answer(_store(), appliance_store.redis, answer_id, current_app.config["SETTINGS"])
    except Exception:  # noqa: BLE001 (redis down: the take itself is safe; said in the answer)
        current_app.logger.warning("analysis of answer %s could not be queued", answer_id)
        return False
    return True


# --- WebRTC signalling: forwarded to the media service -------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the media service's unix socket (local only, no TCP port to open)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("media.local", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


class MediaUnavailable(RuntimeError):
    """The media service did not answer; the page falls back to the HTTPS upload."""


def media_call(
    settings: Settings, path: str, body: dict[str, Any] | None = None, method: str = "POST"
) -> Any:
    """Call the media service (JSON both ways); its JSON answer, or MediaUnavailable."""
    conn = UnixHTTPConnection(str(media_socket(settings)), MEDIA_TIMEOUT_S)
    try:
        if method == "GET":
            conn.request("GET", path)
        else:
            conn.request(
                method,
                path,
                body=json.dumps(body or {}).encode(),
                headers={"Content-Type": "application/json"},
            )
        response = conn.getresponse()
        data = response.read()
    except OSError as exc:
        raise MediaUnavailable(f"media service: {type(exc).__name__}") from None
    finally:
        conn.close()
    if response.status >= 400:
        raise MediaUnavailable(f"media service answered {response.status}")
    try:
        return json.loads(data)
    except ValueError:
        raise MediaUnavailable("media service answered something that is not JSON") from None


_SDP_LINE = re.compile(r"^[a-z]=[^\r\n]*$")


def sdp_problem(payload: Any) -> str | None:
    """Why an offer is not a WebRTC offer (None if its basic shape is right)."""
    if not isinstance(payload, dict) or set(payload) - {"sdp", "type"}:
        return "not an object with sdp and type"
    sdp, kind = payload.get("sdp"), payload.get("type")
    if kind != "offer":
        return "type is not offer"
    if not isinstance(sdp, str) or not sdp or len(sdp.encode()) > SDP_MAX_BYTES:
        return "sdp missing or too long"
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        return "sdp does not start with v=0"
    if not all(_SDP_LINE.match(line) for line in lines):
        return "sdp has a line that is not type=value"
    kinds = {line[0] for line in lines}
    if not {"o", "s", "t", "m"} <= kinds:
        return "sdp lacks an o=, s=, t= or m= line"
    media = [line for line in lines if line.startswith("m=")]
    if not all(line.split(" ")[0] in ("m=audio", "m=video") for line in media):
        return "sdp offers media other than audio and video"
    if not any(line.startswith("a=fingerprint:") for line in lines):
        return "sdp has no DTLS fingerprint"
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        return "sdp has no ICE credentials"
    return None


@bp.post("/interview/answers/<int:answer_id>/offer")
def offer(answer_id: int) -> Any:
    """The browser's SDP offer for one take, checked, then forwarded to the media service."""
    taking = _taking()
    payload = request.get_json(silent=True)
    problem = sdp_problem(payload)
    if problem is not None:
        audit.record(
            _store(),
            taking.actor,
            "media.offer_refused",
            f"answers:{answer_id}",
            PURPOSE,
            result="denied",
            fields=[f"reason:{problem}"],
        )
        return jsonify(
            {
                "error": "media.offer_refused",
                "message": "浏览器发送的连接请求格式不正确，请刷新页面后重试。",
                "message_en": "The browser's connection request is malformed: reload the "
                "page and try again.",
            }
        ), 400
    with _store().session() as db:
        _require_recording_consent(db, taking)
        _own_take(db, taking, answer_id)
    try:
        answer = media_call(_settings(), f"/answers/{answer_id}/offer", payload)
    except MediaUnavailable:
        return _media_down(taking, answer_id)
    if not isinstance(answer, dict) or answer.get("type") != "answer":
        return _media_down(taking, answer_id)
    return jsonify({"sdp": answer.get("sdp"), "type": "answer"})


def _end_take(answer_id: int) -> bool:
    """Close the take; True if it has a complete recording."""
    with _store().transaction() as db:
        take = db.get(Answer, answer_id)
        if take is not None and take.ended_at is None:
            take.ended_at = utcnow()
        return _has_complete_recording(db, answer_id)


def _media_down(taking: Taking, answer_id: int) -> Any:
    audit.record(
        _store(),
        taking.actor,
        "media.unavailable",
        f"answers:{answer_id}",
        PURPOSE,
        result="failed",
    )
    return jsonify(
        {
            "error": "media.unavailable",
            "fallback": True,
            "message": "实时连接暂不可用，将改为录制后上传。",
            "message_en": "The live connection is not available: the answer will be recorded "
            "and uploaded instead.",
        }
    ), 503


@bp.get("/interview/answers/<int:answer_id>/media")
def media_state(answer_id: int) -> Any:
    """Is the media service still recording this take? The page asks when its connection
    wavers: a brief network hiccup recovers by itself, a lost recording does not."""
    taking = _taking()
    with _store().session() as db:
        _own_take(db, taking, answer_id)
    try:
        live = media_call(_settings(), f"/answers/{answer_id}", method="GET")
    except MediaUnavailable:
        return jsonify({"recording": False, "state": "unavailable"})
    state = live.get("state") if isinstance(live, dict) else None
    return jsonify({"recording": state in ("new", "connecting", "connected"), "state": state})


@bp.get("/interview/answers/<int:answer_id>/caption")
def caption(answer_id: int) -> Any:
    """The live caption of the candidate's own answer, for their page only (never stored)."""
    taking = _taking()
    with _store().session() as db:
        _own_take(db, taking, answer_id)
    try:
        live = media_call(_settings(), f"/answers/{answer_id}/caption", method="GET")
    except MediaUnavailable:
        live = {}
    text = live.get("text") if isinstance(live, dict) else None
    return jsonify({"text": text if isinstance(text, str) else ""})


@bp.post("/interview/answers/<int:answer_id>/stop")
def stop(answer_id: int) -> Any:
    """End a WebRTC take: the media service closes its recording; analysis is queued.

    When the media service is gone (it crashed mid-answer), the take ends anyway: what was
    received up to the crash stays as an incomplete recording, and the candidate retakes
    the question (issue 7: "the answer can be retaken; nothing else is lost")."""
    taking = _taking()
    with _store().session() as db:
        _own_take(db, taking, answer_id)
    try:
        result = media_call(_settings(), f"/answers/{answer_id}/stop")
    except MediaUnavailable:
        _end_take(answer_id)
        return _media_down(taking, answer_id)
    recorded = _end_take(answer_id)
    queued = _analyse(answer_id) if recorded else False
    audit.record(_store(), taking.actor, "answer.end", f"answers:{answer_id}", PURPOSE)
    recording_id = result.get("recording_id") if isinstance(result, dict) else None
    return jsonify({"recording_id": recording_id, "recorded": recorded, "analysis": queued})


# --- fallback: resumable HTTPS upload, streamed into encrypted blobs ------------------------


def _body_blocks() -> Iterator[bytes]:
    """The request body in blocks, never spooled (a raw body is not a form upload)."""
    stream = request.stream
    while True:
        block = stream.read(READ_BLOCK)
        if not block:
            return
        yield block


def _upload_refused(taking: Taking, answer_id: int, status: int, zh: str, en: str) -> Refused:
    return Refused(status, zh, en, "upload.refused", f"answers:{answer_id}")


def _media_type() -> str:
    return (request.mimetype or "").lower()


def _looks_like(media_type: str, head: bytes) -> bool:
    """The first part's magic bytes match its declared container (WebM/Matroska, MP4, Ogg)."""
    if media_type.endswith("/webm"):
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if media_type.endswith("/mp4"):
        return head[4:8] == b"ftyp"
    return head.startswith(b"OggS")


def _next_seq(db: Session, answer_id: int) -> tuple[int, int]:
    count, size = db.execute(
        select(func.count(UploadPart.id), func.coalesce(func.sum(UploadPart.size_bytes), 0)).where(
            UploadPart.answer_id == answer_id
        )
    ).one()
    return int(count), int(size)


@bp.get("/interview/answers/<int:answer_id>/parts")
def parts(answer_id: int) -> Any:
    """Where an interrupted upload resumes: the next part number the box expects."""
    taking = _taking()
    with _store().session() as db:
        _own_take(db, taking, answer_id)
        seq, size = _next_seq(db, answer_id)
    return jsonify({"next": seq, "bytes": size})


def _answer_limit(db: Session, take: Answer) -> int:
    question = db.get(InterviewQuestion, take.question_id)
    seconds = (question.answer_seconds if question is not None else 120) + 30
    return seconds * MAX_BYTES_PER_SECOND


@bp.put("/interview/answers/<int:answer_id>/parts/<int:seq>")
def upload_part(answer_id: int, seq: int) -> Any:
    """One MediaRecorder chunk, streamed into its own encrypted blob as it arrives."""
    taking = _taking()
    store = _store()
    media_type, length = _media_type(), request.content_length
    if media_type not in UPLOAD_TYPES:
        raise _upload_refused(
            taking,
            answer_id,
            415,
            "上传的文件类型不正确：只接受浏览器录制的 WebM、MP4 或 Ogg 音视频。",
            "Wrong upload type: only WebM, MP4 or Ogg audio/video recorded by the browser.",
        )
    if length is None or not 0 < length <= PART_MAX_BYTES:
        raise _upload_refused(
            taking,
            answer_id,
            413,
            f"上传的数据块大小不正确（每块最多 {PART_MAX_BYTES >> 20} MB）。",
            f"Wrong upload size (at most {PART_MAX_BYTES >> 20} MB per part).",
        )
    with store.session() as db:
        _require_recording_consent(db, taking)
        take = _own_take(db, taking, answer_id)
        expected, size = _next_seq(db, answer_id)
        limit = _answer_limit(db, take)
    if seq < expected:
        return jsonify({"next": expected, "bytes": size, "duplicate": True})
    if seq > expected:
        return jsonify(
            {"error": "upload.out_of_order", "next": expected, "message": "resume at next"}
        ), 409
    if size + length > limit:
        raise _upload_refused(
            taking,
            answer_id,
            413,
            "这次作答上传的数据超过了允许的大小。",
            "This answer's upload is larger than allowed.",
        )
    blob_id, written = _stream_part(store, taking, answer_id, seq, media_type, length)
    try:
        with store.transaction() as db:
            db.add(
                UploadPart(
                    answer_id=answer_id,
                    seq=seq,
                    blob_id=blob_id,
                    size_bytes=written,
                    media_type=media_type,
                )
            )
    except Exception:
        store.blobs.delete(blob_id)  # the same part came twice at once: keep the first
        raise
    return jsonify({"next": seq + 1, "bytes": size + written}), 201


def _stream_part(
    store: Store, taking: Taking, answer_id: int, seq: int, media_type: str, length: int
) -> tuple[str, int]:
    """Write the body into a new blob under the candidate's key; never a plain file."""
    writer = store.blobs.create(taking.subject_id)
    written = 0
    try:
        with writer:
            for block in _body_blocks():
                if written == 0 and seq == 0 and not _looks_like(media_type, block[:16]):
                    raise _upload_refused(
                        taking,
                        answer_id,
                        415,
                        "上传的内容不是所声明的音视频格式。",
                        "The upload's content is not the audio/video format it claims.",
                    )
                written += len(block)
                if written > length:
                    break
                writer.write(block)
        if written != length:
            raise _upload_refused(
                taking,
                answer_id,
                400,
                "上传的数据不完整，请重试。",
                "The upload was incomplete: please try again.",
            )
    except BaseException:
        store.blobs.delete(writer.blob_id)
        raise
    return writer.blob_id, written


@bp.post("/interview/answers/<int:answer_id>/parts/finish")
def finish_upload(answer_id: int) -> Any:
    """Join the parts into one encrypted recording (chunk by chunk, in memory), then queue
    the answer's analysis."""
    taking = _taking()
    store = _store()
    payload = request.get_json(silent=True) or {}
    with store.session() as db:
        _own_take(db, taking, answer_id)
        rows = list(
            db.scalars(
                select(UploadPart).where(UploadPart.answer_id == answer_id).order_by(UploadPart.seq)
            )
        )
        parts_info = [(p.id, p.blob_id, p.size_bytes, p.media_type) for p in rows]
    expected = payload.get("parts") if isinstance(payload, dict) else None
    if not parts_info or (isinstance(expected, int) and expected != len(parts_info)):
        return jsonify(
            {
                "error": "upload.incomplete",
                "next": len(parts_info),
                "message": "上传尚未完成，正在继续上传。",
                "message_en": "The upload is not complete yet; it is being resumed.",
            }
        ), 409
    duration = payload.get("duration_ms") if isinstance(payload, dict) else None
    recording_id = _join_parts(store, taking, answer_id, parts_info, duration)
    queued = _analyse(answer_id)
    audit.record(store, taking.actor, "answer.upload", f"recordings:{recording_id}", PURPOSE)
    return jsonify({"recording_id": recording_id, "recorded": True, "analysis": queued})


def _join_parts(
    store: Store,
    taking: Taking,
    answer_id: int,
    parts_info: list[tuple[int, str, int, str]],
    duration: Any,
) -> int:
    writer = store.blobs.create(taking.subject_id)
    try:
        with writer:
            for _id, blob_id, _size, _type in parts_info:
                with store.blobs.open(blob_id) as reader:
                    for chunk in reader:
                        writer.write(chunk)
        with store.transaction() as db:
            recording = Recording(
                answer_id=answer_id,
                subject_id=taking.subject_id,
                blob_id=writer.blob_id,
                media_type=parts_info[0][3],
                duration_ms=int(duration) if isinstance(duration, int | float) else None,
                size_bytes=sum(p[2] for p in parts_info),
                complete=True,
            )
            db.add(recording)
            for part_id, *_rest in parts_info:
                part = db.get(UploadPart, part_id)
                if part is not None:
                    db.delete(part)
            take = db.get(Answer, answer_id)
            if take is not None:
                take.ended_at = utcnow()
            db.flush()
            recording_id = recording.id
    except BaseException:
        store.blobs.delete(writer.blob_id)
        raise
    for _id, blob_id, _size, _type in parts_info:
        store.blobs.delete(blob_id)
    return recording_id


bp.register_error_handler(AccessDenied, answer_denied)
bp.after_request(no_store)
