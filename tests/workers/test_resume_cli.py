"""`appliance resumes parse FILE... --json`: JSON Lines with exactly the issue's keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "resumes"
KEYS = [
    "file",
    "name",
    "email",
    "phone",
    "education",
    "experience",
    "skills",
    "certifications",
    "languages",
    "error",
]


def test_parse_json_lines_one_object_per_file_in_order(tmp_path: Path) -> None:
    """One object per file as given, exact keys, YYYY-MM dates, 11-digit mobile, errors inline."""
    files = [
        str(FIXTURES / "zh_04.pdf"),
        str(FIXTURES / "en_03.txt"),
        str(FIXTURES / "zh_07.docx"),
        str(FIXTURES / "bad" / "exe_renamed.pdf"),
        str(tmp_path / "missing.pdf"),
    ]
    appliance = Path(sys.executable).parent / "appliance"
    run = subprocess.run(
        [str(appliance), "resumes", "parse", *files, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    for row in rows:
        assert list(row) == KEYS
    zh04, en03, zh07, exe, missing = rows
    assert zh04["error"] is None and zh04["name"] == "周婧怡" and zh04["phone"] == "13800008563"
    assert zh04["experience"][0] == {
        "employer": "青原医科大学附属第二医院",
        "title": "系统管理员",
        "start": "2024-01",
        "end": None,
    }
    assert list(zh04["education"][0]) == ["school", "degree", "major", "start", "end"]
    assert en03["phone"] == "13800003100" and en03["experience"][0]["end"] is None
    assert (
        zh07["education"][0]["start"] == "2008-09" and "执业药师资格证书" in zh07["certifications"]
    )
    assert "Windows executable" in exe["error"]
    assert exe["name"] is None and exe["education"] == [] and exe["skills"] == []
    assert "cannot read file" in missing["error"]
