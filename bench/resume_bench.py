"""Resume parsing throughput: text PDFs and scans per second, and 100,000 text resumes projected.

Goal (issue 4): 100,000 text resumes in at most 60 minutes on this 2-core box.
Text PDFs run in one worker process per core (how the `documents` queue runs);
scans run once each in one process with onnxruntime using every core.
Prints the figures and writes them to bench/results/resume_bench.txt.

    .venv/bin/python bench/resume_bench.py [--rounds 40] [--scans 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "resumes"
RESULTS = ROOT / "bench" / "results" / "resume_bench.txt"
GOAL_MINUTES = 60
TARGET = 100_000


def _parse_many(args: tuple[list[str], int]) -> int:
    from workers.resumes import parse_resume

    paths, rounds = args
    blobs = [Path(p).read_bytes() for p in paths]
    done = 0
    for _ in range(rounds):
        for data in blobs:
            result = parse_resume(data)
            assert result.error is None
            done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="passes over the text PDFs")
    parser.add_argument("--scans", type=int, default=4, help="how many scans to OCR")
    args = parser.parse_args()
    index = json.loads((FIXTURES / "index.json").read_text("utf-8"))
    pdfs = [str(FIXTURES / i["file"]) for i in index if i["format"] == "pdf"]
    scans = [str(FIXTURES / i["file"]) for i in index if i["format"].startswith("scan")]
    cores = os.cpu_count() or 1

    _parse_many((pdfs, 1))  # warm imports
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        counts = pool.map(_parse_many, [(pdfs, args.rounds)] * cores)
    elapsed = time.perf_counter() - started
    pdf_rate = sum(counts) / elapsed
    projected_min = TARGET / pdf_rate / 60

    from workers.resumes import parse_resume
    from workers.resumes.ocr import get_engine

    engine = get_engine()
    chosen = scans[: args.scans]
    started = time.perf_counter()
    for path in chosen:
        assert parse_resume(Path(path).read_bytes(), ocr=engine).error is None
    scan_elapsed = time.perf_counter() - started
    scan_rate = len(chosen) / scan_elapsed

    lines = [
        f"resume_bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  "
        f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        f"text PDFs : {sum(counts)} parses of {len(pdfs)} fixture PDFs in {elapsed:.1f} s "
        f"with {cores} processes = {pdf_rate:.1f} resumes/s",
        f"scans     : {len(chosen)} scans (OCR, rapidocr PP-OCRv6 small, no angle cls) in "
        f"{scan_elapsed:.1f} s = {scan_rate:.3f} resumes/s "
        f"({scan_elapsed / len(chosen):.1f} s each)",
        f"projected : {TARGET:,} text resumes in {projected_min:.1f} min "
        f"(goal <= {GOAL_MINUTES} min: {'met' if projected_min <= GOAL_MINUTES else 'NOT met'})",
        f"projected : {TARGET:,} scans in {TARGET / scan_rate / 3600:.1f} h on this box",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
