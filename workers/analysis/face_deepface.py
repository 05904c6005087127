"""deepface as the alternative face backend (`AiSettings.face_backend == "deepface"`).

deepface (a design requirement) keeps its weights under `$DEEPFACE_HOME/.deepface/
weights` and downloads any that are missing. Nothing may download here, so:

- `DEEPFACE_HOME` points at the registry's `deepface-home` folder before deepface
  is first imported, and every weight file the models below read is checked to
  be there first: a missing one raises `ModelUnavailable` and deepface is never
  asked to fetch it (its download goes through gdown, which is installed only
  because deepface imports it at module level).
- `DEEPFACE_BACKEND_ENGINE=onnx`: deepface would otherwise pick torch (installed
  for the reference ASR backend) or TensorFlow for its own networks; the two
  models used here (dlib's) need neither.
- deepface logs with `print`: its calls run with stdout sent to stderr, so the
  JSON that `appliance faces --json` prints stays clean.

Models, what exists offline:

- Detector: deepface's `opencv` backend, OpenCV's Haar frontal-face cascade
  (and its eye cascade for the alignment), read from `cv2.data` of the OpenCV 4
  wheel; they are checked to be there first, since deepface would download
  them otherwise (OpenCV 5 wheels dropped them and `cv2.CascadeClassifier`).
  deepface asks for 10 neighbours, which keeps off the false face the default
  cascade settings find on a suit collar in the fixtures.
- Recogniser: deepface's `Dlib` (the same ResNet as the native backend, on
  deepface's own alignment and resizing), with deepface's own threshold for it
  (euclidean 0.6). Descriptors of the two backends are not interchangeable: a
  reference passed between answers must come from the same backend.

The timeline, gaze and identity logic are the native `FaceAnalyzer`'s; the face
mesh supplies the 5 landmarks deepface's detector does not give.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from appliance.settings import AiSettings
from models.registry import ModelUnavailable, weights_dir
from workers.analysis.faces import DETECT_SIDE, Face, FaceAnalyzer, Image, Vector, downscale

DETECTOR = "opencv"
RECOGNISER = "Dlib"
MIN_CONFIDENCE = 0.5
"""deepface's confidence for an OpenCV face (from the cascade's level weight): real faces
score 0.93-0.95 on the fixtures, and from 0.9 one may be the identity reference; "no
face" comes back as the whole frame at 0."""
DETECT_SIDE_DEEPFACE = 2 * DETECT_SIDE
"""The cascade wants faces of some 30 px and more: it gets the full VGA frame where
the native detector gets half."""
HOME_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_eye.xml")


class DeepFaceHomeMismatch(RuntimeError):
    """deepface was already imported with another home: its weights could come from anywhere."""


def deepface_home(ai: AiSettings) -> Path:
    """The deepface home folder, checked: its pinned recogniser (by the registry) and
    the Haar cascades deepface's OpenCV detector reads from `cv2.data`."""
    home = weights_dir("deepface-home", ai.models_dir)
    if not (home / ".deepface" / "weights" / HOME_FILE).is_file():
        raise ModelUnavailable(f"deepface-home lacks {HOME_FILE}: run `appliance models fetch`")
    haar = getattr(getattr(cv2, "data", None), "haarcascades", None)  # gone in OpenCV 5
    missing = [c for c in CASCADES if haar is None or not (Path(haar) / c).is_file()]
    if missing or not hasattr(cv2, "CascadeClassifier"):
        raise ModelUnavailable(
            f"OpenCV {cv2.__version__} lacks the Haar cascades deepface's detector needs "
            f"({', '.join(missing) or 'CascadeClassifier'}); it must never download them: "
            "install opencv-python-headless 4.x (pyproject.toml)"
        )
    return home


def load_deepface(ai: AiSettings) -> ModuleType:
    """`deepface.DeepFace`, imported with its home on the verified folder."""
    home = str(deepface_home(ai))
    if "deepface" in sys.modules and os.environ.get("DEEPFACE_HOME") != home:
        raise DeepFaceHomeMismatch(
            f"deepface was imported with DEEPFACE_HOME={os.environ.get('DEEPFACE_HOME')!r}"
        )
    os.environ["DEEPFACE_HOME"] = home
    os.environ["DEEPFACE_BACKEND_ENGINE"] = "onnx"
    os.environ.setdefault("DEEPFACE_LOG_LEVEL", "30")  # warnings and errors only
    with _quiet():
        return importlib.import_module("deepface.DeepFace")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


class DeepFaceDetector:
    """deepface's `extract_faces` with its OpenCV detector; keeps its aligned crops."""

    name = f"deepface-{DETECTOR}"
    confident = 0.9

    def __init__(self, ai: AiSettings) -> None:
        self._deepface = load_deepface(ai)
        with _quiet():  # build the model now, not on the first frame
            self._deepface.build_model(task="face_detector", model_name=DETECTOR)

    def __call__(self, rgb: Image) -> list[Face]:
        scale = min(1.0, DETECT_SIDE_DEEPFACE / max(rgb.shape[:2]))
        small = downscale(rgb, scale)
        with _quiet():
            found: list[dict[str, Any]] = self._deepface.extract_faces(
                img_path=np.ascontiguousarray(small[:, :, ::-1]),  # deepface takes BGR
                detector_backend=DETECTOR,
                enforce_detection=False,  # no face is an answer here, not an error
                align=True,
            )
        faces = []
        for item in found:
            # With enforce_detection off, "no face" comes back as the whole frame at 0.
            if float(item["confidence"]) < MIN_CONFIDENCE:
                continue
            area = item["facial_area"]
            box = (area["x"] / scale, area["y"] / scale, area["w"] / scale, area["h"] / scale)
            faces.append(Face(box, float(item["confidence"]), None, chip=item["face"]))
        return faces


class DeepFaceRecogniser:
    """deepface's `represent` with its Dlib model, on the detector's aligned crop."""

    name = f"deepface-{RECOGNISER}"

    def __init__(self, ai: AiSettings) -> None:
        self._deepface = load_deepface(ai)
        from deepface.modules.verification import find_threshold

        self.threshold = float(find_threshold(RECOGNISER, "euclidean"))
        with _quiet():
            self._deepface.build_model(task="facial_recognition", model_name=RECOGNISER)

    def __call__(self, rgb: Image, face: Face) -> Vector:
        if face.chip is not None:
            chip = np.clip(face.chip * 255.0, 0, 255).astype(np.uint8)  # RGB in [0, 1]
        else:
            x, y, w, h = (max(0, round(v)) for v in face.box)
            chip = rgb[y : y + h, x : x + w]
        with _quiet():
            out = self._deepface.represent(
                img_path=np.ascontiguousarray(chip[:, :, ::-1]),
                model_name=RECOGNISER,
                detector_backend="skip",  # the crop is already the face
                enforce_detection=False,
            )
        return np.asarray(out[0]["embedding"], dtype=np.float64)


def deepface_analyzer(ai: AiSettings) -> FaceAnalyzer:
    """The face analyzer on deepface's detector and recogniser (see the module docstring)."""
    return FaceAnalyzer(ai, detector=DeepFaceDetector(ai), recogniser=DeepFaceRecogniser(ai))
