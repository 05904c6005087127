"""deepface as the alternative face backend, with what exists offline (issue #5, item 1):
its OpenCV detector on the cascades of the OpenCV 4 wheel, its Dlib recogniser on the
registry's `deepface-home` folder.

The deepface runs happen in a child process inside a new network namespace
(`unshare --net`): no route anywhere, so any download deepface tried would fail
the run. That, the unchanged home folder and the absence of deepface's own
"will be downloaded" log line (its log level raised to INFO) show that nothing
is fetched; no function is patched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest

from appliance.settings import AiSettings
from models.registry import ModelUnavailable
from workers.analysis.face_deepface import CASCADES, deepface_home
from workers.analysis.faces import face_analyzer

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "video"
TRUTH = json.loads((VIDEO / "truth.json").read_text(encoding="utf-8"))
FRAMES = sorted(TRUTH["frames"])
ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys
    import av, numpy as np
    from appliance.settings import AiSettings
    from workers.analysis.faces import face_analyzer

    video = sys.argv[1]
    names = json.loads(sys.argv[2])

    def rgb(name):
        with av.open(f"{video}/{name}") as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24")

    analyzer = face_analyzer(AiSettings(face_backend="deepface"))
    counts = {name: len(analyzer.detector(rgb(name))) for name in names}

    from deepface import DeepFace
    import matplotlib.cbook
    grace = str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    bgr = lambda name: np.ascontiguousarray(rgb(name)[:, :, ::-1])
    verify = lambda a, b: DeepFace.verify(
        a, b, model_name="Dlib", detector_backend="opencv", distance_metric="euclidean"
    )
    same = verify(bgr("frames/face_centered.png"), bgr("frames/face_tilted_zoomed.png"))
    other = verify(bgr("frames/face_centered.png"), grace)
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "torch", "keras"})
    print("RESULT " + json.dumps({
        "model": analyzer.model,
        "counts": counts,
        "same": [same["verified"], same["distance"], same["threshold"]],
        "other": [other["verified"], other["distance"]],
        "heavy": heavy,
    }))
    """
)


@pytest.fixture(scope="module")
def offline_run() -> dict[str, object]:
    """The deepface backend run once in a child process with no network at all."""
    home = deepface_home(AiSettings()) / ".deepface" / "weights"
    before = sorted(p.name for p in home.iterdir())
    env = os.environ | {"DEEPFACE_LOG_LEVEL": "20", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        ["unshare", "--net", "--map-root-user", sys.executable, "-c", CHILD]
        + [str(VIDEO), json.dumps(FRAMES)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "will be downloaded" not in run.stdout + run.stderr
    assert sorted(p.name for p in home.iterdir()) == before
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_deepface_runs_offline_without_tensorflow_or_torch(offline_run: dict[str, object]) -> None:
    assert offline_run["heavy"] == []
    assert offline_run["model"] == "deepface-opencv+mediapipe-iris+deepface-Dlib"


def test_deepface_agrees_with_the_native_backend_on_face_counts(
    offline_run: dict[str, object],
) -> None:
    native = face_analyzer(AiSettings())
    counts = offline_run["counts"]
    assert isinstance(counts, dict)
    for name in FRAMES:
        with av.open(str(VIDEO / name)) as container:
            rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
        truth = len(TRUTH["frames"][name]["faces"])
        assert counts[name] == len(native.detector(rgb)) == truth, name


def test_deepface_verifies_the_same_face_and_rejects_another(
    offline_run: dict[str, object],
) -> None:
    """Two frames of the fixture face (centred; tilted and zoomed) match; Grace Hopper does not."""
    same, other = offline_run["same"], offline_run["other"]
    assert isinstance(same, list) and isinstance(other, list)
    verified, distance, threshold = same
    assert verified is True and distance < threshold == 0.6
    assert other[0] is False and other[1] > 0.6


def test_deepface_backend_builds_a_timeline_in_process() -> None:
    """The same timeline logic on deepface's detector: counts, looking from the face mesh."""
    analyzer = face_analyzer(AiSettings(face_backend="deepface"))
    frames = []
    for i, name in enumerate(("face_centered", "face_tilted_zoomed", "two_faces")):
        with av.open(str(VIDEO / "frames" / f"{name}.png")) as container:
            frames.append((i / 2, next(container.decode(video=0)).to_ndarray(format="rgb24")))
    timeline = analyzer.analyse(frames, fps=2)
    assert [s.faces for s in timeline.samples] == [1, 1, 2]
    assert all(s.looking is True for s in timeline.samples)
    assert timeline.samples[0].same_person is True
    assert timeline.samples[1].same_person is True  # the tilted face is the same person
    assert timeline.reference is not None and len(timeline.reference) == 128
    assert timeline.threshold == 0.6


def test_a_missing_weight_file_is_refused_before_deepface_could_fetch_it(tmp_path: Path) -> None:
    weights = tmp_path / "cache" / "deepface-home" / ".deepface" / "weights"
    weights.mkdir(parents=True)
    with pytest.raises(ModelUnavailable, match="deepface-home"):
        deepface_home(AiSettings(models_dir=tmp_path))
    assert list(weights.iterdir()) == []  # nothing fetched into it


def test_the_cascades_come_from_the_opencv_wheel() -> None:
    """deepface's OpenCV detector reads them from cv2.data: there, so never downloaded."""
    import cv2

    for name in CASCADES:
        assert (Path(cv2.data.haarcascades) / name).is_file()
    assert deepface_home(AiSettings()).name == "deepface-home"
