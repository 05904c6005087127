"""Answering (issue #7, items 4, 6, 7 on the web side): takes and retakes from the job's
questions, the fallback upload streamed into encrypted blobs and resumable, the SDP offer
forwarded to the media service over its unix socket (a small aiohttp server plays it
here), bad input refused with an audit event, and the analysis job enqueued with ids."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from appliance.records import (
    Answer,
    InterviewSession,
    JobRun,
    Recording,
    SessionStatus,
    UploadPart,
)
from appliance.settings import Settings
from appliance.store import Store
from appliance.supervisor import media_socket
from tests.webapp.test_interview_entry import (
    BASE,
    body,
    candidate_client,
    denied_events,
    enter,
    give_consents,
    interview_app,
    invite,
    pass_device_check,
)
from workers.jobs import queue_for

__all__ = ["interview_app"]  # the fixture, shared with the entry tests

MARKER = b"PLAINTEXT-MEDIA-MARKER-7"
WEBM = b"\x1a\x45\xdf\xa3" + MARKER * 4000
OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=rtpmap:96 VP8/90000",
        "",
    ]
)


@dataclass
class FakeMedia:
    """The media service's contract, on its real socket path; it records what it got."""

    store: Store
    calls: list[tuple[str, int, Any]] = field(default_factory=list)

    async def offer(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("offer", int(request.match_info["answer_id"]), body))
        return web.json_response({"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "type": "answer"})

    async def stop(self, request: web.Request) -> web.Response:
        answer_id = int(request.match_info["answer_id"])
        self.calls.append(("stop", answer_id, None))
        with self.store.transaction() as db:
            answer = db.get(Answer, answer_id)
            assert answer is not None
            blob_id = self.store.blobs.put(answer.subject_id, [b"rtp-dump"])
            recording = Recording(
                answer_id=answer_id,
                subject_id=answer.subject_id,
                blob_id=blob_id,
                media_type="application/x-enclave-rtp",
                complete=True,
            )
            db.add(recording)
            db.flush()
            recording_id = recording.id
        return web.json_response({"recording_id": recording_id, "complete": True})


@pytest.fixture
def fake_media(interview_app: Flask) -> Iterator[FakeMedia]:
    settings: Settings = interview_app.config["SETTINGS"]
    path = media_socket(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    media = FakeMedia(interview_app.extensions["enclave.store"])
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    app = web.Application()
    app.router.add_post("/answers/{answer_id}/offer", media.offer)
    app.router.add_post("/answers/{answer_id}/stop", media.stop)
    runner = web.AppRunner(app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, str(path)).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield media
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def ready_client(app: Flask, face: bool = True) -> tuple[FlaskClient, Any]:
    store: Store = app.extensions["enclave.store"]
    invited = invite(store)
    client = candidate_client(app)
    enter(client, invited)
    pass_device_check(client)
    give_consents(client, face=face)
    return client, invited


def put_part(client: FlaskClient, answer_id: int, seq: int, body: bytes, kind: str) -> Any:
    return client.put(
        f"/interview/answers/{answer_id}/parts/{seq}",
        data=body,
        headers={"Content-Type": kind},
        base_url=BASE,
    )


def new_take(client: FlaskClient) -> int:
    response = client.post("/interview/answers", json={}, base_url=BASE)
    assert response.status_code == 201, response.data
    return int(body(response)["answer_id"])


def test_fallback_upload_is_resumable_encrypted_and_queues_the_analysis(
    interview_app: Flask,
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    client, invited = ready_client(interview_app)
    state = body(client.get("/interview/state", base_url=BASE))
    assert state["step"] == "question" and state["position"] == 0 and state["total"] == 2
    assert state["question"]["takes_allowed"] == 2 and state["take"] is None
    answer_id = new_take(client)

    first, second = WEBM[:70000], WEBM[70000:]
    kind = "video/webm;codecs=vp8,opus"
    assert body(put_part(client, answer_id, 0, first, kind))["next"] == 1
    again = put_part(client, answer_id, 0, first, kind)  # a retry after a lost answer
    assert again.status_code == 200 and again.json == {"next": 1, "bytes": 70000, "duplicate": True}
    ahead = put_part(client, answer_id, 5, second, kind)
    assert ahead.status_code == 409 and body(ahead)["next"] == 1
    assert body(client.get(f"/interview/answers/{answer_id}/parts", base_url=BASE))["next"] == 1
    early = client.post(
        f"/interview/answers/{answer_id}/parts/finish", json={"parts": 2}, base_url=BASE
    )
    assert early.status_code == 409 and body(early)["next"] == 1
    assert put_part(client, answer_id, 1, second, kind).status_code == 201
    done = client.post(
        f"/interview/answers/{answer_id}/parts/finish",
        json={"parts": 2, "duration_ms": 4000},
        base_url=BASE,
    )
    assert done.status_code == 200 and body(done)["recorded"] is True
    assert body(done)["analysis"] is True

    with store.session() as db:
        recording = db.get(Recording, body(done)["recording_id"])
        assert recording is not None and recording.complete and recording.answer_id == answer_id
        assert recording.subject_id == invited.subject_id and recording.media_type == "video/webm"
        blob_id = recording.blob_id
        assert not list(db.scalars(select(UploadPart)))
        run = db.scalars(select(JobRun).where(JobRun.name.endswith("analyse_answer"))).one()
    assert store.blobs.read_bytes(blob_id) == WEBM
    queued = queue_for("analysis", interview_app.extensions["enclave.redis"]).jobs
    assert [list(job.args) for job in queued] == [[run.name, answer_id]]
    assert [job.id for job in queued] == [run.rq_job_id]
    # The media never sat on disk in the clear: not in the data dir, in no leftover part.
    data_dir: Path = interview_app.config["SETTINGS"].data_dir
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert MARKER not in path.read_bytes(), path
    assert len(list(store.blobs.blob_ids())) == 1

    state = body(client.get("/interview/state", base_url=BASE))
    assert state["take"] == {"answer_id": answer_id, "attempt": 1, "recorded": True}
    assert state["question"]["takes_used"] == 1
    # One retake allowed (the demo template), then no more.
    retake = new_take(client)
    assert put_part(client, retake, 0, WEBM, "video/webm").status_code == 201
    finish = client.post(f"/interview/answers/{retake}/parts/finish", json={}, base_url=BASE)
    assert finish.status_code == 200
    refused = client.post("/interview/answers", json={}, base_url=BASE)
    assert refused.status_code == 409 and "重答次数已用完" in body(refused)["message"]
    assert denied_events(store, "interview.retake_refused")
    moved = body(client.post("/interview/next", base_url=BASE))
    assert moved["position"] == 1 and moved["question"]["takes_used"] == 0


def test_wrong_upload_type_or_size_is_refused_with_an_audit_event(interview_app: Flask) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    client, _invited = ready_client(interview_app)
    answer_id = new_take(client)
    text = put_part(client, answer_id, 0, b"hello", "text/plain")
    assert text.status_code == 415 and "类型不正确" in body(text)["message"]
    assert "Wrong upload type" in body(text)["message_en"]
    disguised = put_part(client, answer_id, 0, b"MZ" + MARKER * 10, "video/webm")
    assert disguised.status_code == 415 and "不是所声明" in body(disguised)["message"]
    big = put_part(client, answer_id, 0, b"\x1a\x45\xdf\xa3" + bytes(9 << 20), "video/webm")
    assert big.status_code == 413 and "Wrong upload size" in body(big)["message_en"]
    assert len(denied_events(store, "upload.refused")) == 3
    with store.session() as db:
        assert not list(db.scalars(select(UploadPart)))
    assert list(store.blobs.blob_ids()) == []  # nothing half-written is left


def test_offer_is_checked_then_forwarded_and_stop_ends_the_take(
    interview_app: Flask, fake_media: FakeMedia
) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    client, invited = ready_client(interview_app, face=False)
    answer_id = new_take(client)
    for bad in (
        {"sdp": "hello", "type": "offer"},
        {"sdp": OFFER, "type": "answer"},
        {"sdp": OFFER.replace("a=fingerprint", "a=nofinger"), "type": "offer"},
        {"sdp": OFFER.replace("m=video", "m=application"), "type": "offer"},
        ["not", "an", "object"],
    ):
        response = client.post(f"/interview/answers/{answer_id}/offer", json=bad, base_url=BASE)
        assert response.status_code == 400 and "格式不正确" in body(response)["message"]
    assert len(denied_events(store, "media.offer_refused")) == 5
    assert fake_media.calls == []  # nothing malformed reached the media service

    answer = client.post(
        f"/interview/answers/{answer_id}/offer", json={"sdp": OFFER, "type": "offer"}, base_url=BASE
    )
    assert answer.status_code == 200 and body(answer)["type"] == "answer"
    assert fake_media.calls == [("offer", answer_id, {"sdp": OFFER, "type": "offer"})]
    stopped = client.post(f"/interview/answers/{answer_id}/stop", base_url=BASE)
    assert stopped.status_code == 200 and body(stopped)["recorded"] is True
    assert body(stopped)["analysis"] is True
    # A closed take takes no more media.
    late = client.post(
        f"/interview/answers/{answer_id}/offer", json={"sdp": OFFER, "type": "offer"}, base_url=BASE
    )
    assert late.status_code == 409
    assert body(client.post("/interview/next", base_url=BASE))["position"] == 1
    second = new_take(client)
    client.post(
        f"/interview/answers/{second}/offer", json={"sdp": OFFER, "type": "offer"}, base_url=BASE
    )
    client.post(f"/interview/answers/{second}/stop", base_url=BASE)
    end = body(client.post("/interview/next", base_url=BASE))
    assert end["step"] == "done"
    with store.session() as db:
        row = db.get(InterviewSession, invited.session_id)
        assert row is not None and row.status is SessionStatus.COMPLETED
        assert row.completed_at is not None
    queued = queue_for("analysis", interview_app.extensions["enclave.redis"]).jobs
    assert sorted(job.args[1] for job in queued) == [answer_id, second]
    assert all(json.dumps(job.args[1:]).isascii() for job in queued)
    # The link is spent now: using it again is a replay.
    replay = candidate_client(interview_app).get(f"/c/{invited.token}/start", base_url=BASE)
    assert replay.status_code == 410


def test_media_service_down_answers_a_fallback_not_an_error_page(interview_app: Flask) -> None:
    store: Store = interview_app.extensions["enclave.store"]
    client, _invited = ready_client(interview_app)
    answer_id = new_take(client)
    response = client.post(
        f"/interview/answers/{answer_id}/offer", json={"sdp": OFFER, "type": "offer"}, base_url=BASE
    )
    assert response.status_code == 503 and body(response)["fallback"] is True
    with store.session() as db:
        take = db.get(Answer, answer_id)
        assert take is not None and take.ended_at is None  # the take goes on by upload
