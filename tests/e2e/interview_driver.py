"""Drives the candidate's interview in a real headless Chromium with a fake camera and
microphone (issue 7, "Must show"), against the demo box and a real media service process.

Pieces:
- `fake_capture_files`: the fixture video `candidate_answer.mp4` converted at test time
  into what Chromium's fake devices read: Y4M (camera) and WAV (microphone). Both lie in
  a temp folder outside the data dir; Chromium loops them.
- `launch_camera_chromium`: Debian's Chromium with the fake-device flags and
  `--allow-loopback-in-peer-connection` (the media service offers 127.0.0.1 only).
- `MediaService`: `python -m webapp.media` on the box's data dir and media socket, as
  `appliance run` starts it, with its UDP range pinned; it can be killed and restarted.
- `invite_to_interview`: an interview plan of short questions and the candidate's link.
- `CandidateAtBrowser`: one candidate, step by step: device check, consents, answers.
- `recording_durations`: what PyAV decodes from a stored recording, per stream.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
from playwright.sync_api import Browser, Page, Playwright, expect
from sqlalchemy import select

from appliance.records import (
    Application,
    Candidate,
    InterviewPlan,
    InterviewQuestion,
    InterviewSession,
    Invitation,
    SessionStatus,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from appliance.supervisor import media_socket
from compliance import pia, tokens
from compliance.actors import Actor
from tests.e2e.portal_driver import CHROMIUM_ARGS, VIEWPORT, BrowserProblems, DemoBox

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO.parent / "shared" / "fixtures" / "video" / "candidate_answer.mp4"
UDP_PORTS = "41600-41619"
CAMERA_SECONDS = 10.0
"""Chromium loops the fake camera file: 10 s of the 20-s fixture keep it small (46 MB)."""
CAMERA_FLAGS = (
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
)


# --- the fake camera and microphone ----------------------------------------------------------


def fake_capture_files(folder: Path) -> tuple[Path, Path]:
    """(Y4M, WAV) of the fixture, converted with PyAV (no ffmpeg binary needed)."""
    video, audio = folder / "camera.y4m", folder / "microphone.wav"
    with av.open(str(FIXTURE)) as source, av.open(str(video), "w", format="yuv4mpegpipe") as out:
        src = source.streams.video[0]
        stream = out.add_stream("rawvideo", rate=src.average_rate)
        stream.width, stream.height, stream.pix_fmt = src.width, src.height, "yuv420p"
        for frame in source.decode(src):
            if frame.time is not None and frame.time >= CAMERA_SECONDS:
                break
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    with av.open(str(FIXTURE)) as source, av.open(str(audio), "w", format="wav") as out:
        pcm = out.add_stream("pcm_s16le", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for sound in source.decode(source.streams.audio[0]):
            if sound.time is not None and sound.time >= CAMERA_SECONDS:
                break
            for resampled in resampler.resample(sound):
                out.mux(pcm.encode(resampled))
        out.mux(pcm.encode(None))
    return video, audio


def launch_camera_chromium(playwright: Playwright, video: Path, audio: Path) -> Browser:
    executable = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    args = [
        *CHROMIUM_ARGS,
        *CAMERA_FLAGS,
        f"--use-file-for-fake-video-capture={video}",
        f"--use-file-for-fake-audio-capture={audio}",
    ]
    return playwright.chromium.launch(executable_path=executable, headless=True, args=args)


# --- the media service --------------------------------------------------------------------------


@dataclass
class MediaService:
    """`python -m webapp.media` on the box's data dir, where the web app looks for it."""

    settings: Settings
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return media_socket(self.settings)

    def start(self) -> MediaService:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
        env.update(
            ENCLAVE_CONFIG="",
            ENCLAVE_SECRETS="/nonexistent/secrets.toml",
            ENCLAVE_DATA_DIR=str(self.settings.data_dir),
            PYTHONPATH=str(REPO),
        )
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "webapp.media", "--socket", str(self.socket)]
        cmd += ["--udp-ports", UDP_PORTS, "--host-address", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            assert self.proc.poll() is None, "the media service exited at start"
            assert time.monotonic() < deadline, "the media service did not open its socket"
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything (a crash, the OOM killer)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the invitation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invited:
    token: str
    session_id: int
    subject_id: str
    questions: tuple[str, ...]
    live_captions: bool


QUESTIONS = (
    "请介绍一下您在急诊科的工作经历。",
    "遇到患者投诉时，您会怎么处理？",
    "您为什么想加入我们医院？",
)


def invite_to_interview(
    store: Store, answer_seconds: int, questions: int = 3, live_captions: bool = False
) -> Invited:
    """A plan of short questions for the demo's first application and an invitation to it,
    as HR's invitation batch writes them (webapp/invitations.py); `live_captions` turns
    the job's captions on."""
    now = utcnow()
    texts = QUESTIONS[:questions]
    with store.transaction() as db:
        application = db.scalars(select(Application).order_by(Application.id)).first()
        assert application is not None
        application.job.live_captions = live_captions
        plan = InterviewPlan(job_id=application.job_id, name="视频面试（测试）", mode="async")
        plan.questions = [
            InterviewQuestion(
                position=i, text=text, think_seconds=20, answer_seconds=answer_seconds, retakes=1
            )
            for i, text in enumerate(texts)
        ]
        db.add(plan)
        db.flush()
        row = InterviewSession(
            application_id=application.id,
            plan_id=plan.id,
            status=SessionStatus.SCHEDULED,
            window_start=now,
            window_end=now + timedelta(days=2),
            interviewer_ids=[],
        )
        db.add(row)
        token_row = tokens.new_token_row(
            application.candidate_id, "interview", now + timedelta(days=3), None
        )
        db.add(token_row)
        db.flush()
        db.add(
            Invitation(
                application_id=application.id,
                session_id=row.id,
                token_id=token_row.id,
                window_start=now,
                window_end=now + timedelta(days=2),
                slot_start=now,
                slot_end=now + timedelta(minutes=30),
                channels=["email"],
            )
        )
        subject_id = db.scalar(
            select(Candidate.subject_id).where(Candidate.id == application.candidate_id)
        )
        assert subject_id is not None
        session_id = row.id
    token = tokens.token_of(store, token_row)
    return Invited(token, session_id, subject_id, texts, live_captions)


def approve_face_analysis(store: Store) -> None:
    """The impact assessment of face analysis, written by one person and approved by the
    DPO (PIPL Art. 55): without it no face data is made, consent or not."""
    body = {section: f"{section}: assessed for the interview test" for section in pia.SECTIONS}
    row = pia.record(store, Actor.system("e2e-analyst"), "face_analysis", "1", "人脸分析", body)
    pia.approve(store, Actor.system("e2e-dpo"), row.id)


# --- the candidate ------------------------------------------------------------------------------


@dataclass
class CandidateAtBrowser:
    """One candidate in a fresh browser profile, as at home over the VPN."""

    box: DemoBox
    page: Page
    problems: BrowserProblems
    caption_polls: list[tuple[int, str]] = field(default_factory=list)
    """(HTTP status, body) of each live-caption poll the page made."""

    @classmethod
    def open(cls, browser: Browser, box: DemoBox, problems: BrowserProblems) -> CandidateAtBrowser:
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")  # type: ignore[arg-type]
        problems.watch(context)
        candidate = cls(box, context.new_page(), problems)
        candidate.page.on("response", candidate._seen)
        return candidate

    def _seen(self, response: Any) -> None:
        if response.url.endswith("/caption"):
            self.caption_polls.append((response.status, response.text()))

    def enter(self, invited: Invited) -> None:
        self.page.goto(self.box.url(f"/c/{invited.token}/start"))
        expect(self.page.locator("#iv-device")).to_be_visible()

    def check_devices(self) -> dict[str, str]:
        """Run the device check, confirm hearing the tone, go on; returns each check's mark."""
        page = self.page
        page.locator("#iv-run-check").click()
        expect(page.locator("#iv-check-done")).to_be_enabled(timeout=30_000)
        page.locator("#iv-heard").click()
        marks = {
            check: str(page.locator(f"[data-check={check}] .iv-result").get_attribute("class"))
            for check in ("browser", "camera", "microphone", "speaker", "rtt", "bandwidth")
        }
        page.locator("#iv-check-done").click()
        page.wait_for_url("**/interview/consent/recording")
        return marks

    def consent(self, recording: bool = True, face: bool = True, ai: bool = True) -> None:
        """The three notices, each its own page (face analysis never bundled: PIPL Art. 29)."""
        for purpose, agree in (("recording", recording), ("face_analysis", face)):
            self.page.wait_for_url(f"**/interview/consent/{purpose}")
            expect(self.page.locator(".iv-notice")).not_to_be_empty()
            self.page.locator(f"button[value={'yes' if agree else 'no'}]").click()
        self.page.wait_for_url("**/interview/consent/ai_scoring")
        self.page.locator(f"button[value={'yes' if ai else 'no'}]").click()
        self.page.wait_for_url("**/interview")
        expect(self.page.locator("#iv-question")).to_be_visible()

    def start_answer(self) -> None:
        """Begin the question, skip the rest of the think time, wait for the live link."""
        page = self.page
        expect(page.locator("#iv-begin")).to_be_visible()
        page.locator("#iv-begin").click()
        page.locator("#iv-start-now").click()
        expect(page.locator("#iv-finish")).to_be_visible(timeout=30_000)

    def wait_answer_saved(self, answer_seconds: int) -> None:
        """The countdown ends the answer by itself; the page then offers the next step."""
        expect(self.page.locator("#iv-next")).to_be_visible(timeout=(answer_seconds + 40) * 1000)

    def next_question(self) -> None:
        self.page.locator("#iv-next").click()

    def answer_all(self, invited: Invited, answer_seconds: int) -> None:
        """Every question in turn."""
        for position, text in enumerate(invited.questions):
            expect(self.page.locator("#iv-text")).to_have_text(text)
            expect(self.page.locator("#iv-pos")).to_have_text(str(position + 1))
            self.start_answer()
            if invited.live_captions:
                # How soon words appear depends on the box's load (captions lag by design,
                # webapp/media/captions.py); the words themselves are tested in
                # tests/media/test_media_captions.py. Here: the page shows the box and asks.
                expect(self.page.locator("#iv-captions")).to_be_visible()
            else:
                expect(self.page.locator("#iv-captions")).to_be_hidden()
            self.wait_answer_saved(answer_seconds)
            self.next_question()
        expect(self.page.locator("#iv-done")).to_be_visible(timeout=20_000)


_PLAY = """v => new Promise((ok, bad) => {
  v.addEventListener("loadedmetadata", () => ok(v.duration), { once: true });
  const fail = () => bad(new Error(v.error ? v.error.message : "error"));
  v.addEventListener("error", fail, { once: true });
  v.preload = "metadata";
  v.load();
})"""


def hr_plays_answers(user: Any, session_id: int) -> list[float]:
    """HR opens the interview in the portal; each answer's <video> loads in the browser
    (streamed through the gate, remuxed from the stored RTP); their durations."""
    user.open(f"/portal/interviews/{session_id}")
    videos = user.page.locator("section.answer video")
    return [float(videos.nth(i).evaluate(_PLAY)) for i in range(videos.count())]


def recording_durations(data: bytes) -> dict[str, float]:
    """Seconds from the first to the end of the last decoded frame, per stream kind."""
    found: dict[str, float] = {}
    for kind in ("video", "audio"):
        with av.open(io.BytesIO(data), mode="r") as container:
            streams: Any = getattr(container.streams, kind)
            if not streams:
                continue
            times: list[float] = []
            last = 0.0
            for frame in container.decode(streams[0]):
                if frame.time is None:
                    continue
                times.append(frame.time)
                if kind == "audio":
                    last = frame.samples / frame.sample_rate
            if not times:
                continue
            if kind == "video":
                last = (times[-1] - times[0]) / max(len(times) - 1, 1)
            found[kind] = times[-1] - times[0] + last
    return found
