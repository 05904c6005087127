"""The box's keys: stored only wrapped, two ways to unwrap, crash-safe rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import keys
from appliance.datadir import init_data_dir, unexpected_entries
from appliance.errors import DataDirError, MissingKeyError, WrongKeyError
from appliance.settings import Settings
from appliance.store import Store
from tests.conftest import PASSPHRASE


def test_init_makes_the_documented_layout_with_private_modes(store: Store) -> None:
    """Top level holds only the layout's entries; keys are 0600 in a 0700 folder."""
    data_dir = store.data_dir
    assert unexpected_entries(data_dir) == []
    assert {p.name for p in data_dir.iterdir()} >= {
        "enclave.db",
        "blobs",
        "keys",
        "redis",
        "certs",
        "gnupg",
        "logs",
    }
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "keys").stat().st_mode) == 0o700
    for name in ("unseal.key", "keystore.json"):
        assert stat.S_IMODE((data_dir / "keys" / name).stat().st_mode) == 0o600


def test_no_key_is_stored_in_the_clear(store: Store) -> None:
    """Neither the master key nor any box key appears in any file under keys/."""
    secrets = [
        store.keys.master,
        store.keys.database,
        store.keys.signing,
        store.keys.blind_index,
        store.keys.keyring,
    ]
    blobs = [p.read_bytes() for p in (store.data_dir / "keys").rglob("*") if p.is_file()]
    for secret in secrets:
        for encoded in (secret, secret.hex().encode(), base64.b64encode(secret)):
            assert not any(encoded in content for content in blobs)


def test_passphrase_and_key_file_each_unwrap_the_same_keys(
    store: Store, settings: Settings
) -> None:
    """Either wrap gives the same master key; the passphrase tolerates case and dashes."""
    by_file = keys.unseal(settings.data_dir, key_file=settings.unseal_key_file)
    by_pass = keys.unseal(settings.data_dir, passphrase=PASSPHRASE.lower().replace("-", " "))
    assert by_file == by_pass == store.keys


def test_wrong_passphrase_and_missing_key_file_say_what_to_do(
    settings: Settings, store: Store
) -> None:
    """A wrong passphrase is WrongKeyError; a missing key file names the file and the way out."""
    with pytest.raises(WrongKeyError, match="recovery passphrase does not unlock"):
        keys.unseal(settings.data_dir, passphrase="not-the-passphrase")
    settings.unseal_key_file.unlink()
    with pytest.raises(MissingKeyError, match="unseal.key is missing.*passphrase"):
        keys.unseal(settings.data_dir, key_file=settings.unseal_key_file)


def test_another_boxs_key_file_is_refused(
    settings: Settings, store: Store, short_tmp: Path
) -> None:
    """A key file of another data dir is recognised as such, not tried as garbage."""
    from tests.conftest import settings_for

    other = init_data_dir(settings_for(short_tmp / "other"), "OTHER-PASS")
    other.store.close()
    with pytest.raises(WrongKeyError, match="not the key file of this data dir"):
        keys.unseal(settings.data_dir, key_file=short_tmp / "other" / "keys" / "unseal.key")


def test_rekey_interrupted_before_the_key_file_rename_is_completed(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the keystore write but before renaming unseal.key.next recovers."""
    pending = settings.unseal_key_file.with_name("unseal.key.next")
    original_replace = os.replace

    def crash_on_key_file(src: str | Path, dst: str | Path) -> None:
        if Path(src) == pending:
            raise KeyboardInterrupt("simulated power cut")
        original_replace(src, dst)

    monkeypatch.setattr(keys.os, "replace", crash_on_key_file)
    with pytest.raises(KeyboardInterrupt):
        keys.rekey_master(settings.data_dir, store.keys, settings.unseal_key_file, "NEW-PASS")
    monkeypatch.undo()
    assert pending.exists()
    recovered = keys.unseal(settings.data_dir, key_file=settings.unseal_key_file)
    assert recovered.database == store.keys.database
    assert recovered.master != store.keys.master
    assert not pending.exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ENCLAVE_CONFIG": ""},
    )


def test_init_refuses_a_non_empty_dir_and_changes_nothing(store: Store, settings: Settings) -> None:
    """`appliance init` over an existing data dir exits 2 with a message; files unchanged."""
    before = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file()}
    result = _cli("init", "--data-dir", str(settings.data_dir))
    assert result.returncode == 2
    assert "not empty" in result.stderr
    after = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file()}
    assert after == before
    with pytest.raises(DataDirError):
        init_data_dir(settings, "x")


def test_wrong_key_file_at_the_cli_exits_2_and_creates_nothing(
    store: Store, settings: Settings, short_tmp: Path
) -> None:
    """A damaged key file makes `appliance backup` exit 2 with a clear line; no file appears."""
    store.close()
    settings.unseal_key_file.write_bytes(os.urandom(32))
    out = short_tmp / "should-not-exist.bak"
    result = _cli("backup", "--data-dir", str(settings.data_dir), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "key file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_init_prints_the_passphrase_once_and_it_works(short_tmp: Path) -> None:
    """`appliance init` shows a recovery passphrase that unlocks the data dir."""
    data_dir = short_tmp / "fresh"
    result = _cli("init", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip().count("-") == 7]
    assert len(lines) == 1
    assert keys.unseal(data_dir, passphrase=lines[0]).master
    assert json.loads((data_dir / "keys" / "keystore.json").read_text())["version"] == 1
