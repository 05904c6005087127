"""The media service's HTTP side, on a unix socket only the web app reaches (issue 7, item 5).

The web app has checked the candidate's token and created the `Answer`; it
forwards the browser's SDP offer here and tells us when the answer ends:

- `GET  /health`
- `POST /answers/{answer_id}/offer`  `{"sdp", "type": "offer"}` -> `{"sdp", "type": "answer"}`
- `POST /answers/{answer_id}/stop`   -> `{"recording_id", "video_frames", "audio_packets",
  "duration_ms", ...}`
- `GET  /answers/{answer_id}`        -> the live state

Errors are JSON `{"error": <English sentence>, "code": <stable id>}`; the web app shows
its own translated message per code. No personal data is logged: ids only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription
from sqlalchemy.orm import Session

from appliance.blobs import BlobStore
from appliance.recordings import MEDIA_TYPE, RecordingWriter
from appliance.records import Answer, InterviewQuestion, Recording
from appliance.settings import Settings
from appliance.store import Store
from webapp.media.captions import CaptionTap, captioner_factory
from webapp.media.capture import Capture, hook_receiver

log = logging.getLogger("enclave.media")

RECORDING_CHUNK_SIZE = 32 << 10
"""Plaintext per encrypted chunk: a chunk reaches the disk when full, so a killed
service loses at most this much (about 0.3 s of 720p video)."""
MAX_SDP_BYTES = 64 << 10
DRAIN_QUIET_S = 0.3
DRAIN_MAX_S = 10.0
"""On stop, media captured before the stop instant may still sit in the socket buffer
or aioice's queue while the service is busy: it belongs to the answer. Keep receiving
until every track has passed the stop instant, or none came for DRAIN_QUIET_S and none
is waiting (`Capture.backlog`: a busy event loop makes a track look quiet while its
packets queue), at most DRAIN_MAX_S (the web app waits 15 s for the stop answer)."""


@dataclass
class MediaState:
    store: Store
    blobs: BlobStore
    settings: Settings | None = None
    """For live captions (the Whisper model's settings); None: no captions."""
    live: dict[int, Capture] = field(default_factory=dict)
    ended: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


STATE = web.AppKey("media_state", MediaState)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "service": "media", "live": len(state.live)})


