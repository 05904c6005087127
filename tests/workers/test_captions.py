"""Live captions (issue #5, item 2): incremental, committed text never rewritten, and the
finished transcript as good as the offline one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.settings import AiSettings
from workers.analysis.asr import Transcriber, caption_transcriber, transcriber
from workers.analysis.asr_eval import fixture_clips, score
from workers.analysis.audio import SAMPLE_RATE, load_audio
from workers.analysis.captions import Caption, LiveCaptioner

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "speech"
CLIPS = {c.file: c for c in fixture_clips(SPEECH)}


@pytest.fixture(scope="module")
def asr() -> Transcriber:
    """What the media service gives captions: the worker's model, decoding greedily."""
    return caption_transcriber(AiSettings(device="cpu"))


@pytest.fixture(scope="module")
def offline() -> Transcriber:
    return transcriber(AiSettings(device="cpu"))


def _live(
    asr: Transcriber, audio: np.ndarray, language: str | None
) -> tuple[LiveCaptioner, list[Caption]]:
    captioner = LiveCaptioner(asr, language)
    captions = []
    for start in range(0, audio.size, SAMPLE_RATE):  # 1 s chunks, as the media service sends
        captions.append(captioner.feed(audio[start : start + SAMPLE_RATE]))
        assert captioner.window_s <= captioner.max_window_s + 1.0
    return captioner, captions


def _assert_only_grows(captions: list[Caption]) -> None:
    for before, after in zip(captions, captions[1:], strict=False):
        assert after.committed.startswith(before.committed), (before.committed, after.committed)


@pytest.mark.parametrize("name", ["zh_02_nurse_teamwork.wav", "en_05_it_mistake.wav"])
def test_captions_commit_and_match_offline(
    asr: Transcriber, offline: Transcriber, name: str
) -> None:
    clip = CLIPS[name]
    audio = load_audio(SPEECH / name)
    captioner, captions = _live(asr, audio, clip.language)
    _assert_only_grows(captions)
    assert captions[-1].committed, "nothing was committed while the answer ran"
    assert len({c.committed for c in captions}) > 2, "text was not committed incrementally"
    final = captioner.finish()
    assert final.text.startswith(captions[-1].committed.rstrip())
    assert final.duration_s == pytest.approx(clip.duration_s, abs=0.01)
    live_rate = score(clip.text, final.text, clip.language).rate
    offline_rate = score(
        clip.text, offline.transcribe(audio, clip.language).text, clip.language
    ).rate
    print(f"{name}: live {live_rate:.4f}, offline {offline_rate:.4f}")
    assert live_rate <= offline_rate + 0.05
    words = [w for s in final.segments for w in s.words]
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(0 <= w.start <= w.end <= clip.duration_s + 0.01 for w in words)


def test_long_answer_keeps_the_window_bounded(asr: Transcriber) -> None:
    """Three answers back to back (about 55 s): the window stays below Whisper's 30 s,
    language detected on the way, committed text only grows."""
    names = ["zh_05_pharmacist_complaint.wav", "zh_07_admin_mistake.wav", "zh_09_it_teamwork.wav"]
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    audio = np.concatenate([x for n in names for x in (load_audio(SPEECH / n), gap)])
    captioner, captions = _live(asr, audio, None)
    _assert_only_grows(captions)
    final = captioner.finish()
    assert final.language == "zh"
    reference = "".join(CLIPS[n].text for n in names)
    rate = score(reference, final.text, "zh").rate
    print(f"long answer live CER {rate:.4f}")
    assert rate < 0.2


def test_silence_gives_an_empty_caption(asr: Transcriber) -> None:
    captioner = LiveCaptioner(asr, "en")
    for _ in range(3):
        caption = captioner.feed(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert caption.text == ""
    final = captioner.finish()
    assert (final.text, final.segments, final.language) == ("", [], "en")
