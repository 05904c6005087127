"""The media service records a WebRTC answer as encrypted RTP, with nothing lost (issue 7).

A real service process on a real data dir; a Python aiortc client streams the fixture
video (H.264/AAC, re-encoded by aiortc to VP8/Opus as a browser would send) over
loopback UDP, offering through the unix socket like the web app does.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aioice.ice
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from sqlalchemy import select

from appliance.blobs import MAGIC as BLOB_MAGIC
from appliance.recordings import MEDIA_TYPE, open_playable
from appliance.records import (
    Answer,
    Application,
    Candidate,
    InterviewPlan,
    InterviewQuestion,
    InterviewSession,
    Job,
    JobStatus,
    OrgKind,
    OrgUnit,
    Recording,
    SessionStatus,
    SubjectKind,
)
from appliance.settings import Settings
from appliance.store import Store
from webapp.media.capture import TrackCounts

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO.parent / "shared" / "fixtures" / "video" / "candidate_answer.mp4"
UDP_PORTS = (41500, 41519)
STREAM_SECONDS = 5.0


def make_answer(store: Store, code: str = "MEDIA-T") -> tuple[int, str]:
    """A candidate's application, interview session and one answer to record."""
    with store.transaction() as db:
        unit = OrgUnit(code=code, kind=OrgKind.HQ)
        unit.name = "测试医院"
        db.add(unit)
        db.flush()
        unit.place_under(None)
        job = Job(org_unit_id=unit.id, title="护士", status=JobStatus.OPEN)
        plan = InterviewPlan(name="视频面试", mode="async")
        plan.questions = [InterviewQuestion(position=0, text="请介绍一下你自己")]
        job.plans.append(plan)
        db.add(job)
        subject = store.new_subject(db, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=unit.id, source="test")
        db.add(candidate)
        db.flush()
        application = Application(candidate_id=candidate.id, job_id=job.id)
        db.add(application)
        db.flush()
        session = InterviewSession(
            application_id=application.id, plan_id=plan.id, status=SessionStatus.IN_PROGRESS
        )
        db.add(session)
        db.flush()
        answer = Answer(
            session_id=session.id, question_id=plan.questions[0].id, subject_id=subject.id
        )
        db.add(answer)
        db.flush()
        return answer.id, subject.id


@dataclass
class Service:
    socket: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture
