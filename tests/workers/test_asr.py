"""ASR plumbing (issue #5): decoding media with PyAV, the scoring rules, one model per
process, and the device choice. Accuracy on the fixtures is in test_asr_fixtures.py."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from appliance.settings import AiSettings
from models.device import DeviceUnavailable, cuda_usable
from workers.analysis import asr
from workers.analysis.asr_eval import (
    ErrorCount,
    edit_distance,
    fixture_clips,
    micro_rate,
    normalise_en,
    normalise_zh,
    score,
    zh_integer,
)
from workers.analysis.audio import SAMPLE_RATE, AudioDecodeError, load_audio

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
SPEECH = FIXTURES / "speech"
CLIP = SPEECH / "en_07_resident_complaint.wav"


def _pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


# --- decoding ------------------------------------------------------------------------------


def test_wav_decodes_to_the_exact_samples() -> None:
    audio = load_audio(CLIP)
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, _pcm(CLIP))


def test_bytes_decode_like_the_file() -> None:
    np.testing.assert_array_equal(load_audio(CLIP.read_bytes()), load_audio(CLIP))


def _encode(samples: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    """`samples` (16 kHz) encoded in memory, stereo at `rate`, as a browser might send."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as media:
        stream = media.add_stream(codec, rate=rate, layout="stereo")
        assert isinstance(stream, av.AudioStream)
        resampler = av.AudioResampler(format=stream.format, layout="stereo", rate=rate)
        pcm = (samples * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                media.mux(packet)
        for packet in stream.encode(None):
            media.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate"), [("webm", "libopus", 48000), ("mp4", "aac", 44100)]
)
def test_compressed_audio_decodes_to_16k_mono(container: str, codec: str, rate: int) -> None:
    """WebM/Opus (what browsers record) and MP4/AAC, stereo at 48/44.1 kHz, from memory."""
    original = _pcm(CLIP)
    audio = load_audio(_encode(original, container, codec, rate))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - original.size) < 0.1 * SAMPLE_RATE
    # Codecs add a delay (priming samples): compare at the best lag.
    n = min(audio.size, original.size) - 2000
    lags = range(0, 1600)  # every sample: AAC primes 1024 samples at 44.1 kHz (372 at 16 kHz)
    best = max(np.corrcoef(audio[lag : lag + n], original[:n])[0, 1] for lag in lags)
    assert best > 0.95


def test_media_without_audio_is_refused() -> None:
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(FIXTURES / "video" / "no_face.mp4")
    with pytest.raises(AudioDecodeError):
        load_audio(b"%PDF-1.7 not media at all")


# --- scoring (the fixtures README's normalisation) --------------------------------------------


def test_chinese_numerals() -> None:
    cases = {
        0: "零",
        10: "十",
        15: "十五",
        20: "二十",
        101: "一百零一",
        110: "一百一十",
        1010: "一千零一十",
        10010: "一万零一十",
        11000: "一万一千",
        100000: "十万",
    }
    assert {n: zh_integer(n) for n in cases} == cases


def test_normalisation() -> None:
    assert normalise_zh("我們在2019年用了3.5小時，效率提高20%！ICU") == (
        "我们在二零一九年用了三点五小时效率提高百分之二十icu"
    )
    assert normalise_en("I worked 4 years, 21 shifts—it's 100%.") == [
        "i",
        "worked",
        "four",
        "years",
        "twenty",
        "one",
        "shifts",
        "its",
        "100",
    ]


def test_micro_rate_weighs_by_reference_length() -> None:
    assert edit_distance(list("abc"), list("axcd")) == 2
    assert micro_rate([ErrorCount(1, 10), ErrorCount(3, 30)]) == pytest.approx(0.1)
    assert micro_rate([]) == 0.0


def test_scoring_reproduces_the_baseline_counts() -> None:
    """Our normalisation gives exactly the errors `baseline_asr.json` records per clip."""
    baseline = json.loads((SPEECH / "baseline_asr.json").read_text(encoding="utf-8"))
    languages = {c.file: c.language for c in fixture_clips(SPEECH)}
    for clip in baseline["clips"]:
        for mode in ("given", "auto"):
            got = score(clip["ref"], clip[mode]["hyp"], languages[clip["file"]])
            want = (clip[mode]["errors"], clip[mode]["ref_units"])
            assert (got.errors, got.ref_units) == want, (clip["file"], mode)


# --- one model per process, device choice ------------------------------------------------------


