"""Expression estimates: refused under the EU profile, a signal with its uncertainty elsewhere.

AI Act Art. 5(1)(f) forbids emotion inference in recruitment: under the EU
profile no path through `workers.analysis.expression` may produce an estimate.
The model is `fer`'s quantized TFLite classifier on ai-edge-litert.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from appliance.settings import AiSettings
from compliance.profiles import load_profile
from workers.analysis.expression import (
    LABELS,
    MIN_SAMPLES,
    ExpressionAnalyzer,
    ExpressionNotAllowed,
    expression_analyzer,
)
from workers.analysis.faces import face_analyzer
from workers.analysis.video import sample_frames

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "video"
AI = AiSettings()


def test_the_eu_profile_never_gets_an_analyzer() -> None:
    """Neither the cached factory nor the class itself will make one under the EU profile."""
    assert load_profile("eu").expression_analysis is False
    with pytest.raises(ExpressionNotAllowed, match="eu"):
        expression_analyzer(AI, "eu")
    with pytest.raises(ExpressionNotAllowed):
        expression_analyzer(AI, load_profile("eu"))
    with pytest.raises(ExpressionNotAllowed):
        ExpressionAnalyzer(AI, load_profile("eu"))


def test_the_eu_refusal_holds_after_an_allowed_profile_loaded_the_model() -> None:
    """The process cache is per settings, but the profile is checked on every call."""
    allowed = expression_analyzer(AI, "pipl")
    assert isinstance(allowed, ExpressionAnalyzer)
    with pytest.raises(ExpressionNotAllowed):
        expression_analyzer(AI, "eu")


@pytest.mark.parametrize("profile", ["pipl", "illinois", "nyc"])
def test_profiles_that_allow_it_get_an_analyzer(profile: str) -> None:
    assert load_profile(profile).expression_analysis is True
    assert expression_analyzer(AI, profile).model == "fer-emotion-quantized"


def test_the_smiling_candidate_reads_as_happy_with_low_uncertainty() -> None:
    """The fixture face is smiling in every frame: the model says so, and is sure."""
    expression = expression_analyzer(AI, "pipl")
    timeline = face_analyzer(AI).analyse(
        sample_frames(VIDEO / "candidate_answer.mp4", 3), expression=expression
    )
    signal = timeline.expression
    assert signal is not None and signal.sufficient
    assert signal.samples == 60
    assert list(signal.mean) == list(LABELS) and list(signal.spread) == list(LABELS)
    assert sum(signal.mean.values()) == pytest.approx(1.0, abs=0.01)
    assert max(signal.mean, key=lambda k: signal.mean[k]) == "happy"
    assert signal.uncertainty < 0.2
    out = timeline.summary()["expression"]
    assert out["samples"] == 60 and "never a decision" in out["note"]


def test_no_face_means_no_estimate_and_full_uncertainty() -> None:
    expression = expression_analyzer(AI, "pipl")
    signal = expression.summarise([])
    assert signal.samples == 0 and not signal.sufficient and signal.uncertainty == 1.0
    assert MIN_SAMPLES > 1


def test_uncertainty_grows_when_the_samples_disagree() -> None:
    expression = expression_analyzer(AI, "pipl")
    sure = np.eye(len(LABELS), dtype=np.float32)
    agree = expression.summarise([sure[3]] * 6)
    flat = expression.summarise([np.full(len(LABELS), 1 / len(LABELS), np.float32)] * 6)
    split = expression.summarise([sure[3], sure[4]] * 3)
    assert agree.uncertainty == pytest.approx(0.0, abs=1e-6) and agree.spread["happy"] == 0
    assert flat.uncertainty == pytest.approx(1.0, abs=1e-6)
    assert split.mean["happy"] == pytest.approx(0.5) and split.spread["happy"] == pytest.approx(0.5)


def test_crop_follows_fers_preprocessing() -> None:
    """64x64 (fer's size for this model), gray, scaled to [-1, 1], face box made square."""
    expression = expression_analyzer(AI, "pipl")
    with av.open(str(VIDEO / "frames" / "face_centered.png")) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    crop = expression.crop(rgb, (238.0, 144.0, 129.0, 129.0))
    assert crop.shape == (64, 64) and crop.dtype == np.float32
    assert -1.0 <= crop.min() < 0 < crop.max() <= 1.0
    edge = expression.crop(rgb, (-30.0, 400.0, 100.0, 120.0))  # off the frame: padded
    assert edge.shape == (64, 64)
    probs = expression.probabilities(rgb, (238.0, 144.0, 129.0, 129.0))
    assert probs.shape == (len(LABELS),) and float(probs.sum()) == pytest.approx(1.0, abs=1e-3)
