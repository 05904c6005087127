"""Interview analysis on the `analysis` queue (issue #5, item 7): one job per answer, one
job per session for the score report.

`analyse_answer(ctx, answer_id)`, steps in order (`AnswerAnalysis.step` names the one
running or the one that failed):

0. Nothing at all without the person's recording consent (which covers transcription:
   the register's `recording` purpose); the answer then says so (step `consent`).
1. `media`: the answer's latest complete recording is decrypted into memory (never a
   plain file on disk).
2. `asr`: transcribed in the answer's language: the job's interview language when HR
   set one (`Job.requirements["language"]`, zh or en; a question's own `language`
   wins where the record has one), else detected for this answer alone. The terms HR
   listed for the job are the decoder's prompt (`vocabulary_prompt` says why only
   those). The transcript (`Transcript.stored()`,
   JSON) is written to `Answer.transcript` through the gate. Where a scale-out worker
   host already transcribed this very recording (`[workers] transcription = "remote"`,
   `enqueue_answer`; issue 9), its stored transcript is used and the box runs no ASR.
3. `signals`: speech (rate, pauses, fillers) and content (structure, coherence,
   keyword and competency match) signals, sealed in `AnswerAnalysis.signals` as
   `{"speech": ..., "content": ...}`. They exist to score: under a human-only
   evaluation (AI scoring not allowed for the person, see below) they are not
   computed, and the transcript alone serves the people who evaluate.
4. `face`: only when `compliance.register.may_process(..., "face_analysis")` says so
   (the profile allows it, its impact assessment is approved, the person's separate
   consent holds: PIPL Art. 28-29, 55). The identity reference is carried over from
   the session's earliest answer that has one, so a change of person between answers
   is caught. Expression estimates come from the same frames, only where
   `may_process(..., "expression_analysis")` holds too (never under the EU profile:
   AI Act Art. 5(1)(f)). Without permission the answer's face and expression rows are
   deleted, so "no face data exists for this person" stays one query.

Then, once every question's latest take is analysed (and the session is completed
or every question of its plan answered), `score_session` follows: enqueued (ids
only) inside a worker, run in the same process when called directly (tests, bench,
CLI). `score_session` writes the `ScoreReport` only where `may_process(...,
"ai_scoring")` holds; otherwise the session is marked `human_only` (PIPL Art. 24: a
person may refuse automated evaluation) and any earlier report is removed.

Consent is checked before each step and again right before its results are written
(a withdrawal may land while a job runs; `compliance.consent`).

Idempotent: every row is unique per answer or per session and is replaced, never
added twice. Failures: the step's `AnswerAnalysis` says `failed` with the step and
reason, the session says `failed` with "answer 12: asr: <reason>", and the job
raises `AnalysisFailed` so rq retries it. Reasons name exception types, ids and
model or decoder messages, never content: for the steps that handle words (signals,
score) only the exception's type is kept.

Models load once per worker process: every factory used here is cached
(`asr.transcriber`, `faces.face_analyzer`, `expression.expression_analyzer`, the
sentence embedding).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from rq import get_current_job
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from appliance.records import (
    AnalysisStatus,
    Answer,
    AnswerAnalysis,
    ConsentPurpose,
    ExpressionSignals,
    FaceSignals,
    InterviewQuestion,
    InterviewSession,
    Job,
    JobRun,
    Recording,
    RunStatus,
    ScoreReport,
    SessionStatus,
    utcnow,
)
from appliance.settings import Settings, load_settings
from appliance.store import Store
from compliance import consent, profiles
from compliance.actors import Actor
from compliance.gate import Gate
from compliance.register import may_process
from workers.analysis.transcript import Transcript
from workers.jobs import JobContext, JobFunction, get_job_logger, job

PIPELINE_VERSION = "enclave-analysis/1"
PURPOSE = "processing"
HUMAN_ONLY = "human_only"
"""`InterviewSession.analysis_status` of a session evaluated by people only (no AI score)."""
RUNNING, DONE, FAILED = (AnalysisStatus.RUNNING, AnalysisStatus.DONE, AnalysisStatus.FAILED)
LANGUAGES = ("zh", "en")
PROMPT_LIMIT = 100
"""Characters of vocabulary in the ASR prompt: Whisper reads at most 223 prompt tokens, and
a Chinese character is one to two of them."""
M = TypeVar("M")
_MESSAGE_STEPS = frozenset({"media", "asr", "face"})
"""Steps whose errors come from decoders and models: their messages are kept (no content)."""


class AnalysisFailed(RuntimeError):
    """A step of an analysis failed; the message (ids, step, reason) is also on the session."""


class MissingRecording(LookupError):
    """The answer has no complete recording (yet): a retry may find it."""


# --- settings -----------------------------------------------------------------------------

_SETTINGS: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Use these settings for jobs on `settings.data_dir` (tests, bench, CLI); a worker
    otherwise reads the box's (config file and ENCLAVE_* environment). None: forget them."""
    global _SETTINGS
    _SETTINGS = settings


