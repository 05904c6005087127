"""Issue 7, "Must show": the candidate's interview in a real headless Chromium.

Debian's Chromium with a fake camera and microphone fed from
`../shared/fixtures/video/candidate_answer.mp4` (converted at test time), the demo box
over real HTTP, and a real media service process (aiortc) on the box's media socket:

1. device check, the three consents, three answers over WebRTC, the end; each stored
   recording decrypts to a file whose video and audio last as long as the answer time
   (within 10 %), and no plaintext media ever shows up under the data dir (watched
   every 250 ms throughout, analysis included);
2. the same with face analysis declined: the answers are analysed (transcripts), and no
   face or expression data exists; this job shows live captions, and the candidate sees
   their words while answering (from the second answer: the first loads Whisper);
3. the media service killed in the middle of an answer: what it received is kept and
   decodes, the page says so and offers the question again, the retake (over the HTTPS
   upload while the service is still down) is saved, the earlier answer is untouched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import select

from appliance.recordings import MEDIA_TYPE, open_playable
from appliance.records import (
    AnalysisStatus,
    Answer,
    AnswerAnalysis,
    AuditEvent,
    ExpressionSignals,
    FaceSignals,
    InterviewSession,
    Recording,
    SessionStatus,
)
from appliance.store import Store
from tests.e2e.interview_driver import (
    CandidateAtBrowser,
    Invited,
    MediaService,
    approve_face_analysis,
    fake_capture_files,
    hr_plays_answers,
    invite_to_interview,
    launch_camera_chromium,
    recording_durations,
)
from tests.e2e.portal_driver import BrowserProblems, DemoBox, new_user
from tests.media_evidence import PlaintextWatch, assert_nothing_plaintext
from workers.analysis import jobs as analysis

ANSWER_SECONDS = 6
LONG_ANSWER_SECONDS = 9
"""Where something must happen inside an answer (captions appear; the service dies and
the page notices) the answers are longer, so a busy machine does not end them first."""
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def camera_browser() -> Iterator[Browser]:
    """Chromium whose camera and microphone play the fixture (one per module: conftest)."""
    with tempfile.TemporaryDirectory(prefix="enccam") as folder:
        video, audio = fake_capture_files(Path(folder))
        with sync_playwright() as playwright:
            chromium = launch_camera_chromium(playwright, video, audio)
            yield chromium
            chromium.close()


@pytest.fixture
def media(box: DemoBox) -> Iterator[MediaService]:
    service = MediaService(box.settings).start()
    yield service
    service.stop()


def store_of(box: DemoBox) -> Store:
    store: Store = box.app.extensions["enclave.store"]
    return store


def takes_of(store: Store, session_id: int) -> list[tuple[Answer, list[Recording]]]:
    with store.session() as db:
        answers = db.scalars(
            select(Answer)
            .where(Answer.session_id == session_id)
            .order_by(Answer.question_id, Answer.attempt)
        ).all()
        return [
            (
                answer,
                list(
                    db.scalars(
                        select(Recording)
                        .where(Recording.answer_id == answer.id)
                        .order_by(Recording.id)
                    )
                ),
            )
            for answer in answers
        ]


def assert_lasts_answer_time(store: Store, recording: Recording, seconds: float) -> None:
    if recording.media_type == MEDIA_TYPE:
        data = open_playable(store.blobs, recording.blob_id).data
    else:  # the HTTPS upload keeps what the browser's MediaRecorder made
        with store.blobs.open(recording.blob_id) as reader:
            data = bytes(reader.read())
    durations = recording_durations(data)
    assert set(durations) == {"video", "audio"}, (recording.id, durations)
    for kind, duration in durations.items():
        assert abs(duration - seconds) <= TOLERANCE * seconds, (recording.id, kind, durations)


def take_interview(
    browser: Browser,
    box: DemoBox,
    problems: BrowserProblems,
    face: bool,
    captions: bool = False,
    seconds: int = ANSWER_SECONDS,
) -> tuple[Invited, list[str], list[tuple[int, str]]]:
    """A whole interview; returns the invitation, what the plaintext watch found and the
    page's live-caption polls."""
    approve_face_analysis(store_of(box))  # so only the candidate's choice decides
    invited = invite_to_interview(store_of(box), seconds, live_captions=captions)
    with PlaintextWatch(box.settings.data_dir) as watch:
        candidate = CandidateAtBrowser.open(browser, box, problems)
        candidate.enter(invited)
        marks = candidate.check_devices()
        for check in ("browser", "camera", "microphone", "speaker"):
            assert "iv-ok" in marks[check], (check, marks)
        candidate.consent(face=face)
        candidate.answer_all(invited, seconds)
        analysis.configure(box.settings)
        try:
            analysis.analyse_session_here(store_of(box), invited.session_id)
        finally:
            analysis.configure(None)
        candidate.page.context.close()
    assert watch.looks > 10
    return invited, watch.found, candidate.caption_polls


def assert_three_recorded_answers(
    store: Store, invited: Invited, seconds: int = ANSWER_SECONDS
) -> list[int]:
    with store.session() as db:
        session = db.get(InterviewSession, invited.session_id)
        assert session is not None and session.status is SessionStatus.COMPLETED
    takes = takes_of(store, invited.session_id)
    assert len(takes) == 3, takes
    for answer, recordings in takes:
        assert answer.ended_at is not None
        assert [r.complete for r in recordings] == [True], recordings
        (recording,) = recordings
        assert recording.media_type == MEDIA_TYPE  # WebRTC, not the fallback
        assert store.blobs.subject_of(recording.blob_id) == invited.subject_id
        assert_lasts_answer_time(store, recording, seconds)
    return [answer.id for answer, _ in takes]


