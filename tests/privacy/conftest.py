"""Privacy tests: a demo hospital per test (real SQLCipher file, keyring, blobs, gpg), and
the process's jurisdiction profile put back after each test.

Making the demo hospital costs seconds (Argon2id for the recovery passphrase and each demo
account's password), so it is made once per session and each test opens its own copy of
the data dir: a separate database, keyring and blob store, nothing shared.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.datadir import init_data_dir
from appliance.settings import Settings
from appliance.store import Store
from compliance import profiles
from compliance.signing import stop_agent
from tests.conftest import PASSPHRASE, settings_for


@pytest.fixture(autouse=True)
def _profile_restored() -> Iterator[None]:
    """`profiles.activate` sets the process's profile: never let one test's leak."""
    before = profiles._activated
    yield
    profiles._activated = before


@pytest.fixture(scope="session")
def demo_template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="enc"))
    store = init_data_dir(settings_for(root / "data"), PASSPHRASE, demo=True).store
    store.close()
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def settings(short_tmp: Path, demo_template: Path) -> Settings:
    shutil.copytree(demo_template, short_tmp / "data")
    return settings_for(short_tmp / "data")


@pytest.fixture
def demo(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    yield store
    store.close()
    stop_agent(settings.data_dir / "gnupg")