def analysis_settings(store: Store) -> Settings:
    if _SETTINGS is not None and _SETTINGS.data_dir == store.data_dir:
        return _SETTINGS
    return load_settings(data_dir=store.data_dir)


def _prepare(ctx: JobContext) -> Settings:
    """The settings, with their jurisdiction put in force for this process (recorded, and
    audited when it changed: compliance.profiles.activate)."""
    settings = analysis_settings(ctx.store)
    profiles.activate(ctx.store, settings.jurisdiction, f"job:{ctx.rq_job_id}")
    return settings


# --- the plan of one answer (records only, no personal data) --------------------------------


@dataclass(frozen=True)
class AnswerPlan:
    answer_id: int
    session_id: int
    subject_id: str
    blob_id: str | None
    media_type: str | None
    """`Recording.media_type`: the media service's RTP log is remuxed before decoding."""
    language: str | None
    prompt: str | None
    question: str
    competency: str | None
    job: Any
    """`scoring.JobSpec` of the session's job."""


def job_spec(job: Job) -> Any:
    """The scoring module's view of a requisition: title, description, requirements and the
    keywords HR listed (`requirements` keys keywords, skills, licences)."""
    from workers.analysis.scoring import JobSpec

    # `language` is how the interview is held, not something a candidate should say.
    requirements = {k: v for k, v in (job.requirements or {}).items() if k != "language"}
    keywords: list[str] = []
    for key in ("keywords", "skills", "licences"):
        value = requirements.get(key)
        values = value if isinstance(value, list) else [value] if value else []
        keywords.extend(str(v) for v in values if str(v).strip())
    return JobSpec(
        title=job.title,
        description=job.description or "",
        requirements=requirements,
        keywords=list(dict.fromkeys(keywords)),
    )


def answer_language(question: InterviewQuestion, job: Job) -> str | None:
    """zh or en when the question or the job fixes it; None: detect it for this answer."""
    for value in (getattr(question, "language", None), (job.requirements or {}).get("language")):
        if value in LANGUAGES:
            return str(value)
    return None


def vocabulary_prompt(job: Job, spec: Any) -> str | None:
    """The job's vocabulary for the decoder: the terms HR listed for the job
    (`requirements` keywords, skills, licences: `JobSpec.keywords`), or None.

    Why not the title, the other requirement strings and the competencies as well: on
    the ten Mandarin answers of the fixture DEV set, with the language given, a prompt
    of title and requirement terms made the micro CER worse (11.3 % -> 13.1 %) and the
    decoding 2.8 times slower (faster-whisper hotwords, temperature fallbacks), and the
    scoring dimensions' names (沟通能力, 团队协作, ...), which candidates rarely say, made
    Whisper write them in and loop (CER 52 % on one clip). Terms a candidate is
    likely to say are what a prompt can help with.
    """
    words = [t for t in dict.fromkeys(k.strip() for k in spec.keywords) if t and not t.isdigit()]
    if not words:
        return None
    joiner = "，" if any("\u4e00" <= ch <= "\u9fff" for ch in "".join(words)) else ", "
    prompt = words[0]
    for word in words[1:]:
        if len(prompt) + len(word) + 1 > PROMPT_LIMIT:
            break
        prompt += joiner + word
    return prompt


def plan_answer(db: Session, answer_id: int) -> AnswerPlan:
    answer = db.get(Answer, answer_id)
    if answer is None:
        raise LookupError(f"answer {answer_id} does not exist")
    question = db.get(InterviewQuestion, answer.question_id)
    if question is None:
        raise LookupError(f"answer {answer_id} names no existing question")
    job = answer.session.application.job
    recording = db.scalars(
        select(Recording)
        .where(Recording.answer_id == answer_id, Recording.complete.is_(True))
        .order_by(Recording.id.desc())
        .limit(1)
    ).first()
    spec = job_spec(job)
    return AnswerPlan(
        answer_id=answer.id,
        session_id=answer.session_id,
        subject_id=answer.subject_id,
        blob_id=recording.blob_id if recording is not None else None,
        media_type=recording.media_type if recording is not None else None,
        language=answer_language(question, job),
        prompt=vocabulary_prompt(job, spec),
        question=question.text,
        competency=question.competency,
        job=spec,
    )


# --- bookkeeping (clear columns only) ---------------------------------------------------------


def _analysis_row(db: Session, plan: AnswerPlan) -> AnswerAnalysis:
    row = db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id == plan.answer_id))
    found = row.first()
    if found is None:
        found = AnswerAnalysis(answer_id=plan.answer_id, subject_id=plan.subject_id)
        db.add(found)
    return found


def latest_answers(db: Session, session_id: int) -> list[Answer]:
    """The take that counts for each question: the latest attempt (retakes replace)."""
    answers = db.scalars(
        select(Answer)
        .where(Answer.session_id == session_id)
        .order_by(Answer.question_id, Answer.attempt, Answer.id)
    ).all()
    latest: dict[int, Answer] = {}
    for answer in answers:
        latest[answer.question_id] = answer
    return list(latest.values())


def _statuses(db: Session, answers: Sequence[Answer]) -> dict[int, AnswerAnalysis]:
    ids = [a.id for a in answers]
    rows = db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id.in_(ids)))
    return {row.answer_id: row for row in rows}


