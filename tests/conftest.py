"""Shared fixtures: a real data dir (SQLCipher file, keyring, blobs) in a short temp path.

Unix socket paths (redis) may not exceed 107 bytes, and pytest's tmp_path can be
long, so data dirs live under a short mkdtemp folder.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.datadir import init_data_dir
from appliance.settings import Settings, load_settings
from appliance.store import Store

PASSPHRASE = "TEST-PASS-PHRASE-0001"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="enc"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def settings_for(data_dir: Path) -> Settings:
    """Settings that ignore the machine's /etc/enclave and environment."""
    return load_settings(
        config=None, secrets=Path("/nonexistent/secrets.toml"), environ={}, data_dir=data_dir
    )


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return settings_for(short_tmp / "data")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = init_data_dir(settings, PASSPHRASE).store
    yield store
    store.close()
