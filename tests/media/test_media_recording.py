"""The media service records a WebRTC answer as encrypted RTP, with nothing lost (issue 7).

A real service process on a real data dir; a Python aiortc client streams the fixture
video (H.264/AAC, re-encoded by aiortc to VP8/Opus as a browser would send) over
loopback UDP, offering through the unix socket like the web app does.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from appliance.recordings import MEDIA_TYPE, open_playable
from appliance.records import Recording
from appliance.settings import Settings
from appliance.store import Store
from tests.media.media_client import Service, make_answer, post, stream_answer
from tests.media_evidence import assert_nothing_plaintext
from webapp.media.capture import TrackCounts

STREAM_SECONDS = 5.0


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