def test_transcriber_loads_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[AiSettings] = []
    real = asr.load_transcriber

    def counting(ai: AiSettings) -> asr.Transcriber:
        loads.append(ai)
        return real(ai)

    monkeypatch.setattr(asr, "load_transcriber", counting)
    settings = AiSettings(device="cpu", cpu_threads=1)  # a key no other test uses
    first = asr.transcriber(settings)
    second = asr.transcriber(AiSettings(device="cpu", cpu_threads=1))
    assert first is second
    assert len(loads) == 1
    assert isinstance(first, asr.FasterWhisperBackend)
    assert first.model_name == "whisper-base/faster-whisper-int8-cpu"


def test_openai_whisper_is_the_reference_backend() -> None:
    from workers.analysis.asr_openai import OpenAIWhisperBackend

    backend = asr.transcriber(AiSettings(device="cpu", asr_backend="openai-whisper"))
    assert isinstance(backend, OpenAIWhisperBackend)


def test_device_choice() -> None:
    """float16 on CUDA where CTranslate2 can use it; asking for CUDA without one fails
    at load, with a message saying what to set."""
    if cuda_usable("ctranslate2"):
        backend = asr.load_transcriber(AiSettings(device="cuda"))
        assert backend.model_name == "whisper-base/faster-whisper-float16-cuda"
    else:
        with pytest.raises(DeviceUnavailable, match="ai.device"):
            asr.load_transcriber(AiSettings(device="cuda"))
    auto = asr.transcriber(AiSettings(device="auto"))
    device = "cuda" if cuda_usable("ctranslate2") else "cpu"
    assert auto.model_name.endswith(device)


def test_live_captions_share_the_loaded_model() -> None:
    settings = AiSettings(device="cpu")
    offline = asr.transcriber(settings)
    live = asr.caption_transcriber(settings)
    assert isinstance(offline, asr.FasterWhisperBackend)
    assert isinstance(live, asr.FasterWhisperBackend)
    assert live._model is offline._model  # one model in memory
    assert (live._decoding.beam_size, offline._decoding.beam_size) == (1, 5)


# --- decoding details -----------------------------------------------------------------------


def test_job_vocabulary_is_given_in_the_form_the_model_reads_best() -> None:
    """ASCII punctuation (NFKC), Mandarin in traditional characters (see asr's docstring)."""
    assert asr._vocabulary("护士，静脉输液、护理记录", "zh") == "護士,靜脈輸液、護理記錄"
    assert asr._vocabulary("Registered nurse，triage", "en") == "Registered nurse,triage"
    assert asr._vocabulary("  ", "zh") is None
    assert asr._vocabulary(None, "en") is None


def test_repetition_loops_are_recognised() -> None:
    assert asr._looping("谢谢大家。" * 30)
    assert asr._looping("I am sorry. " * 20)
    assert not asr._looping(
        "Early in my career, I dispensed the right drug but at the wrong strength."
    )
    assert not asr._looping("好。好。")  # too short to judge


def test_a_looping_window_is_decoded_again_in_place() -> None:
    """The fallback decode of one window returns words in the batch's time frame."""
    backend = asr.transcriber(AiSettings(device="cpu"))
    assert isinstance(backend, asr.FasterWhisperBackend)
    clip = load_audio(CLIP)
    silence = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    speech = np.concatenate([silence, clip])
    segments = backend._redecode(speech, 5.0, speech.size / SAMPLE_RATE, "en", None)
    words = [w for s in segments for w in s.words]
    assert "surgery" in " ".join(w.word for w in words).lower()
    assert 5.0 <= words[0].start < 6.0
    assert words[-1].end <= speech.size / SAMPLE_RATE + 0.01


def test_windows_end_at_pauses_and_fit_whisper() -> None:
    second = SAMPLE_RATE
    chunks = [
        {"start": a * second, "end": b * second} for a, b in [(0, 12), (14, 26), (30, 40), (41, 70)]
    ]
    windows = asr._windows(chunks)
    assert [[c["start"] // second for c in w] for w in windows] == [[0, 14], [30], [41]]
    assert all(asr._length(w) <= asr.WINDOW_S * second for w in windows)


def test_beam_width_is_a_setting() -> None:
    """IT may trade accuracy for speed (`ai.beam_size`); the default stays beam 5."""
    greedy = asr.transcriber(AiSettings(device="cpu", beam_size=1))
    assert isinstance(greedy, asr.FasterWhisperBackend)
    assert greedy._decoding.beam_size == 1
    assert greedy is not asr.transcriber(AiSettings(device="cpu"))