def _answer_id(request: web.Request) -> int:
    try:
        return int(request.match_info["answer_id"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def _read_offer(request: web.Request) -> RTCSessionDescription | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "bad_json", "the request body is not JSON")
    if not isinstance(body, dict) or body.get("type") != "offer":
        return error(400, "bad_sdp", 'the SDP offer must be {"sdp": ..., "type": "offer"}')
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip() or len(sdp) > MAX_SDP_BYTES:
        return error(400, "bad_sdp", "the SDP offer is missing, empty or too large")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the bad line trips
        return error(400, "bad_sdp", f"the SDP offer is malformed: {type(exc).__name__}")
    if not sdp.startswith("v=0") or not any(m.kind in ("audio", "video") for m in parsed.media):
        return error(400, "bad_sdp", "the SDP offer is malformed: no audio or video section")
    return RTCSessionDescription(sdp=sdp, type="offer")


@dataclass(frozen=True)
class Started:
    subject_id: str
    recording_id: int
    writer: RecordingWriter
    captions: tuple[str | None, str | None] | None
    """(language, vocabulary prompt) when the job shows live captions, else None."""


def _captions_of(db: Session, answer: Answer) -> tuple[str | None, str | None] | None:
    """The job's live captions setting, with the language and vocabulary the offline
    transcription uses (issue 5)."""
    job = answer.session.application.job
    if not job.live_captions:
        return None
    from workers.analysis.jobs import answer_language, job_spec, vocabulary_prompt

    question = db.get(InterviewQuestion, answer.question_id)
    language = answer_language(question, job) if question is not None else None
    return language, vocabulary_prompt(job, job_spec(job))


def _start_recording(state: MediaState, answer_id: int) -> Started | None:
    """Create the blob and its `Recording` row (complete=False until the answer stops)."""
    with state.store.write_transaction() as db:
        answer = db.get(Answer, answer_id)
        if answer is None:
            return None
        captions = _captions_of(db, answer) if state.settings is not None else None
        subject_id = answer.subject_id
        blob = state.blobs.create(subject_id)
        writer = RecordingWriter(blob)
        recording = Recording(
            answer_id=answer_id,
            subject_id=subject_id,
            blob_id=blob.blob_id,
            media_type=MEDIA_TYPE,
            complete=False,
        )
        db.add(recording)
        db.flush()
        return Started(subject_id, recording.id, writer, captions)


def _finish_recording(state: MediaState, capture: Capture) -> None:
    try:
        capture.writer.close()
    except OSError as exc:
        capture.failed = f"finishing the recording failed: {exc.strerror}"
    _save_recording(state, capture)


def _save_recording(state: MediaState, capture: Capture) -> None:
    summary = capture.summary()
    with state.store.write_transaction() as db:
        recording = db.get(Recording, capture.recording_id)
        if recording is not None:
            recording.complete = capture.failed is None
            recording.duration_ms = summary["duration_ms"]
            recording.size_bytes = summary["size_bytes"]


async def offer(request: web.Request) -> web.Response:
    state = request.app[STATE]
    answer_id = _answer_id(request)
    description = await _read_offer(request)
    if isinstance(description, web.Response):
        return description
    async with state.lock:
        if answer_id in state.live:
            return error(409, "busy", f"answer {answer_id} is already being recorded")
        started = await asyncio.to_thread(_start_recording, state, answer_id)
        if started is None:
            return error(404, "no_answer", f"there is no answer {answer_id}")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        capture = Capture(answer_id, started.subject_id, started.recording_id, pc, started.writer)
        if started.captions is not None and state.settings is not None:
            capture.caption = CaptionTap(captioner_factory(state.settings, *started.captions))
        state.live[answer_id] = capture
    try:
        local = await _negotiate(state, capture, description)
    except Exception as exc:
        log.warning("answer %d: negotiation failed: %s", answer_id, type(exc).__name__)
        await _end(state, capture)
        return error(400, "bad_sdp", f"the SDP offer cannot be answered: {exc}")
    log.info("answer %d: recording %d started", answer_id, started.recording_id)
    return web.json_response({"sdp": local.sdp, "type": local.type})


async def _negotiate(
    state: MediaState, capture: Capture, description: RTCSessionDescription
) -> Any:
    pc = capture.pc
    await pc.setRemoteDescription(description)
    kinds = 0
    for transceiver in pc.getTransceivers():
        if transceiver.kind in ("audio", "video"):
            hook_receiver(capture, transceiver.receiver, transceiver.kind)
            kinds += 1
    if not kinds:
        raise ValueError("the offer sends no audio or video")

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await _end(state, capture)

    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription


async def _end(state: MediaState, capture: Capture) -> dict[str, Any]:
    """Close the connection and finish the recording, once (stop, failure or shutdown)."""
    if state.live.get(capture.answer_id) is capture:
        del state.live[capture.answer_id]
        capture.closing = True  # set on the loop thread: no packet is written after this
        try:
            await capture.pc.close()
        except Exception:
            log.exception("answer %d: closing the connection failed", capture.answer_id)
        if capture.caption is not None:
            capture.caption.close()
        # The final chunk and its fsyncs (~10 ms) in a thread: when many answers end
        # together, the others' packets keep flowing meanwhile.
        await asyncio.to_thread(_finish_recording, state, capture)
        state.ended[capture.answer_id] = capture.summary()
        log.info("answer %d: recording %d ended", capture.answer_id, capture.recording_id)
    return state.ended.get(capture.answer_id, capture.summary())


async def stop(request: web.Request) -> web.Response:
    state = request.app[STATE]
    answer_id = _answer_id(request)
    capture = state.live.get(answer_id)
    if capture is None:
        if answer_id in state.ended:
            return web.json_response(state.ended[answer_id])
        return error(404, "not_live", f"answer {answer_id} is not being recorded")
    await _drain(capture)
    return web.json_response(await _end(state, capture))


async def _drain(capture: Capture) -> None:
    capture.stop_at_now()
    deadline = time.monotonic() + DRAIN_MAX_S
    while not capture.drained and time.monotonic() < deadline:
        if time.monotonic() - capture.last_packet >= DRAIN_QUIET_S and not capture.backlog():
            return
        await asyncio.sleep(0.02)


async def status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    answer_id = _answer_id(request)
    capture = state.live.get(answer_id)
    if capture is None:
        if answer_id in state.ended:
            return web.json_response({"state": "ended", **state.ended[answer_id]})
        return error(404, "not_live", f"answer {answer_id} is not being recorded")
    return web.json_response(
        {
            "state": "failed" if capture.failed else capture.pc.connectionState,
            "error": capture.failed,
            **capture.summary(),
        }
    )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure answers JSON, so the web app can show its own message."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal", "the media service failed; see its log")


async def caption(request: web.Request) -> web.Response:
    """The live caption of an answer (for the candidate's own page only; never stored)."""
    state = request.app[STATE]
    capture = state.live.get(_answer_id(request))
    if capture is None or capture.caption is None:
        return error(404, "no_caption", "this answer has no live caption")
    return web.json_response(capture.caption.as_dict())


def make_app(store: Store, settings: Settings | None = None) -> web.Application:
    """`settings` turns live captions on for the jobs that ask for them."""
    app = web.Application(client_max_size=MAX_SDP_BYTES * 2, middlewares=[json_errors])
    blobs = BlobStore(store.blobs.root, store.keyring, chunk_size=RECORDING_CHUNK_SIZE)
    app[STATE] = MediaState(store=store, blobs=blobs, settings=settings)
    app.router.add_get("/health", health)
    app.router.add_post("/answers/{answer_id}/offer", offer)
    app.router.add_post("/answers/{answer_id}/stop", stop)
    app.router.add_get("/answers/{answer_id}", status)
    app.router.add_get("/answers/{answer_id}/caption", caption)
    app.on_shutdown.append(_shutdown)
    return app


async def _shutdown(app: web.Application) -> None:
    """A clean stop (SIGTERM from `appliance run`) finishes every live recording."""
    state = app[STATE]
    for capture in list(state.live.values()):
        await _end(state, capture)
