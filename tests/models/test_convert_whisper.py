"""The CTranslate2 -> openai-whisper converter (issue #5): the real whisper-base weights,
converted to a temporary file, checked against CTranslate2 running the same weights."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
import torch
import whisper
from ctranslate2.specs import model_spec, whisper_spec
from whisper.tokenizer import get_tokenizer

from models import registry
from models.convert_whisper import ConversionError, convert, read_ct2
from workers.analysis.audio import load_audio

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "speech"
BASE_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 512,
    "n_audio_head": 8,
    "n_audio_layer": 6,
    "n_vocab": 51865,
    "n_text_ctx": 448,
    "n_text_state": 512,
    "n_text_head": 8,
    "n_text_layer": 6,
}


@pytest.fixture(scope="module")
def ct2_dir() -> Path:
    return registry.weights_dir("whisper-base")


@pytest.fixture(scope="module")
def converted(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base.pt written by the command line entry point, as `make models` would."""
    out = tmp_path_factory.mktemp("openai") / "base.pt"
    subprocess.run(
        [sys.executable, "-m", "models.convert_whisper", str(ct2_dir), str(out)],
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return out


@pytest.fixture(scope="module")
def openai_model(converted: Path) -> whisper.Whisper:
    torch.set_num_threads(2)
    return whisper.load_model(str(converted), device="cpu")


def mel_of(clip: str) -> torch.Tensor:
    """The 30 s log-mel window openai-whisper and faster-whisper both feed the encoder."""
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(load_audio(SPEECH / clip)))


def ct2_encode(model_dir: Path, mel: torch.Tensor) -> np.ndarray:
    ct2 = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    features = ctranslate2.StorageView.from_array(mel[None].numpy())
    return np.array(ct2.encode(features, to_cpu=True))


def assert_close(ours: np.ndarray, reference: np.ndarray, rel_rms: float) -> None:
    error = np.sqrt(np.mean((ours - reference) ** 2)) / np.sqrt(np.mean(reference**2))
    assert error < rel_rms, f"relative RMS error {error:.2e}"


def test_checkpoint_has_base_dims_and_loads_in_openai_whisper(
    openai_model: whisper.Whisper, converted: Path
) -> None:
    assert openai_model.dims.__dict__ == BASE_DIMS
    checkpoint = torch.load(converted, weights_only=True)
    assert set(checkpoint) == {"dims", "model_state_dict", "alignment_heads"}
    assert all(t.dtype == torch.float16 for t in checkpoint["model_state_dict"].values())


def heads_of(model: whisper.Whisper, dump: bytes) -> list[list[int]]:
    model.set_alignment_heads(dump)
    return model.alignment_heads.to_dense().nonzero().tolist()


def test_alignment_heads_are_ctranslate2s_in_openai_encoding(
    openai_model: whisper.Whisper, converted: Path, ct2_dir: Path
) -> None:
    expected = json.loads((ct2_dir / "config.json").read_text())["alignment_heads"]
    dump = torch.load(converted, weights_only=True)["alignment_heads"]
    assert heads_of(openai_model, dump) == expected
    # openai publishes the same heads for its own base checkpoint.
    assert heads_of(openai_model, whisper._ALIGNMENT_HEADS["base"]) == expected


def test_conversion_is_byte_identical_to_the_pinned_checkpoint(converted: Path) -> None:
    """The registry pins base.pt's sha256: the converter must be deterministic."""
    pinned = registry.spec("whisper-base-openai").files[0].sha256
    assert registry.sha256_file(converted) == pinned


def test_encoder_output_matches_ctranslate2(openai_model: whisper.Whisper, ct2_dir: Path) -> None:
    mel = mel_of("en_02_resident_teamwork.wav")
    with torch.no_grad():
        ours = openai_model.encoder(mel[None]).numpy()
    reference = ct2_encode(ct2_dir, mel)
    assert ours.shape == reference.shape == (1, 1500, 512)
    assert_close(ours, reference, rel_rms=1e-4)
    assert np.abs(ours - reference).max() < 5e-3


@pytest.mark.parametrize(
    ("clip", "language"),
    [("en_01_nurse_complaint.wav", "en"), ("zh_03_resident_mistake.wav", "zh")],
)
def test_greedy_decoding_gives_ctranslate2s_tokens(
    openai_model: whisper.Whisper, ct2_dir: Path, clip: str, language: str
) -> None:
    """The decoder, cross-attention and tied output projection mapped right: same tokens."""
    mel = mel_of(clip)
    options = whisper.DecodingOptions(language=language, without_timestamps=True, fp16=False)
    ours = whisper.decode(openai_model, mel, options)
    tokenizer = get_tokenizer(True, language=language, task="transcribe")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    features = ctranslate2.StorageView.from_array(mel[None].numpy())
    reference = ct2.generate(features, [prompt], beam_size=1)[0].sequences_ids[0]
    assert len(reference) > 20
    assert ours.tokens == reference


def requantise_int8(src: Path, dst: Path) -> None:
    """An int8 copy of whisper-base, written by CTranslate2's own spec code (per-row scales)."""
    stored = read_ct2(src / "model.bin")
    config = json.loads((src / "config.json").read_text())
    spec = whisper_spec.WhisperSpec(6, 8, 6, 8)
    for name, value in stored.variables.items():
        if value.ndim:  # scalars (heads, flags) are set by the spec itself
            scope, attr = name.rsplit("/", 1)
            setattr(model_spec.index_spec(spec, scope), attr, value.astype(np.float32))
    spec.decoder.projection.weight = spec.decoder.embeddings.weight
    spec.register_vocabulary((src / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    for key in ("suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads"):
        setattr(spec.config, key, config[key])
    spec.validate()
    spec.optimize("int8")
    spec.save(str(dst))


def test_int8_weights_are_dequantised_with_their_scales(ct2_dir: Path, tmp_path: Path) -> None:
    int8_dir = tmp_path / "int8"
    int8_dir.mkdir()
    requantise_int8(ct2_dir, int8_dir)
    stored = read_ct2(int8_dir / "model.bin")
    assert stored.variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    assert stored.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}

    out = tmp_path / "int8.pt"
    convert(int8_dir, out)
    model = whisper.load_model(str(out), device="cpu")
    mel = mel_of("zh_04_resident_why.wav")
    with torch.no_grad():
        ours = model.encoder(mel[None]).numpy()
    # CTranslate2 asked for float32 dequantises the int8 weights as we do.
    assert_close(ours, ct2_encode(int8_dir, mel), rel_rms=1e-3)


def ct2_header(version: int, spec: str) -> bytes:
    """A model.bin header (binary version, spec name, revision) with no variables or aliases."""
    name = spec.encode() + b"\0"
    return struct.pack(f"<IH{len(name)}sIII", version, len(name), name, 3, 0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (ct2_header(99, "WhisperSpec"), "binary version 99"),
        (ct2_header(6, "WhisperSpec"), "missing: not a Whisper model"),
        (ct2_header(6, "WhisperSpec") + b"\0", "1 unexpected trailing bytes"),
        (ct2_header(6, "WhisperSpec")[:-8] + struct.pack("<I", 1), "truncated or damaged"),
    ],
)
def test_a_model_bin_it_cannot_read_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(ConversionError, match=message):
        convert(tmp_path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_command_line_reports_a_missing_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "models.convert_whisper", str(tmp_path / "nope"), "x.pt"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 1
    assert "conversion failed" in result.stderr
