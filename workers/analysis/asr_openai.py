"""openai-whisper, the reference ASR backend (issue #5: a design requirement).

faster-whisper is the default backend; this one runs the same Whisper weights in
openai's own PyTorch code, from the checkpoint `models/convert_whisper.py` derives
from the CTranslate2 files (`weights_dir("whisper-base-openai") / "base.pt"`), so a
disputed transcript can be checked against the reference implementation.

Offline by construction: the checkpoint is loaded by path, the tokenizer reads the
tiktoken files shipped in the whisper package (`whisper/assets`), and audio comes in
as samples; `whisper.load_audio` is never used because it runs the ffmpeg CLI
(decode with `workers.analysis.audio.load_audio`, PyAV, instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import whisper
import zhconv

from workers.analysis.transcript import Segment, Transcript, Word

SAMPLE_RATE = 16_000
LANGUAGES = ("zh", "en")
"""Answers are Mandarin or English: detection only chooses between these two."""

# openai's model sizes by (encoder width, encoder layers), for the `model` label.
_SIZES = {(384, 4): "tiny", (512, 6): "base", (768, 12): "small", (1024, 24): "medium"}


class OpenAIWhisperBackend:
    """Whisper in openai-whisper, loaded once per worker process."""

    def __init__(
        self,
        checkpoint: Path,
        device: str = "cpu",
        threads: int = 0,
        *,
        beam_size: int | None = None,
    ) -> None:
        """`beam_size` None decodes greedily (openai's default, with its temperature fallback)."""
        if threads > 0:
            torch.set_num_threads(threads)
        self._device = device
        self._beam_size = beam_size
        self._model = whisper.load_model(str(checkpoint), device=device)
        # load_model(path) keeps openai's default heads (the last half of the decoder);
        # the converter stores the tuned ones, which word timestamps depend on.
        heads = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True).get(
            "alignment_heads"
        )
        if heads is not None:
            self._model.set_alignment_heads(heads)
        dims = self._model.dims
        size = _SIZES.get((dims.n_audio_state, dims.n_audio_layer), "custom")
        self.model_name = f"whisper-{size}/openai-whisper-{device}"

    def detect_language(self, audio: np.ndarray) -> str:
        """zh or en, from the first 30 s of this answer (never once per interview)."""
        window = whisper.pad_or_trim(audio)
        mel = whisper.log_mel_spectrogram(window, self._model.dims.n_mels).to(self._device)
        with torch.no_grad():
            _, probs = self._model.detect_language(mel)
        return max(LANGUAGES, key=lambda lang: probs.get(lang, 0.0))

    def transcribe(
        self, audio: np.ndarray, language: str | None, prompt: str | None = None
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 samples; `language` None detects zh or en."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        language = language or self.detect_language(audio)
        result = whisper.transcribe(
            self._model,
            audio,
            language=language,
            task="transcribe",
            initial_prompt=prompt or None,
            word_timestamps=True,
            fp16=self._device != "cpu",  # float16 matmuls are slow or missing on CPUs
            verbose=None,  # nothing printed: transcripts are personal data
            beam_size=self._beam_size,
        )
        segments = [_segment(s, language) for s in result["segments"]]
        joiner = "" if language == "zh" else " "
        return Transcript(
            language=language,
            text=joiner.join(s.text for s in segments if s.text),
            segments=segments,
            duration_s=audio.size / SAMPLE_RATE,
            model=self.model_name,
        )


def _text(text: str, language: str) -> str:
    """Whisper base often writes Mandarin in traditional characters: we store simplified."""
    text = text.strip()
    return zhconv.convert(text, "zh-cn") if language == "zh" else text


def _segment(raw: dict[str, Any], language: str) -> Segment:
    words = [
        Word(float(w["start"]), float(w["end"]), _text(w["word"], language))
        for w in raw.get("words", [])
    ]
    return Segment(float(raw["start"]), float(raw["end"]), _text(raw["text"], language), words)