def refresh_session(db: Session, session: InterviewSession) -> None:
    """The session's analysis status from its answers': failed (naming the first failed
    answer, step and reason) before running; left alone once all are done (scoring
    decides between done and human_only)."""
    answers = latest_answers(db, session.id)
    analyses = _statuses(db, answers)
    failed = [
        analyses[a.id] for a in answers if a.id in analyses and analyses[a.id].status == FAILED
    ]
    if failed:
        first = failed[0]
        session.analysis_status = FAILED.value
        session.analysis_error = f"answer {first.answer_id}: {first.step}: {first.error}"
        return
    session.analysis_error = None
    if any(a.id not in analyses or analyses[a.id].status != DONE for a in answers):
        session.analysis_status = RUNNING.value
    elif session.analysis_status in (None, FAILED.value):
        session.analysis_status = RUNNING.value  # all analysed: scoring is next


def ready_to_score(db: Session, session: InterviewSession) -> bool:
    """Every question's latest take analysed, and nothing more to come: the session is
    completed, or every question of its plan has an answer."""
    answers = latest_answers(db, session.id)
    if not answers:
        return False
    analyses = _statuses(db, answers)
    if any(a.id not in analyses or analyses[a.id].status != DONE for a in answers):
        return False
    answered = {a.question_id for a in answers}
    planned = {q.id for q in session.plan.questions}
    return session.status == SessionStatus.COMPLETED or planned <= answered


def required(db: Session, model: type[M], row_id: int) -> M:
    """The row, or LookupError naming the table and id (a record deleted under a job)."""
    row = db.get(model, row_id)
    if row is None:
        raise LookupError(f"{getattr(model, '__tablename__', model)} {row_id} does not exist")
    return row


def _reason(step: str, exc: BaseException) -> str:
    if step not in _MESSAGE_STEPS:
        return type(exc).__name__
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@contextmanager
def _writing(store: Store) -> Iterator[Session]:
    """A transaction holding SQLite's write lock from BEGIN: two workers finishing answers of
    one session at once take turns at a get-or-create instead of one failing on a stale
    snapshot (the gate writes the same way)."""
    with store.session() as db:
        db.connection(execution_options={"begin": "IMMEDIATE"})
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        db.commit()


