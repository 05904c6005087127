"""Transcription speed (real-time factor) and accuracy on the speech fixtures (issue #5).

Goal (issue 5): at least 15x real time for Whisper base on this 2-core machine, VAD and
I/O included. The real-time factor is audio seconds / wall seconds for decoding the
WAV file (PyAV), Silero VAD and Whisper, the model already loaded (the load, which
includes the registry's sha256 check of the weights, is timed on its own: a worker
pays it once per process). Each thread count loads its own model.

Also printed: micro CER (Mandarin) and WER (English) with the fixtures README's
normalisation (`workers.analysis.asr_eval`), language given, next to the baseline's
`given` figures; and the same with a job vocabulary prompt per role.
Writes bench/results/asr.txt.

    .venv/bin/python bench/asr_bench.py                 # all cores, then 1 thread
    .venv/bin/python bench/asr_bench.py --threads 1 --no-vocabulary
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "fixtures" / "speech"
RESULTS = ROOT / "bench" / "results" / "asr.txt"
GOAL_RTF = 15.0
GROUPS = {
    ("answer", "zh"): "zh_answers_CER",
    ("answer", "en"): "en_answers_WER",
    ("vad_long_silence", "zh"): "zh_vad_long_silence_CER",
    ("vad_long_silence", "en"): "en_vad_long_silence_WER",
    ("code_switch", "zh"): "zh_code_switch_CER",
}


def _run(threads: int, vocabulary: bool) -> list[str]:
    from appliance.settings import AiSettings
    from workers.analysis.asr import transcriber
    from workers.analysis.asr_eval import ROLE_VOCABULARY, fixture_clips, micro_rate, score
    from workers.analysis.audio import load_audio

    clips = fixture_clips(SPEECH)
    baseline = json.loads((SPEECH / "baseline_asr.json").read_text("utf-8"))["summary"]
    started = time.perf_counter()
    asr = transcriber(AiSettings(device="cpu", cpu_threads=threads))
    load_s = time.perf_counter() - started
    asr.transcribe(load_audio(SPEECH / clips[0].file), clips[0].language)  # warm-up

    lines = [f"threads {threads}: model load {load_s:.2f} s ({asr.model_name})"]
    passes = [("no prompt", False)] + ([("job vocabulary", True)] if vocabulary else [])
    for label, with_prompt in passes:
        counts: dict[tuple[str, str], list] = {}
        audio_s = {"answer": 0.0, "all": 0.0}
        wall = {"answer": 0.0, "all": 0.0}
        cpu = 0.0
        for clip in clips:
            if with_prompt and clip.kind != "answer":
                continue
            prompt = (
                ROLE_VOCABULARY[clip.role][clip.language] if with_prompt and clip.role else None
            )
            t0, c0 = time.perf_counter(), time.process_time()
            transcript = asr.transcribe(load_audio(SPEECH / clip.file), clip.language, prompt)
            elapsed = time.perf_counter() - t0
            cpu += time.process_time() - c0
            for key in ("answer", "all") if clip.kind == "answer" else ("all",):
                audio_s[key] += clip.duration_s
                wall[key] += elapsed
            counts.setdefault((clip.kind, clip.language), []).append(
                score(clip.text, transcript.text, clip.language)
            )
        rtf = audio_s["answer"] / wall["answer"]
        verdict = "met" if rtf >= GOAL_RTF else "NOT met"
        lines.append(
            f"  {label:15s} answers: {audio_s['answer']:.1f} s audio in {wall['answer']:.2f} s "
            f"= {rtf:.1f}x real time (goal >= {GOAL_RTF:.0f}x: {verdict}); "
            f"all clips {audio_s['all'] / wall['all']:.1f}x; CPU {cpu:.1f} s"
        )
        for group, items in counts.items():
            name = GROUPS[group]
            unit = name.rsplit("_", 1)[1]
            base = baseline[name]["given"]["micro_rate"]
            lines.append(
                f"    {name:26s} {len(items):2d} clips  {unit} {micro_rate(items) * 100:5.1f} %"
                f"  (baseline given {base * 100:.1f} %, bound {(base + 0.02) * 100:.1f} %)"
            )
    return lines


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=f"{cores},1", help="thread counts, comma-separated")
    parser.add_argument("--no-vocabulary", action="store_true", help="skip the prompted pass")
    args = parser.parse_args()
    load = os.getloadavg()
    lines = [
        f"asr_bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()}, {cores} cores, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} at start",
        "decoding + VAD + Whisper per clip, model loaded; language given",
    ]
    print("\n".join(lines), flush=True)
    for threads in (int(t) for t in args.threads.split(",")):
        block = _run(threads, not args.no_vocabulary)
        print("\n".join(block), flush=True)
        lines += block
    lines.append(f"load average at the end {os.getloadavg()[0]:.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
