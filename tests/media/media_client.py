"""A candidate's answer streamed into the media service by a Python aiortc client, for the
media service's tests and bench/media_bench.py: the records of one answer to record,
the service process on a real data dir, and the client side (offer through the unix
socket, as the web app forwards it; media over loopback UDP)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

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
    SessionStatus,
    SubjectKind,
)
from appliance.settings import Settings
from appliance.store import Store

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO.parent / "shared" / "fixtures" / "video" / "candidate_answer.mp4"
UDP_PORTS = (41500, 41519)


def make_answer(
    store: Store, code: str = "MEDIA-T", live_captions: bool = False
) -> tuple[int, str]:
    """A candidate's application, interview session and one answer to record."""
    with store.transaction() as db:
        unit = OrgUnit(code=code, kind=OrgKind.HQ)
        unit.name = "测试医院"
        db.add(unit)
        db.flush()
        unit.place_under(None)
        job = Job(org_unit_id=unit.id, title="护士", status=JobStatus.OPEN)
        job.live_captions = live_captions
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


@contextmanager
def running_service(settings: Settings, socket_path: Path) -> Iterator[Service]:
    """`python -m webapp.media` on the data dir, UDP pinned to UDP_PORTS on 127.0.0.1."""
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


async def post(socket_path: Path, path: str, body: object | None = None) -> tuple[int, dict]:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"http://media{path}", json=body) as response:
            return response.status, await response.json()


async def get(socket_path: Path, path: str) -> tuple[int, dict]:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://media{path}") as response:
            return response.status, await response.json()


async def stream_answer(
    socket_path: Path,
    answer_id: int,
    seconds: float,
    kill: Service | None = None,
    during: Callable[[], Awaitable[None]] | None = None,
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
    if during is None:
        await asyncio.sleep(seconds)
    else:  # e.g. poll the live caption while the answer streams
        await asyncio.wait_for(during(), seconds + 30)
    if kill is not None:
        kill.proc.kill()
        kill.proc.wait()
        await pc.close()
        return {}
    status, stopped = await post(socket_path, f"/answers/{answer_id}/stop")
    await pc.close()
    assert status == 200, stopped
    return stopped
