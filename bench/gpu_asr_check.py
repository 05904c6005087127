"""The CUDA path of transcription, run on a lent GPU machine (issue #5, "run the GPU path
on the accelerator machine when one is lent").

The device machine has no network and no room for our 2.4 GB venv, so this script needs
only what travels: openai-whisper, zhconv and more-itertools copied from the venv
(`--lib`), the converted checkpoint (`base.pt`, sent in pieces and joined here), WAV
clips of the fixtures, and this repository. It picks the device the way the workers do
(`models.device.pick_device("auto", "torch")`), transcribes each clip on CUDA in float16
and on the CPU, and prints CER/WER (the fixtures' normalisation) and real-time factors.

    python bench/gpu_asr_check.py --checkpoint base.pt --clips DIR
"""

from __future__ import annotations

import argparse
import json
import time
import wave
from pathlib import Path

import numpy as np

from models.device import pick_device
from workers.analysis.asr_eval import micro_rate, score
from workers.analysis.asr_openai import OpenAIWhisperBackend


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16_000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def run(device: str, checkpoint: Path, clips: list[tuple[Path, str, str]]) -> dict[str, object]:
    started = time.perf_counter()
    backend = OpenAIWhisperBackend(checkpoint, device=device)
    load_s = time.perf_counter() - started
    hyps: dict[str, list[tuple[str, str]]] = {"zh": [], "en": []}
    audio_s = wall_s = 0.0
    for path, lang, ref in clips:
        audio = read_wav(path)
        t0 = time.perf_counter()
        out = backend.transcribe(audio, lang)
        wall_s += time.perf_counter() - t0
        audio_s += len(audio) / 16_000
        hyps[lang].append((ref, out.text))
    return {
        "device": device,
        "model": backend.model_name,
        "load_s": round(load_s, 2),
        "rtf_x": round(audio_s / wall_s, 1),
        "zh_cer": round(micro_rate(score(r, h, "zh") for r, h in hyps["zh"]), 4),
        "en_wer": round(micro_rate(score(r, h, "en") for r, h in hyps["en"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--clips", type=Path, required=True)
    args = parser.parse_args()
    truth = {t["file"]: t for t in json.loads((args.clips / "transcripts.json").read_text())}
    clips = [
        (p, truth[p.name]["lang"], truth[p.name]["text"])
        for p in sorted(args.clips.glob("*.wav"))
        if p.name in truth and truth[p.name]["kind"] == "answer"
    ]
    device = pick_device("auto", "torch")
    print(json.dumps({"picked": device, "clips": len(clips)}))
    for dev in dict.fromkeys([device, "cpu"]):
        print(json.dumps(run(dev, args.checkpoint, clips), ensure_ascii=False))


if __name__ == "__main__":
    main()
