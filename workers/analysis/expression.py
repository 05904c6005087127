"""Facial expression estimates (issue #5, item 4): a signal with its uncertainty, never a decision.

Allowed only where the jurisdiction profile says so and the candidate gave
separate consent. The EU profile never allows it: inferring emotions of a person
in the workplace, recruitment included, is prohibited by AI Act Art. 5(1)(f).
`ExpressionAnalyzer` checks the profile itself, so no caller can get an
estimate under such a profile through this module, whatever path it takes.

The model is `fer`'s quantized Keras-to-TFLite classifier (93 KB, MIT; trained
on FER-2013), run with ai-edge-litert. It was trained on posed, low-resolution
faces and is known to be unreliable across cultures and on neutral interview
faces: that is why the report shows the mean probabilities together with how
uncertain they are and on how many samples they rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from appliance.settings import AiSettings
from compliance.profiles import Profile, load_profile
from models.registry import weights_dir

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
Probabilities = npt.NDArray[np.float32]

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""fer's output order (`FER._get_labels`)."""
MODEL_FILE = "emotion_model_quantized.tflite"
MIN_SAMPLES = 5
"""Fewer faces than this: the estimate is reported as insufficient."""
# fer's preprocessing (fer/fer.py, `detect_emotions`): the gray frame padded by 40 px
# with the mean of its bottom rows, the face box made square, 10 px added around it.
PADDING = 40
OFFSET = 10


class ExpressionNotAllowed(PermissionError):
    """The profile in force forbids expression analysis (EU: AI Act Art. 5(1)(f))."""


@dataclass(frozen=True)
class ExpressionSignal:
    """Mean class probabilities over an answer, with how far to trust them."""

    mean: dict[str, float]
    spread: dict[str, float]
    """Standard deviation of each label's probability over the samples."""
    samples: int
    uncertainty: float
    """Mean normalised entropy of the per-sample distributions: 0 certain, 1 uniform."""
    model: str

    @property
    def sufficient(self) -> bool:
        return self.samples >= MIN_SAMPLES

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "spread": self.spread,
            "samples": self.samples,
            "uncertainty": self.uncertainty,
            "sufficient": self.sufficient,
            "model": self.model,
            "note": "a signal for a person to weigh, never a decision on its own",
        }


class ExpressionAnalyzer:
    """fer's TFLite model on face crops; refuses to exist under a profile that forbids it."""

    model = "fer-emotion-quantized"

    def __init__(self, ai: AiSettings, profile: Profile) -> None:
        if not profile.expression_analysis:
            raise ExpressionNotAllowed(
                f"the {profile.name} profile does not allow expression analysis"
            )
        from ai_edge_litert.interpreter import Interpreter

        path = weights_dir("fer", ai.models_dir) / MODEL_FILE
        self._net = Interpreter(str(path), num_threads=1)  # 3 ms a face: threads cost more
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]
        self._output = self._net.get_output_details()[0]
        self.size = int(self._input["shape"][1])  # 64 for this model (fer hard-codes it too)

    def crop(self, rgb: Image, box: Box) -> npt.NDArray[np.float32]:
        """The face as the model takes it: gray, square, padded, size x size, in [-1, 1]."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        fill = float(gray[-2:].mean())
        padded = cv2.copyMakeBorder(
            gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT, value=fill
        )
        x, y, w, h = (round(v) for v in box)
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        x1, y1 = max(0, x - OFFSET + PADDING), max(0, y - OFFSET + PADDING)
        x2, y2 = x + w + OFFSET + PADDING, y + h + OFFSET + PADDING
        face = cv2.resize(padded[y1:y2, x1:x2], (self.size, self.size))
        return ((face.astype(np.float32) / 255.0) - 0.5) * 2.0

    def probabilities(self, rgb: Image, box: Box) -> Probabilities:
        """Class probabilities (in `LABELS` order) of one face in an RGB frame."""
        tensor = self.crop(rgb, box)[np.newaxis, :, :, np.newaxis]
        self._net.set_tensor(self._input["index"], tensor)
        self._net.invoke()
        out = self._net.get_tensor(self._output["index"])[0].astype(np.float32)
        total = float(out.sum())
        return out / total if total > 0 else out

    def summarise(self, probabilities: Sequence[Probabilities]) -> ExpressionSignal:
        if not probabilities:
            empty = dict.fromkeys(LABELS, 0.0)
            return ExpressionSignal(empty, empty, 0, 1.0, self.model)
        table = np.stack(probabilities).astype(np.float64)
        clipped = np.clip(table, 1e-12, 1.0)
        entropy = -(clipped * np.log(clipped)).sum(axis=1) / math.log(len(LABELS))
        return ExpressionSignal(
            mean={k: round(float(v), 4) for k, v in zip(LABELS, table.mean(axis=0), strict=True)},
            spread={k: round(float(v), 4) for k, v in zip(LABELS, table.std(axis=0), strict=True)},
            samples=len(table),
            uncertainty=round(float(entropy.mean()), 4),
            model=self.model,
        )

    def analyse(self, faces: Iterable[tuple[Image, Box]]) -> ExpressionSignal:
        """The signal over `(frame, face box)` pairs of one answer."""
        return self.summarise([self.probabilities(rgb, box) for rgb, box in faces])


_ANALYZERS: dict[AiSettings, ExpressionAnalyzer] = {}


def expression_analyzer(ai: AiSettings, profile: str | Profile) -> ExpressionAnalyzer:
    """The process's analyzer, or ExpressionNotAllowed under a profile that forbids it.

    `profile` is the profile in force (`Settings.jurisdiction` or the loaded
    `Profile`). The refusal comes before any model is loaded.
    """
    loaded = load_profile(profile) if isinstance(profile, str) else profile
    if not loaded.expression_analysis:
        raise ExpressionNotAllowed(f"the {loaded.name} profile does not allow expression analysis")
    if ai not in _ANALYZERS:
        _ANALYZERS[ai] = ExpressionAnalyzer(ai, loaded)
    return _ANALYZERS[ai]
