"""Identity consistency through an answer and across answers (issue #5, Must show).

The second person is Grace Hopper from matplotlib's sample data (public domain,
ships in its wheel). The switch video is built at test time with PyAV in a
temporary folder (H.264 like the fixtures; libvpx is 30 times slower to encode
here): the candidate fixture's first 7 s, then Grace Hopper in front of the
fixtures' empty room, and analysed from bytes in memory as the workers do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

from appliance.settings import AiSettings
from workers.analysis.faces import (
    EMBEDDING_SIZE,
    SAME_PERSON_DISTANCE,
    FaceAnalyzer,
    FaceTimeline,
    ReferenceInvalid,
    face_analyzer,
)
from workers.analysis.video import sample_frames

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "video"
SWITCH_AT = 7.0  # not a multiple of IDENTITY_EVERY_S: the swap itself must trigger the check
LENGTH = 13.0
FPS = 15


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return face_analyzer(AiSettings())


@pytest.fixture(scope="module")
def answer(analyzer: FaceAnalyzer) -> FaceTimeline:
    return analyzer.analyse(sample_frames(VIDEO / "candidate_answer.mp4", 3))


@functools.cache
def _grace_and_room() -> tuple[np.ndarray, np.ndarray]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = np.asarray(Image.open(fh).convert("RGB"))
    with av.open(str(VIDEO / "no_face.mp4")) as container:
        room = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return cv2.resize(grace, (341, 400), interpolation=cv2.INTER_AREA), room


def grace_frame(t: float) -> np.ndarray:
    """Grace Hopper, 400 px tall, swaying gently in front of the empty room."""
    grace, room = _grace_and_room()
    frame = room.copy()
    left = 150 + round(20 * math.sin(t))
    frame[80:480, left : left + 341] = grace
    return frame


def candidate_frames() -> Iterator[np.ndarray]:
    with av.open(str(VIDEO / "candidate_answer.mp4")) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def switch_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("switch") / "switch.mp4"
    source = candidate_frames()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(int(LENGTH * FPS)):
            t = i / FPS
            rgb = next(source) if t < SWITCH_AT else grace_frame(t)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_identity_is_consistent_on_the_candidate_answer(answer: FaceTimeline) -> None:
    """One person throughout: no switch, every face sample the same person."""
    assert answer.identity_switches == []
    assert all(s.same_person is True for s in answer.samples if s.faces)
    assert answer.reference_from == "answer" and answer.samples[0].distance == 0.0
    assert answer.reference is not None and len(answer.reference) == EMBEDDING_SIZE
    checks = [s.distance for s in answer.samples if s.distance]
    assert len(checks) >= 1  # compared again every IDENTITY_EVERY_S, not only once
    assert max(checks) < SAME_PERSON_DISTANCE - 0.2


def test_a_switch_to_another_person_is_flagged_at_the_switch(
    analyzer: FaceAnalyzer, switch_video: Path
) -> None:
    timeline = analyzer.analyse(sample_frames(switch_video.read_bytes(), 3))
    assert [r.label for r in timeline.ranges] == ["one"]  # still one face: only who changed
    assert len(timeline.identity_switches) == 1
    assert abs(timeline.identity_switches[0] - SWITCH_AT) <= 1.0
    for s in timeline.samples:
        if s.t < SWITCH_AT - 1e-6:
            assert s.same_person is True, s.t
        elif s.t >= SWITCH_AT + 1.0:
            assert s.same_person is False, s.t
    other = [s.distance for s in timeline.samples if s.distance and s.t >= SWITCH_AT]
    assert min(other) > SAME_PERSON_DISTANCE
    assert timeline.summary()["identity_switches"] == timeline.identity_switches


def test_a_reference_from_an_earlier_answer_carries_over(
    analyzer: FaceAnalyzer, answer: FaceTimeline
) -> None:
    """The same person in the next answer: no switch; the reference passed on is kept."""
    assert answer.reference is not None
    later = analyzer.analyse(
        sample_frames(VIDEO / "candidate_looks_away.mp4", 3), reference=answer.reference
    )
    assert later.reference_from == "earlier" and later.reference == answer.reference
    assert later.identity_switches == []
    assert all(s.same_person is not False for s in later.samples)


def test_another_person_from_the_first_sample_of_a_later_answer_is_a_switch(
    analyzer: FaceAnalyzer, answer: FaceTimeline
) -> None:
    frames = [(i / 3, grace_frame(i / 3)) for i in range(9)]
    later = analyzer.analyse(frames, reference=answer.reference)
    assert later.identity_switches == [0.0]
    assert all(s.same_person is False for s in later.samples)


def test_one_glimpse_of_another_face_is_not_a_switch(analyzer: FaceAnalyzer) -> None:
    """A single "different" check is not believed until the next sample confirms it."""
    source = candidate_frames()
    frames = []
    for i in range(45):  # 3 s at 15 fps, every fifth frame kept
        rgb = next(source)
        if i % 5 == 0:
            frames.append((i / FPS, grace_frame(0) if i == 20 else rgb))
    timeline = analyzer.analyse(frames)
    assert timeline.identity_switches == []
    glimpse = timeline.samples[4]
    assert glimpse.distance is not None and glimpse.distance > SAME_PERSON_DISTANCE
    assert glimpse.same_person is None  # a new face, not yet confirmed either way
    assert all(s.same_person is True for i, s in enumerate(timeline.samples) if i != 4)


def test_a_malformed_reference_is_refused(analyzer: FaceAnalyzer) -> None:
    frames = [(0.0, grace_frame(0))]
    with pytest.raises(ReferenceInvalid):
        analyzer.analyse(frames, reference=[0.1] * 12)
    with pytest.raises(ReferenceInvalid):
        analyzer.analyse(frames, reference=[float("nan")] * EMBEDDING_SIZE)