def service(store: Store, settings: Settings, short_tmp: Path) -> Iterator[Service]:
    socket_path = short_tmp / "media.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        ENCLAVE_CONFIG="",
        ENCLAVE_SECRETS="/nonexistent/secrets.toml",
        ENCLAVE_DATA_DIR=str(settings.data_dir),
        PYTHONPATH=str(REPO),
    )
    ports = f"{UDP_PORTS[0]}-{UDP_PORTS[1]}"
    cmd = [sys.executable, "-m", "webapp.media", "--socket", str(socket_path)]
    proc = subprocess.Popen(
        [*cmd, "--udp-ports", ports, "--host-address", "127.0.0.1"], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert proc.poll() is None, "the media service exited at start"
            assert time.monotonic() < deadline, "the media service did not open its socket"
            time.sleep(0.1)
        yield Service(socket_path, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.fixture
def media_service(service: Service) -> Path:
    return service.socket


@pytest.fixture(autouse=True)
def loopback_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client offers 127.0.0.1 only: the test never touches another interface."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_kw: ["127.0.0.1"])


async def post(socket_path: Path, path: str, body: object | None = None) -> tuple[int, dict]:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"http://media{path}", json=body) as response:
            return response.status, await response.json()


async def stream_answer(
    socket_path: Path, answer_id: int, seconds: float, kill: Service | None = None
) -> dict:
    """Offer, stream `seconds` of the fixture, stop (or kill the service); the stop answer."""
    player = MediaPlayer(str(FIXTURE))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    assert player.video is not None and player.audio is not None
    pc.addTrack(player.video)
    pc.addTrack(player.audio)
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    status, answer = await post(
        socket_path,
        f"/answers/{answer_id}/offer",
        {"sdp": pc.localDescription.sdp, "type": "offer"},
    )
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.wait_for(connected.wait(), 20)
    await asyncio.sleep(seconds)
    if kill is not None:
        kill.proc.kill()
        kill.proc.wait()
        await pc.close()
        return {}
    status, stopped = await post(socket_path, f"/answers/{answer_id}/stop")
    await pc.close()
    assert status == 200, stopped
    return stopped


def test_an_answer_is_recorded_whole_and_encrypted(
    store: Store, settings: Settings, media_service: Path
) -> None:
    answer_id, subject_id = make_answer(store)
    stopped = asyncio.run(stream_answer(media_service, answer_id, STREAM_SECONDS))

    with store.session() as db:
        recording = db.scalars(select(Recording).where(Recording.answer_id == answer_id)).one()
    assert recording.complete and recording.media_type == MEDIA_TYPE
    assert recording.subject_id == subject_id and recording.id == stopped["recording_id"]
    assert store.blobs.subject_of(recording.blob_id) == subject_id

    playable = open_playable(store.blobs, recording.blob_id)
    assert playable.complete and playable.video is not None and playable.audio is not None
    assert playable.video.codec == "VP8" and playable.audio.codec == "OPUS"
    for track in (playable.video, playable.audio):
        assert track.sequence_gaps == 0, track
        assert abs(track.duration_s - STREAM_SECONDS) <= 0.1 * STREAM_SECONDS, track
    assert playable.video.frames == stopped["video_frames"]
    assert playable.audio.packets == stopped["audio_packets"]
    assert playable.video.frames >= 10 * STREAM_SECONDS * 0.9  # the fixture is 15+ fps

    # PyAV decodes the remuxed Matroska in memory, both streams, for the whole answer.
    with av.open(io.BytesIO(playable.data), mode="r") as container:
        pictures = [f.time for f in container.decode(video=0)]
    with av.open(io.BytesIO(playable.data), mode="r") as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert len(pictures) >= playable.video.frames - 1
    assert abs(pictures[-1] - pictures[0] - STREAM_SECONDS) <= 0.1 * STREAM_SECONDS
    assert abs(samples / 48000 - STREAM_SECONDS) <= 0.1 * STREAM_SECONDS

    assert_nothing_plaintext(settings.data_dir)


def assert_nothing_plaintext(data_dir: Path) -> None:
    """Every blob file is the encrypted format; no file anywhere holds media magic."""
    blob_files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    assert blob_files
    for path in blob_files:
        assert path.read_bytes()[: len(BLOB_MAGIC)] == BLOB_MAGIC, path
    for path in data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".sock":
            content = path.read_bytes()
            for magic in (b"ENCRTP01", b"OpusHead", b"OpusTags", b"webm", b"matroska"):
                assert magic not in content, (path, magic)  # 8 bytes: never by chance
            for magic in (b"\x1a\x45\xdf\xa3", b"DKIF", b"OggS", b"RIFF"):
                assert not content.startswith(magic), (path, magic)


def test_a_malformed_sdp_offer_is_refused_clearly(store: Store, media_service: Path) -> None:
    answer_id, _ = make_answer(store)
    status, body = asyncio.run(
        post(media_service, f"/answers/{answer_id}/offer", {"sdp": "hello", "type": "offer"})
    )
    assert status == 400 and body["code"] == "bad_sdp"
    assert "malformed" in body["error"]
    status, body = asyncio.run(
        post(media_service, f"/answers/{answer_id}/offer", {"sdp": "v=0\r\n", "type": "answer"})
    )
    assert status == 400 and "offer" in body["error"]
    with store.session() as db:
        assert db.scalars(select(Recording).where(Recording.answer_id == answer_id)).all() == []


def test_a_killed_service_leaves_a_playable_partial_recording(
    store: Store, settings: Settings, service: Service
) -> None:
    """What was received up to a SIGKILL is kept, readable and decodable (issue 7, Must show)."""
    answer_id, _ = make_answer(store)
    asyncio.run(stream_answer(service.socket, answer_id, 4.0, kill=service))

    with store.session() as db:
        recording = db.scalars(select(Recording).where(Recording.answer_id == answer_id)).one()
    assert not recording.complete  # the analysis only takes complete recordings
    with pytest.raises(Exception, match="final chunk|cut short|partly written"):
        store.blobs.open(recording.blob_id)  # a strict reader sees it was cut
    playable = open_playable(store.blobs, recording.blob_id, partial_ok=True)
    assert not playable.complete and playable.video is not None and playable.audio is not None
    assert playable.video.sequence_gaps == 0 and playable.audio.sequence_gaps == 0
    assert playable.video.duration_s >= 2.0 and playable.audio.duration_s >= 2.0
    with av.open(io.BytesIO(playable.data), mode="r") as container:
        pictures = len(list(container.decode(video=0)))
    assert pictures >= playable.video.frames - 1 > 0
    assert_nothing_plaintext(settings.data_dir)


def test_the_stop_instant_does_not_move_early_when_the_service_lagged_at_the_start() -> None:
    """A busy event loop (many DTLS handshakes at once) may see an answer's first frame
    seconds late; the stop instant must still keep every frame captured before it, and
    refuse what the sender captured after it (bench/media_bench.py found the cut)."""
    video = TrackCounts(clock_rate=90000)
    start = 1000.0
    video.add(0, start + 3.0)  # the first frame, processed 3 s late
    for frame in range(1, 300):  # then 10 s of 30 fps frames, on time
        video.add(frame * 3000, start + frame / 30)
    video.set_cutoff(start + 10.5)  # stop half a second after the last frame was sent
    assert not video.after_cutoff(299 * 3000)  # the last frame belongs to the answer
    assert video.after_cutoff(330 * 3000)  # one captured 11 s in does not
    assert video.frames == 300 and video.dropped_after_stop == 1
