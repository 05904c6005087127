"""`appliance faces FILE --json`: the workers' face timeline with exactly the issue's keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "video"
APPLIANCE = Path(sys.executable).parent / "appliance"


def faces_json(path: Path) -> dict[str, object]:
    run = subprocess.run(
        [str(APPLIANCE), "faces", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ | {"ENCLAVE_CONFIG": ""},  # defaults: no config file needed
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return dict(json.loads(run.stdout))


def test_faces_json_has_exactly_the_issue_keys_and_the_true_timeline() -> None:
    path = VIDEO / "candidate_looks_away.mp4"
    out = faces_json(path)
    assert list(out) == ["file", "fps", "samples", "ranges"]
    assert out["file"] == str(path) and out["fps"] == 3.0
    samples, ranges = out["samples"], out["ranges"]
    assert isinstance(samples, list) and isinstance(ranges, list)
    assert len(samples) == 60
    for s in samples:
        assert list(s) == ["t", "faces", "looking", "same_person"]
        assert isinstance(s["faces"], int) and isinstance(s["t"], float)
        assert s["looking"] in (True, False, None) and s["same_person"] in (True, False, None)
    for r in ranges:
        assert list(r) == ["start", "end", "label"]
        assert r["label"] in ("one", "none", "two")
    assert [r["label"] for r in ranges] == ["one", "none", "one"]
    assert abs(ranges[1]["start"] - 8.867) <= 1.0 and abs(ranges[2]["start"] - 13.267) <= 1.0
    assert all(s["same_person"] is not False for s in samples)


def test_faces_json_two_faces() -> None:
    out = faces_json(VIDEO / "two_faces.mp4")
    assert out["ranges"] == [{"start": 0.0, "end": 10.0, "label": "two"}]
    assert all(s["faces"] == 2 for s in out["samples"])  # type: ignore[attr-defined]