def _set_step(store: Store, plan: AnswerPlan, step: str) -> None:
    with _writing(store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = RUNNING, step, None


# --- writing through the gate ---------------------------------------------------------------


def _actor(ctx: JobContext) -> Actor:
    return Actor.system(ctx.rq_job_id)


def _seal(ctx: JobContext, model: type[Any], row_id: int, changes: dict[str, str | None]) -> None:
    """Write sealed fields of one row through the gate (one audit event, purpose processing)."""
    with ctx.store.session() as db:
        row = db.get(model, row_id)
        if row is None:
            raise LookupError(f"{model.__tablename__} {row_id} vanished while it was written")
        Gate(ctx.store).update_many(_actor(ctx), [(row, changes)], PURPOSE)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def _step(ctx: JobContext, plan: AnswerPlan, step: str) -> Iterator[None]:
    """Run one step: record it as running; on failure record it (answer and session) and
    raise `AnalysisFailed` for rq to retry."""
    _set_step(ctx.store, plan, step)
    try:
        yield
    except Exception as exc:
        reason = _reason(step, exc)
        with _writing(ctx.store) as db:
            row = _analysis_row(db, plan)
            row.status, row.step, row.error = FAILED, step, reason
            db.flush()
            session = db.get(InterviewSession, plan.session_id)
            if session is not None:
                refresh_session(db, session)
        message = f"answer {plan.answer_id}: {step}: {reason}"
        ctx.logger.error("analysis failed: %s", message)
        if step in _MESSAGE_STEPS:
            raise AnalysisFailed(message) from exc
        raise AnalysisFailed(message) from None  # the cause may quote the answer


# --- the steps ------------------------------------------------------------------------------


def read_recording(store: Store, plan: AnswerPlan) -> bytes:
    if plan.blob_id is None:
        raise MissingRecording(f"answer {plan.answer_id} has no complete recording")
    from appliance.recordings import playable_bytes

    with store.blobs.open(plan.blob_id) as reader:
        plaintext = bytes(reader.read())
    # A WebRTC answer is stored as received RTP (issue 7): remuxed in memory, never on disk.
    return playable_bytes(plan.media_type or "", plaintext)


def transcribe(settings: Settings, media: bytes, plan: AnswerPlan) -> Transcript:
    from workers.analysis.asr import transcriber
    from workers.analysis.audio import load_audio

    audio = load_audio(media)
    result: Transcript = transcriber(settings.ai).transcribe(audio, plan.language, plan.prompt)
    return result


def answer_signals(transcript: Transcript, spec: Any, competency: str | None) -> dict[str, Any]:
    """`{"speech", "content"}` signals of one answer (`spec`: the job's `scoring.JobSpec`)."""
    from workers.analysis.content import content_signals
    from workers.analysis.speech import speech_signals

    return {
        "speech": speech_signals(transcript),
        "content": content_signals(transcript, spec, competency),
    }


def _allowed(store: Store, subject_id: str, feature: str) -> bool:
    with store.session() as db:
        return may_process(db, subject_id, feature)


def _recording_consent(store: Store, subject_id: str) -> bool:
    """Recording and transcribing need the person's recording consent (the register's
    `recording` purpose; its withdrawal deletes recordings and transcripts)."""
    with store.session() as db:
        return consent.holds(db, subject_id, ConsentPurpose.RECORDING)


NO_RECORDING_CONSENT = "the recording consent does not hold (declined or withdrawn)"


def _without_recording_consent(ctx: JobContext, plan: AnswerPlan) -> None:
    """Nothing may be derived: drop what exists and say so on the answer and the session
    (a refusal, not a fault: no retry)."""
    for model in (ExpressionSignals, FaceSignals):
        _drop(ctx.store, model, plan.answer_id)
    with _writing(ctx.store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = FAILED, "consent", NO_RECORDING_CONSENT
        db.flush()
        refresh_session(db, required(db, InterviewSession, plan.session_id))
    ctx.logger.info("answer %d not analysed: no recording consent", plan.answer_id)


def earlier_reference(ctx: JobContext, plan: AnswerPlan) -> list[float] | None:
    """The identity reference of the session's earliest other answer that has one (read
    through the gate: it is biometric), so every answer is compared with the same person."""
    with ctx.store.session() as db:
        rows = db.scalars(
            select(FaceSignals)
            .join(Answer, FaceSignals.answer_id == Answer.id)
            .where(Answer.session_id == plan.session_id, Answer.id < plan.answer_id)
            .order_by(Answer.id)
        ).all()
        if not rows:
            return None
        shown = Gate(ctx.store).view_many(
            _actor(ctx), list(rows), PURPOSE, ["face_signals.embedding"]
        )
    for item in shown:
        value = item.get("embedding")
        if value:
            reference = json.loads(value)
            if isinstance(reference, list) and reference:
                return [float(x) for x in reference]
    return None


def _drop(store: Store, model: type[Any], answer_id: int) -> None:
    with _writing(store) as db:
        db.execute(delete(model).where(model.answer_id == answer_id))


def _upsert(store: Store, model: type[Any], plan: AnswerPlan, versions: dict[str, str]) -> int:
    with _writing(store) as db:
        row = db.scalars(select(model).where(model.answer_id == plan.answer_id)).first()
        if row is None:
            row = model(answer_id=plan.answer_id, subject_id=plan.subject_id)
            db.add(row)
        row.model_versions = versions
        db.flush()
        return int(row.id)


def face_step(
    ctx: JobContext, settings: Settings, media: bytes, plan: AnswerPlan
) -> dict[str, str]:
    """Face timeline (and expression) of one answer where allowed; returns model versions."""
    from workers.analysis.faces import analyse_video

    if not _allowed(ctx.store, plan.subject_id, "face_analysis"):
        _drop(ctx.store, ExpressionSignals, plan.answer_id)
        _drop(ctx.store, FaceSignals, plan.answer_id)
        return {}
    expression = None
    if _allowed(ctx.store, plan.subject_id, "expression_analysis"):
        from workers.analysis.expression import ExpressionNotAllowed, expression_analyzer

        try:
            expression = expression_analyzer(settings.ai, settings.jurisdiction)
        except ExpressionNotAllowed:
            expression = None
    timeline = analyse_video(settings, media, earlier_reference(ctx, plan), expression)
    summary = {k: v for k, v in timeline.summary().items() if k != "expression"}
    versions = {"face": timeline.model}
    # Withdrawn while the frames were analysed? Then nothing of it is written.
    if not _allowed(ctx.store, plan.subject_id, "face_analysis"):
        _drop(ctx.store, ExpressionSignals, plan.answer_id)
        _drop(ctx.store, FaceSignals, plan.answer_id)
        return {}
    face_id = _upsert(ctx.store, FaceSignals, plan, versions)
    stored = timeline.as_dict(f"answer-{plan.answer_id}") | {"summary": summary}
    embedding = None if timeline.reference is None else _dump(timeline.reference)
    _seal(ctx, FaceSignals, face_id, {"timeline": _dump(stored), "embedding": embedding})
    signal = timeline.expression if expression is not None else None
    if signal is None or not _allowed(ctx.store, plan.subject_id, "expression_analysis"):
        _drop(ctx.store, ExpressionSignals, plan.answer_id)
        return versions
    versions["expression"] = signal.model
    expression_id = _upsert(ctx.store, ExpressionSignals, plan, {"expression": signal.model})
    _seal(ctx, ExpressionSignals, expression_id, {"signals": _dump(signal.as_dict())})
    return versions


# --- the jobs -------------------------------------------------------------------------------


@job(queue="analysis", timeout=3600, retries=3, backoff=(30, 120, 600))
def analyse_answer(ctx: JobContext, answer_id: int) -> None:
    """Transcribe one answer and derive its signals (module docstring); then score the
    session if this was the last answer it waited for."""
    settings = _prepare(ctx)
    with ctx.store.session() as db:
        plan = plan_answer(db, answer_id)
    if not _recording_consent(ctx.store, plan.subject_id):
        _without_recording_consent(ctx, plan)
        return
    versions: dict[str, str] = {"pipeline": PIPELINE_VERSION} | _worker_transcribed(ctx, plan)
    _start_answer(ctx, plan, versions)
    with _step(ctx, plan, "media"):
        media = read_recording(ctx.store, plan)
    with _step(ctx, plan, "asr"):
        transcript = _stored_transcript(ctx, plan) if ASR_BY in versions else None
        if transcript is None:  # no worker host's transcript of this recording
            versions = {k: v for k, v in versions.items() if k not in ROUTING_KEYS}
            transcript = transcribe(settings, media, plan)
        versions["asr"] = transcript.model
        if not _recording_consent(ctx.store, plan.subject_id):  # withdrawn meanwhile
            _without_recording_consent(ctx, plan)
            return
        if ASR_BY not in versions:
            _seal(ctx, Answer, answer_id, {"transcript": _dump(transcript.stored())})
    ctx.progress(0.5)
    with _step(ctx, plan, "signals"):
        versions |= signals_step(ctx, plan, transcript, versions)
    ctx.progress(0.6)
    with _step(ctx, plan, "face"):
        versions |= face_step(ctx, settings, media, plan)
    del media
    ready = _finish_answer(ctx, plan, versions)
    ctx.progress(1.0)
    ctx.logger.info("answer %d analysed (%s)", answer_id, transcript.language)
    if ready:
        _then(ctx, score_session, plan.session_id)


def _start_answer(ctx: JobContext, plan: AnswerPlan, versions: dict[str, str]) -> None:
    with _writing(ctx.store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = RUNNING, "media", None
        row.model_versions = dict(versions)
        db.flush()
        refresh_session(db, required(db, InterviewSession, plan.session_id))
    ctx.progress(0.02)


def signals_step(
    ctx: JobContext, plan: AnswerPlan, transcript: Transcript, versions: dict[str, str]
) -> dict[str, str]:
    """Speech and content signals where AI scoring is allowed for the person (else none:
    a human-only evaluation needs the transcript only); returns the versions used."""
    signals, used = None, dict(versions)
    if _allowed(ctx.store, plan.subject_id, "ai_scoring"):
        from workers.analysis import embedding

        signals = answer_signals(transcript, plan.job, plan.competency)
        used["embedding"] = embedding.model_version()
    with _writing(ctx.store) as db:
        row = _analysis_row(db, plan)
        row.language = transcript.language
        row.duration_s = round(transcript.duration_s, 3)
        row.model_versions = used
        db.flush()
        analysis_id = row.id
    _seal(
        ctx, AnswerAnalysis, analysis_id, {"signals": None if signals is None else _dump(signals)}
    )
    return used


def _finish_answer(ctx: JobContext, plan: AnswerPlan, versions: dict[str, str]) -> bool:
    """Mark the answer done; whether the session is now ready to be scored."""
    with _writing(ctx.store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = DONE, None, None
        row.model_versions = dict(versions)
        db.flush()
        session = required(db, InterviewSession, plan.session_id)
        refresh_session(db, session)
        return ready_to_score(db, session)


def _then(ctx: JobContext, follow: JobFunction, *ids: int) -> None:
    """Inside a worker: enqueue the next job (ids only). Called directly: run it here."""
    current = get_current_job()
    if current is not None:
        follow.enqueue(ctx.store, current.connection, *ids)
    else:
        follow(ctx, *ids)


@dataclass
class _Inputs:
    answers: list[Any]
    """`scoring.AnswerInput` per question (its latest take)."""
    versions: dict[str, str]


def score_inputs(ctx: JobContext, db: Session, answers: Sequence[Answer]) -> _Inputs:
    """Transcripts, signals and face summaries of the answers, read through the gate in one
    call (one audit event for the batch)."""
    from workers.analysis.scoring import AnswerInput

    ids = [a.id for a in answers]
    analyses = {
        r.answer_id: r
        for r in db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id.in_(ids)))
    }
    faces = {
        r.answer_id: r
        for r in db.scalars(select(FaceSignals).where(FaceSignals.answer_id.in_(ids)))
    }
    rows: list[Any] = [*answers, *analyses.values(), *faces.values()]
    fields = ["answers.transcript", "answer_analyses.signals", "face_signals.timeline"]
    shown = Gate(ctx.store).view_many(_actor(ctx), rows, PURPOSE, fields)
    by_row = {(s.entity, s.id): s for s in shown}
    inputs: list[Any] = []
    versions: dict[str, str] = {}
    for answer in answers:
        transcript_json = by_row[("answers", answer.id)].get("transcript")
        analysis = analyses[answer.id]
        signals_json = by_row[("answer_analyses", analysis.id)].get("signals")
        if not transcript_json:
            raise LookupError(f"answer {answer.id} has no stored transcript")
        transcript = Transcript.from_stored(json.loads(transcript_json))
        question = required(db, InterviewQuestion, answer.question_id)
        if signals_json:
            signals = json.loads(signals_json)
        else:  # analysed as human-only, AI scoring allowed since: derive them now
            job_row = answer.session.application.job
            signals = answer_signals(transcript, job_spec(job_row), question.competency)
        face = faces.get(answer.id)
        face_summary = None
        if face is not None:
            timeline_json = by_row[("face_signals", face.id)].get("timeline")
            face_summary = json.loads(timeline_json).get("summary") if timeline_json else None
        inputs.append(
            AnswerInput(
                answer_id=answer.id,
                question=question.text,
                competency=question.competency,
                transcript=transcript,
                speech=signals["speech"],
                content=signals["content"],
                face=face_summary,
            )
        )
        versions |= {
            k: str(v)
            for k, v in (analysis.model_versions or {}).items()
            if k not in ROUTING_KEYS  # per answer, not a model of the report
        }
    return _Inputs(inputs, versions)


def dimension_specs(job: Job) -> list[Any]:
    from workers.analysis.scoring import DimensionSpec, RubricSpec

    if job.scoring_template is None:
        raise LookupError(f"job {job.id} has no scoring template")
    return [
        DimensionSpec(
            id=str(d.id),
            name=d.name,
            weight=d.weight,
            rubric=[RubricSpec(score=line.score, text=line.text) for line in d.rubric],
        )
        for d in job.scoring_template.dimensions
    ]


def _set_session(store: Store, session_id: int, status: str, error: str | None) -> None:
    with _writing(store) as db:
        session = db.get(InterviewSession, session_id)
        if session is not None:
            session.analysis_status, session.analysis_error = status, error


def _remove_report(store: Store, session_id: int) -> None:
    """No AI report for a person who refused automated scoring (or whose consent lapsed):
    the report and the overrides of it go (PIPL Art. 24, Art. 47)."""
    from appliance.records import ScoreOverride

    with _writing(store) as db:
        report_ids = list(
            db.scalars(select(ScoreReport.id).where(ScoreReport.session_id == session_id))
        )
        if report_ids:
            db.execute(delete(ScoreOverride).where(ScoreOverride.report_id.in_(report_ids)))
            db.execute(delete(ScoreReport).where(ScoreReport.id.in_(report_ids)))


@job(queue="analysis", timeout=1800, retries=2, backoff=(30, 300))
def score_session(ctx: JobContext, session_id: int) -> None:
    """The session's score report, once all its answers are analysed (else nothing yet:
    the last `analyse_answer` brings it back). Human-only evaluation without AI scoring."""
    _prepare(ctx)
    with ctx.store.session() as db:
        session = db.get(InterviewSession, session_id)
        if session is None:
            raise LookupError(f"interview session {session_id} does not exist")
        if not ready_to_score(db, session):
            ctx.logger.info("session %d: answers still being analysed", session_id)
            return
        subject_id = session.application.candidate.subject_id
        application_id = session.application_id
    if not _allowed(ctx.store, subject_id, "ai_scoring"):
        _remove_report(ctx.store, session_id)
        _set_session(ctx.store, session_id, HUMAN_ONLY, None)
        ctx.logger.info("session %d: human-only evaluation, no AI score", session_id)
        return
    try:
        report = _score(ctx, session_id)
        if not _allowed(ctx.store, subject_id, "ai_scoring"):  # withdrawn meanwhile
            _remove_report(ctx.store, session_id)
            _set_session(ctx.store, session_id, HUMAN_ONLY, None)
            return
        _write_report(ctx, session_id, application_id, subject_id, report)
    except Exception as exc:
        message = f"session {session_id}: score: {type(exc).__name__}"
        _set_session(ctx.store, session_id, FAILED.value, message)
        ctx.logger.error("scoring failed: %s", message)
        raise AnalysisFailed(message) from None  # the cause may quote an answer
    _set_session(ctx.store, session_id, DONE.value, None)
    ctx.progress(1.0)
    ctx.logger.info("session %d scored", session_id)


def _score(ctx: JobContext, session_id: int) -> dict[str, Any]:
    from workers.analysis.scoring import score_report

    with ctx.store.session() as db:
        session = required(db, InterviewSession, session_id)
        job_row = session.application.job
        dimensions = dimension_specs(job_row)
        inputs = score_inputs(ctx, db, latest_answers(db, session_id))
        spec = job_spec(job_row)
    versions = {k: v for k, v in inputs.versions.items() if k != "pipeline"}
    versions["pipeline"] = PIPELINE_VERSION
    report: dict[str, Any] = score_report(dimensions, spec, inputs.answers, versions)
    return report


def _write_report(
    ctx: JobContext, session_id: int, application_id: int, subject_id: str, report: dict[str, Any]
) -> None:
    with _writing(ctx.store) as db:
        row = db.scalars(select(ScoreReport).where(ScoreReport.session_id == session_id)).first()
        if row is None:
            row = ScoreReport(
                session_id=session_id, application_id=application_id, subject_id=subject_id
            )
            db.add(row)
        row.model_versions = dict(report.get("model_versions") or {})
        db.flush()
        report_id = row.id
    _seal(ctx, ScoreReport, report_id, {"report": _dump(report)})


# --- running without a worker ---------------------------------------------------------------


def local_context(store: Store, name: str) -> JobContext:
    """A `JobContext` with its own `JobRun` row, to run a job in this process (tests, the
    bench, a CLI): what `workers.jobs.run_job` sets up inside a worker."""
    run = JobRun(
        rq_job_id=uuid.uuid4().hex,
        name=name,
        queue="analysis",
        status=RunStatus.RUNNING,
        progress=0.0,
        attempts=1,
    )
    with _writing(store) as db:
        db.add(run)
        db.flush()
        run_id = run.id
    return JobContext(
        store=store,
        run_id=run_id,
        rq_job_id=run.rq_job_id,
        logger=get_job_logger(__name__, run.rq_job_id),
    )


def analyse_session_here(store: Store, session_id: int) -> None:
    """Analyse every question's latest take of a session in this process, then score it
    (the last answer triggers `score_session`)."""
    with store.session() as db:
        ids = [a.id for a in latest_answers(db, session_id)]
    for answer_id in ids:
        analyse_answer(local_context(store, analyse_answer.name), answer_id)


def enqueue_session(
    store: Store, redis: Any, session_id: int, settings: Settings | None = None
) -> list[JobRun]:
    """Put every question's latest take of a session on the queue (re-analysis, or the
    interview's end): one job each, routed by `enqueue_answer`; scoring follows by itself."""
    with store.session() as db:
        ids = [a.id for a in latest_answers(db, session_id)]
    return [enqueue_answer(store, redis, answer_id, settings) for answer_id in ids]


# --- routing: the box or the scale-out worker hosts (issue 9, item 3) -------------------------

TRANSCRIPTION = "transcription"
"""`model_versions` key of an answer waiting for a worker host's transcript ("remote")."""
ASR_BY = "asr_by"
"""`model_versions` key naming the worker host that transcribed the answer ("worker:gpu-1")."""
ASR_BLOB = "asr_blob"
"""`model_versions` key: the recording (blob id) the worker host's transcript is of."""
ROUTING_KEYS = frozenset({TRANSCRIPTION, ASR_BY, ASR_BLOB})
REMOTE_JOB_NAME = "workers.remote.remote_transcribe"
WAITING_FOR_WORKER = (AnalysisStatus.QUEUED, "asr")
"""(status, step) of an answer whose transcription a worker host has not delivered yet."""


def enqueue_answer(
    store: Store, redis: Any, answer_id: int, settings: Settings | None = None
) -> JobRun:
    """The one way an answer's analysis is queued (the interview, `enqueue_session`).

    `[workers] transcription = "box"`: `analyse_answer` on the box's `analysis` queue.
    `"remote"`: the worker hosts transcribe it first (`workers.remote`, queue
    `analysis-remote`, ids only); when their transcript reaches the internal API
    (`remote_transcript_stored`), the box queues `analyse_answer`, which uses that
    transcript and keeps signals, face and score on the box, where the store is.
    """
    settings = settings or analysis_settings(store)
    if settings.workers.transcription == "remote":
        return _enqueue_remote(store, redis, answer_id)
    return analyse_answer.enqueue(store, redis, answer_id)


def _enqueue_remote(store: Store, redis: Any, answer_id: int) -> JobRun:
    """Mark the answer as waiting for a worker host, then hand its id to them; its
    `JobRun` (queue analysis-remote) is what the internal API closes."""
    from workers.remote import REMOTE_QUEUE, enqueue_transcription

    with store.session() as db:
        plan = plan_answer(db, answer_id)
    with _writing(store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = WAITING_FOR_WORKER[0], WAITING_FOR_WORKER[1], None
        row.model_versions = {"pipeline": PIPELINE_VERSION, TRANSCRIPTION: "remote"}
        db.flush()
        refresh_session(db, required(db, InterviewSession, plan.session_id))
        run = JobRun(
            rq_job_id=uuid.uuid4().hex,
            name=REMOTE_JOB_NAME,
            queue=REMOTE_QUEUE,
            status=RunStatus.QUEUED,
            progress=0.0,
            attempts=0,
        )
        db.add(run)
        db.flush()
        db.expunge(run)
    try:
        enqueue_transcription(redis, answer_id, job_id=run.rq_job_id)
    except Exception as exc:
        reason = f"could not be queued for the worker hosts: {type(exc).__name__}"
        remote_transcription_failed(store, answer_id, None, reason, run.rq_job_id)
        raise
    return run


def _remote_run(db: Session, job_id: str | None) -> JobRun | None:
    if job_id is None:
        return None
    return db.scalars(
        select(JobRun).where(JobRun.rq_job_id == job_id, JobRun.name == REMOTE_JOB_NAME)
    ).first()


def remote_transcript_stored(
    store: Store, answer_id: int, worker: str, model: str, job_id: str | None = None
) -> bool:
    """A worker host's transcript of the answer's recording is now in `Answer.transcript`
    (the internal API wrote it through the gate): mark whose and of which recording, so
    `analyse_answer` uses it instead of transcribing again. True when the answer was
    waiting for it, i.e. the box should now queue `analyse_answer`."""
    with store.session() as db:
        plan = plan_answer(db, answer_id)
    with _writing(store) as db:
        row = _analysis_row(db, plan)
        versions = dict(row.model_versions or {})
        waiting = (row.status, row.step) == WAITING_FOR_WORKER and (
            versions.get(TRANSCRIPTION) == "remote"
        )
        marker = {ASR_BY: f"worker:{worker}", ASR_BLOB: plan.blob_id or "", "asr": model}
        row.model_versions = {k: v for k, v in versions.items() if k != TRANSCRIPTION} | marker
        run = _remote_run(db, job_id)
        if run is not None:
            run.status, run.progress, run.error = RunStatus.SUCCEEDED, 1.0, None
            run.attempts = (run.attempts or 0) + 1
            run.ended_at = utcnow()
    return waiting


def remote_transcription_failed(
    store: Store, answer_id: int, worker: str | None, reason: str, job_id: str | None = None
) -> None:
    """The worker hosts could not transcribe the answer: its analysis says failed at step
    asr with the reason (ids and decoder messages only), and so does the session. If the
    recording consent was withdrawn meanwhile (the box refused the worker), it says that:
    a refusal, not a fault (PIPL Art. 15)."""
    where = f"on worker {worker}" if worker else "remote"
    error = f"transcription {where} failed: {' '.join(reason.split())[:300]}"
    with store.session() as db:
        plan = plan_answer(db, answer_id)
    step, why = ("asr", error)
    if not _recording_consent(store, plan.subject_id):
        step, why = ("consent", NO_RECORDING_CONSENT)
    with _writing(store) as db:
        row = _analysis_row(db, plan)
        row.status, row.step, row.error = FAILED, step, why
        db.flush()
        refresh_session(db, required(db, InterviewSession, plan.session_id))
        run = _remote_run(db, job_id)
        if run is not None:
            run.status, run.error = RunStatus.FAILED, error[:500]
            run.attempts = (run.attempts or 0) + 1
            run.ended_at = utcnow()


def reconcile_remote(store: Store, redis: Any) -> int:
    """A backstop for what a worker host could not report (it died, or lost the box):
    remote jobs rq holds as failed whose `JobRun` is still open are closed as failed, and
    so are their answers' analyses. Returns how many. (For a periodic maintenance job.)"""
    from rq.registry import FailedJobRegistry

    from workers.jobs import SERIALIZER
    from workers.remote import REMOTE_QUEUE

    registry = FailedJobRegistry(REMOTE_QUEUE, connection=redis, serializer=SERIALIZER)
    failed = set(registry.get_job_ids())
    if not failed:
        return 0
    with store.session() as db:
        open_runs = db.scalars(
            select(JobRun.rq_job_id).where(
                JobRun.name == REMOTE_JOB_NAME,
                JobRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
                JobRun.rq_job_id.in_(failed),
            )
        ).all()
    closed = 0
    for job_id in open_runs:
        answer_id = _remote_answer_id(redis, job_id)
        if answer_id is not None:
            remote_transcription_failed(
                store, answer_id, None, "the worker host's job failed", job_id
            )
            closed += 1
    return closed


def _remote_answer_id(redis: Any, job_id: str) -> int | None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RqJob

    from workers.jobs import SERIALIZER

    try:
        args = RqJob.fetch(job_id, connection=redis, serializer=SERIALIZER).args
    except NoSuchJobError:
        return None
    return int(args[0]) if args and isinstance(args[0], int) else None


def _worker_transcribed(ctx: JobContext, plan: AnswerPlan) -> dict[str, str]:
    """The routing marks of a worker host's transcript of this very recording, else {}."""
    with ctx.store.session() as db:
        row = db.scalars(
            select(AnswerAnalysis).where(AnswerAnalysis.answer_id == plan.answer_id)
        ).first()
        versions = dict(row.model_versions or {}) if row is not None else {}
    by, blob = versions.get(ASR_BY), versions.get(ASR_BLOB)
    if not by or plan.blob_id is None or blob != plan.blob_id:
        return {}
    return {ASR_BY: str(by), ASR_BLOB: str(blob)}


def _stored_transcript(ctx: JobContext, plan: AnswerPlan) -> Transcript | None:
    """The transcript a worker host delivered (read through the gate), or None."""
    with ctx.store.session() as db:
        answer = required(db, Answer, plan.answer_id)
        shown = Gate(ctx.store).view_many(_actor(ctx), [answer], PURPOSE, ["answers.transcript"])
    value = shown[0].get("transcript")
    return Transcript.from_stored(json.loads(value)) if value else None


__all__ = [
    "AnalysisFailed",
    "HUMAN_ONLY",
    "analyse_answer",
    "analyse_session_here",
    "configure",
    "enqueue_answer",
    "enqueue_session",
    "reconcile_remote",
    "remote_transcription_failed",
    "remote_transcript_stored",
    "local_context",
    "score_session",
]
