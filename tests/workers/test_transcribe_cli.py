"""`appliance transcribe FILE --lang zh --json` (issue #5, item 8): the workers' code behind
the CLI, the exact JSON shape, run as IT would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import zhconv

from workers.analysis.asr_eval import fixture_clips, score

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT.parent / "shared" / "fixtures" / "speech"
APPLIANCE = Path(sys.executable).parent / "appliance"


def _transcribe(path: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [str(APPLIANCE), "transcribe", str(path), *args],
        env={**os.environ, "ENCLAVE_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_json_has_exactly_the_documented_keys() -> None:
    path = SPEECH / "zh_04_resident_why.wav"
    out = _transcribe(path, "--lang", "zh", "--json")
    assert list(out) == ["file", "language", "text", "segments"]
    assert out["file"] == str(path)
    assert out["language"] == "zh"
    text = out["text"]
    assert isinstance(text, str) and zhconv.convert(text, "zh-cn") == text
    segments = out["segments"]
    assert isinstance(segments, list) and segments
    for segment in segments:
        assert list(segment) == ["start", "end", "text", "words"]
        assert segment["words"]
        for word in segment["words"]:
            assert list(word) == ["start", "end", "word"]
            assert segment["start"] <= word["start"] <= word["end"] <= segment["end"]
    assert "".join(s["text"] for s in segments) == text
    (clip,) = (c for c in fixture_clips(SPEECH) if c.file == path.name)
    assert score(clip.text, text, "zh").rate < 0.2


def test_auto_language_detects_english() -> None:
    out = _transcribe(SPEECH / "en_03_pharmacist_mistake.wav", "--lang", "auto", "--json")
    assert out["language"] == "en"
    assert "career" in str(out["text"]).lower()
