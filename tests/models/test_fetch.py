"""`appliance models fetch`: extraction, concatenation, pins, idempotence (issue #5).

The logic runs on small wheels and an sdist built here; one run extracts the real
weights from the archives `make install` downloaded into models/cache/_downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from models import fetch as fetcher
from models import registry
from models.fetch import FetchError, fetch
from models.specs import BY_NAME, Member, ModelSpec, Package, WeightFile

PART1 = b"\x01" * 3000 + b"first half"
PART2 = b"second half" + b"\x02" * 2000
CONFIG = b'{"toy": true}'
SDIST_FILE = b"dlib-like weights " * 50


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(folder: Path, dist: str, members: dict[str, bytes]) -> Path:
    path = folder / f"{dist.replace('-', '_')}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist.replace('-', '_')}-1.0.0.dist-info/METADATA", "Name: x\n")
    return path


def _sdist(folder: Path, dist: str, members: dict[str, bytes]) -> Path:
    path = folder / f"{dist}-1.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as sdist:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{dist}-1.0.0/{name}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))
    return path


def _bundle(folder: Path) -> Path:
    """Three archives like the real ones: a model split over two wheels, and an sdist."""
    folder.mkdir(parents=True, exist_ok=True)
    _wheel(folder, "toy-part1", {"toy1/data/m.bin.part1": PART1, "toy1/data/config.json": CONFIG})
    _wheel(folder, "toy-part2", {"toy2/data/m.bin.part2": PART2})
    _sdist(folder, "toy_sdist", {"pkg/models/a.dat": SDIST_FILE, "pkg/models/big.dat": b"x"})
    return folder


def _specs(model_sha: str | None = None) -> tuple[ModelSpec, ...]:
    split = ModelSpec(
        name="toy-asr",
        task="asr",
        source="pypi",
        licence="MIT",
        loader="-",
        packages=(Package("toy-part1", "1.0.0"), Package("toy-part2", "1.0.0")),
        files=(
            WeightFile(
                "model.bin",
                model_sha or _sha(PART1 + PART2),
                len(PART1 + PART2),
                (
                    Member("toy-part1", "toy1/data/m.bin.part1"),
                    Member("toy-part2", "toy2/data/m.bin.part2"),
                ),
            ),
            WeightFile(
                "config.json",
                _sha(CONFIG),
                len(CONFIG),
                (Member("toy-part1", "toy1/data/config.json"),),
            ),
        ),
    )
    sdist = ModelSpec(
        name="toy-id",
        task="identity",
        source="pypi",
        licence="CC0-1.0",
        loader="-",
        packages=(Package("toy_sdist", "1.0.0"),),
        files=(
            WeightFile(
                "sub/a.dat",
                _sha(SDIST_FILE),
                len(SDIST_FILE),
                (Member("toy_sdist", "toy_sdist-1.0.0/pkg/models/a.dat"),),
            ),
        ),
    )
    return split, sdist


@pytest.fixture(autouse=True)
def _fresh_digests() -> None:
    registry.forget_digests()


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call to pip fails the test: the archives must come from the bundle or the cache."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip download was called")

    monkeypatch.setattr(fetcher, "pip_download", refuse)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]


def test_fetch_from_bundle_concatenates_parts_and_extracts_only_listed_files(
    tmp_path: Path, no_pip: None
) -> None:
    bundle = _bundle(tmp_path / "bundle")
    out: list[str] = []
    fetch(tmp_path / "models", bundle, _specs(), out.append)
    toy = tmp_path / "models/cache/toy-asr"
    assert (toy / "model.bin").read_bytes() == PART1 + PART2
    assert (toy / "config.json").read_bytes() == CONFIG
    assert sorted(p.name for p in toy.iterdir()) == ["config.json", "model.bin"]
    assert (tmp_path / "models/cache/toy-id/sub/a.dat").read_bytes() == SDIST_FILE
    assert not (tmp_path / "models/cache/toy-id/sub/big.dat").exists()
    assert not _leftovers(tmp_path / "models")
    assert "toy-asr: 2 file(s) extracted and verified" in out[0]
    assert registry.verify(_specs()[0], tmp_path / "models") == toy


def test_second_fetch_is_a_no_op(tmp_path: Path, no_pip: None) -> None:
    bundle = _bundle(tmp_path / "bundle")
    fetch(tmp_path / "models", bundle, _specs(), lambda _: None)
    model = tmp_path / "models/cache/toy-asr/model.bin"
    before = model.stat().st_mtime_ns
    for archive in bundle.iterdir():
        archive.unlink()  # nothing may be read again
    out: list[str] = []
    fetch(tmp_path / "models", bundle, _specs(), out.append)
    assert out == ["toy-asr: verified, nothing to do", "toy-id: verified, nothing to do"]
    assert model.stat().st_mtime_ns == before


def test_download_cache_is_reused_without_pip(tmp_path: Path, no_pip: None) -> None:
    _bundle(tmp_path / "models/cache/_downloads")
    fetch(tmp_path / "models", None, _specs(), lambda _: None)
    assert (tmp_path / "models/cache/toy-asr/model.bin").read_bytes() == PART1 + PART2


def test_missing_archives_come_from_pip_download_no_deps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the missing distributions, pinned, with --no-deps, by this venv's pip; never install."""
    bundle = _bundle(tmp_path / "index")
    downloads = tmp_path / "models/cache/_downloads"
    downloads.mkdir(parents=True)
    _sdist(downloads, "toy_sdist", {"pkg/models/a.dat": SDIST_FILE})
    commands: list[Sequence[str]] = []

    def fake_pip(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        dest = Path(command[command.index("--dest") + 1])
        for archive in bundle.glob("toy_part*.whl"):
            (dest / archive.name).write_bytes(archive.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(fetcher.subprocess, "run", fake_pip)
    fetch(tmp_path / "models", None, _specs(), lambda _: None)
    assert len(commands) == 1
    command = list(commands[0])
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "install" not in command
    assert command[-2:] == ["toy-part1==1.0.0", "toy-part2==1.0.0"]
    assert (tmp_path / "models/cache/toy-asr/model.bin").read_bytes() == PART1 + PART2


def test_pip_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "No matching distribution found")

    monkeypatch.setattr(fetcher.subprocess, "run", failing)
    with pytest.raises(FetchError, match="No matching distribution.*--from DIR"):
        fetch(tmp_path / "models", None, _specs(), lambda _: None)


def test_sha_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, no_pip: None, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = _bundle(tmp_path / "bundle")
    with caplog.at_level(logging.ERROR, logger="enclave.models"):
        with pytest.raises(FetchError, match="model.bin .*pinned 0{64}: refused"):
            fetch(tmp_path / "models", bundle, _specs("0" * 64), lambda _: None)
    assert "model.bin" in caplog.records[0].getMessage()
    assert not (tmp_path / "models/cache/toy-asr/model.bin").exists()
    assert not _leftovers(tmp_path / "models")


def test_an_altered_bundle_is_refused(tmp_path: Path, no_pip: None) -> None:
    bundle = tmp_path / "bundle"
    _bundle(bundle)
    _wheel(bundle, "toy-part2", {"toy2/data/m.bin.part2": PART2[:-1] + b"!"})
    with pytest.raises(FetchError, match="refused"):
        fetch(tmp_path / "models", bundle, _specs()[:1], lambda _: None)


def test_a_changed_cached_file_is_fetched_again(tmp_path: Path, no_pip: None) -> None:
    bundle = _bundle(tmp_path / "bundle")
    fetch(tmp_path / "models", bundle, _specs(), lambda _: None)
    config = tmp_path / "models/cache/toy-asr/config.json"
    config.write_bytes(b'{"toy": false}')
    fetch(tmp_path / "models", bundle, _specs(), lambda _: None)
    assert config.read_bytes() == CONFIG


def test_bundle_without_a_package_names_it(tmp_path: Path, no_pip: None) -> None:
    bundle = _bundle(tmp_path / "bundle")
    next(bundle.glob("toy_part2*")).unlink()
    with pytest.raises(FetchError, match=r"toy-part2==1\.0\.0"):
        fetch(tmp_path / "models", bundle, _specs(), lambda _: None)


def test_archive_of_another_version_is_not_taken(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    assert fetcher.find_archive(Package("toy-part1", "1.0.1"), bundle) is None
    assert fetcher.find_archive(Package("Toy.Part1", "1.0.0"), bundle) is not None


def test_missing_member_is_a_clear_error(tmp_path: Path, no_pip: None) -> None:
    bundle = _bundle(tmp_path / "bundle")
    spec = _specs()[1]
    wrong = WeightFile("a.dat", spec.files[0].sha256, 1, (Member("toy_sdist", "nope/a.dat"),))
    broken = dataclasses.replace(spec, files=(wrong,))
    with pytest.raises(FetchError, match="has no member nope/a.dat"):
        fetch(tmp_path / "models", bundle, (broken,), lambda _: None)


def test_real_bundle_gives_the_pinned_weights(tmp_path: Path, no_pip: None) -> None:
    """The archives `make install` downloaded, used as an air-gapped bundle (`--from`)."""
    downloads = registry.ROOT / "cache" / fetcher.DOWNLOADS
    specs = [s for s in BY_NAME.values() if s.source == "pypi"]
    fetch(tmp_path, downloads, specs, lambda _: None)
    for spec in specs:
        folder = registry.verify(spec, tmp_path)
        assert folder == tmp_path / "cache" / spec.name
        assert sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
        ) == sorted(f.name for f in spec.files)


def test_derived_checkpoint_already_verified_is_left_alone() -> None:
    spec = BY_NAME["whisper-base-openai"]
    before = (registry.ROOT / "cache" / spec.name / "base.pt").stat().st_mtime_ns
    out: list[str] = []
    fetch(None, None, [spec], out.append)
    assert out == ["whisper-base-openai: verified, nothing to do"]
    assert (registry.ROOT / "cache" / spec.name / "base.pt").stat().st_mtime_ns == before