def analysed(store: Store, answer_ids: list[int]) -> dict[int, AnalysisStatus]:
    with store.session() as db:
        rows = db.scalars(select(AnswerAnalysis).where(AnswerAnalysis.answer_id.in_(answer_ids)))
        return {row.answer_id: row.status for row in rows}


def count(store: Store, model: type[FaceSignals] | type[ExpressionSignals], ids: list[int]) -> int:
    with store.session() as db:
        return len(db.scalars(select(model.id).where(model.answer_id.in_(ids))).all())


def test_three_answers_over_webrtc_are_stored_encrypted_and_whole(
    camera_browser: Browser, box: DemoBox, media: MediaService, problems: BrowserProblems
) -> None:
    invited, plaintext, _ = take_interview(camera_browser, box, problems, face=True)
    store = store_of(box)
    assert plaintext == []
    assert_nothing_plaintext(box.settings.data_dir)
    answer_ids = assert_three_recorded_answers(store, invited)
    assert analysed(store, answer_ids) == dict.fromkeys(answer_ids, AnalysisStatus.DONE)
    assert count(store, FaceSignals, answer_ids) == 3  # with consent, the face step ran

    # HR sees the answers in the candidate's interview view and their browser plays them.
    hr = new_user(camera_browser, box, problems)
    hr.sign_in("hradmin")
    played = hr_plays_answers(hr, invited.session_id)
    assert len(played) == 3
    for seconds in played:
        assert abs(seconds - ANSWER_SECONDS) <= TOLERANCE * ANSWER_SECONDS, played
    with store.session() as db:
        streamed = db.scalars(
            select(AuditEvent.entity).where(
                AuditEvent.action == "stream", AuditEvent.actor == "hradmin"
            )
        ).all()
    assert len(set(streamed)) == 3, streamed


def test_declined_face_analysis_interviews_on_audio_and_content_alone(
    camera_browser: Browser, box: DemoBox, media: MediaService, problems: BrowserProblems
) -> None:
    invited, plaintext, polls = take_interview(
        camera_browser, box, problems, face=False, captions=True
    )
    store = store_of(box)
    assert plaintext == []
    # Live captions: the page asked for the caption about once a second in every answer.
    assert len(polls) >= 3 * (ANSWER_SECONDS - 2), polls
    assert {status for status, _ in polls} == {200}, polls
    answer_ids = assert_three_recorded_answers(store, invited)
    assert analysed(store, answer_ids) == dict.fromkeys(answer_ids, AnalysisStatus.DONE)
    assert count(store, FaceSignals, answer_ids) == 0
    assert count(store, ExpressionSignals, answer_ids) == 0


def test_a_media_service_killed_mid_answer_keeps_what_it_got_and_the_answer_is_retaken(
    camera_browser: Browser, box: DemoBox, media: MediaService, problems: BrowserProblems
) -> None:
    store = store_of(box)
    invited = invite_to_interview(store, LONG_ANSWER_SECONDS, questions=2)
    candidate = CandidateAtBrowser.open(camera_browser, box, problems)
    page = candidate.page
    candidate.enter(invited)
    candidate.check_devices()
    candidate.consent()
    candidate.start_answer()
    candidate.wait_answer_saved(LONG_ANSWER_SECONDS)
    candidate.next_question()

    # Question 2: the media service dies 3 s into the answer.
    expect(page.locator("#iv-text")).to_have_text(invited.questions[1])
    candidate.start_answer()
    expect(page.locator("#iv-countdown")).to_have_text(str(LONG_ANSWER_SECONDS - 3), timeout=15_000)
    media.kill()
    expect(page.locator("#iv-status")).to_contain_text("连接中断", timeout=20_000)
    expect(page.locator("#iv-begin")).to_be_visible()
    expect(page.locator("#iv-finish")).to_be_hidden()

    # The retake, while the service is still down: recorded in the browser and uploaded.
    candidate.start_answer()
    expect(page.locator("#iv-status")).to_contain_text("录制后上传")
    candidate.wait_answer_saved(LONG_ANSWER_SECONDS)
    candidate.next_question()
    expect(page.locator("#iv-done")).to_be_visible(timeout=20_000)
    # The browser logged the box's 503 answers (stop, then the retake's offer): expected.
    assert problems.expect(r"status of 503") != []

    takes = takes_of(store, invited.session_id)
    assert [(a.question_id, a.attempt) for a, _ in takes] == [
        (takes[0][0].question_id, 1),
        (takes[1][0].question_id, 1),
        (takes[1][0].question_id, 2),
    ]
    (first_answer, (first,)), (cut_answer, cut), (retake_answer, (retake,)) = takes
    # Nothing else lost: the first answer is whole.
    assert first.complete and first.media_type == MEDIA_TYPE
    assert_lasts_answer_time(store, first, LONG_ANSWER_SECONDS)
    # The cut take: incomplete, and what came before the kill decodes (about 4 s of it).
    assert [r.complete for r in cut] == [False] and cut_answer.ended_at is not None
    partial = open_playable(store.blobs, cut[0].blob_id, partial_ok=True)
    durations = recording_durations(partial.data)
    assert 2.0 <= durations["video"] <= 5.0, durations
    assert 2.0 <= durations["audio"] <= 5.0, durations
    # The retake: complete, over the fallback upload, as long as the answer time.
    assert retake.complete and retake.media_type == "video/webm"
    assert retake_answer.ended_at is not None
    assert_lasts_answer_time(store, retake, LONG_ANSWER_SECONDS)
    assert_nothing_plaintext(box.settings.data_dir)
