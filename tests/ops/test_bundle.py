"""The air-gapped install bundle (issue #9, item 2): a small real bundle (two dependency
wheels, one model's weight package, one .deb with its dependencies, the playbook), signed
with the box's GPG key; every file is checked, and tampering of any kind is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.bundle import MANIFEST, SIGNATURE, BundleError, verify_bundle
from appliance.settings import Settings
from appliance.store import Store
from compliance.signing import verify_with_public_key
from models import fetch
from models.specs import MODELS

REPO = Path(__file__).resolve().parents[2]
WHEELS = ("six==1.17.0", "idna==3.20")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(  # noqa: S603 (our own interpreter and CLI)
        [sys.executable, "-m", "appliance", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One bundle for the module (apt and pip downloads are the slow part): its folder and
    the fingerprint `appliance bundle` printed. The box is initialised here, not with the
    `store` fixture, because that one is per test."""
    from appliance.datadir import init_data_dir
    from compliance.signing import stop_agent
    from tests.conftest import PASSPHRASE, settings_for

    root = Path(tmp_path_factory.mktemp("bundle"))
    box = Path(os.path.realpath("/tmp")) / f"encb{os.getpid()}"
    settings: Settings = settings_for(box / "data")
    store: Store = init_data_dir(settings, PASSPHRASE).store
    store.close()
    wheelhouse = root / "wheelhouse"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheelhouse)]
    subprocess.run([*pip, *WHEELS], check=True, capture_output=True)  # noqa: S603
    out = root / "bundle"
    made = _cli(
        "bundle", "--data-dir", str(settings.data_dir), "--out", str(out),
        "--wheelhouse", str(wheelhouse), "--wheel", "six-*", "--wheel", "idna-*",
        "--model", "face-mesh", "--deb", "acl",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    fingerprint = made.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    yield out, fingerprint
    stop_agent(settings.data_dir / "gnupg")
    shutil.rmtree(box, ignore_errors=True)


def _copy(made: tuple[Path, str], tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(made[0], copy)
    return copy


def test_the_bundle_holds_what_an_offline_host_needs(made: tuple[Path, str]) -> None:
    out, _fingerprint = made
    assert sorted(p.name for p in (out / "wheels").iterdir()) == [
        "idna-3.20-py3-none-any.whl",
        "six-1.17.0-py2.py3-none-any.whl",
    ]
    face_mesh = next(s for s in MODELS if s.name == "face-mesh")
    assert all(fetch.find_archive(p, out / "models") for p in face_mesh.packages)
    debs = sorted(p.name for p in (out / "debs").glob("*.deb"))
    assert any(name.startswith("acl_") for name in debs)
    assert any(name.startswith("libacl1_") for name in debs), "dependencies come along"
    assert "Package: acl\n" in (out / "debs" / "Packages").read_text()
    assert (out / "ansible" / "site.yml").is_file()
    listed = (out / MANIFEST).read_text()
    assert "  ansible/site.yml\n" in listed and "  bundle.json\n" in listed


def test_the_cli_verifies_signature_and_every_file(made: tuple[Path, str]) -> None:
    out, fingerprint = made
    checked = _cli("bundle-verify", str(out), "--fingerprint", fingerprint)
    assert checked.returncode == 0, checked.stderr
    assert fingerprint in checked.stdout


def test_a_bare_debian_host_verifies_with_gpgv_and_sha256sum(made: tuple[Path, str]) -> None:
    """What the playbook does before it installs anything: coreutils and gpgv only."""
    out, fingerprint = made
    gpgv = subprocess.run(
        ["gpgv", "--status-fd", "1", "--keyring", "./signing-key.gpg", SIGNATURE, MANIFEST],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )
    assert gpgv.returncode == 0, gpgv.stderr
    assert f"VALIDSIG {fingerprint}" in gpgv.stdout
    sums = subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", MANIFEST], cwd=out, check=False
    )
    assert sums.returncode == 0


def test_a_changed_file_is_detected(made: tuple[Path, str], tmp_path: Path) -> None:
    copy = _copy(made, tmp_path)
    wheel = next((copy / "wheels").glob("six-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0x01
    wheel.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"wheels/six-1\.17\.0.*sha256 differs"):
        verify_bundle(copy, verify_with_public_key, made[1])


def test_an_added_or_missing_file_is_detected(made: tuple[Path, str], tmp_path: Path) -> None:
    copy = _copy(made, tmp_path)
    (copy / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    next((copy / "debs").glob("acl_*.deb")).unlink()
    with pytest.raises(BundleError) as refused:
        verify_bundle(copy, verify_with_public_key, made[1])
    assert "evil-1.0-py3-none-any.whl: not in the manifest" in str(refused.value)
    assert "missing" in str(refused.value)


def test_an_edited_manifest_or_another_key_is_refused(
    made: tuple[Path, str], tmp_path: Path
) -> None:
    copy = _copy(made, tmp_path)
    with pytest.raises(BundleError, match="not by the expected"):
        verify_bundle(copy, verify_with_public_key, "0" * 40)
    manifest = copy / MANIFEST
    first, rest = manifest.read_text().split("\n", 1)
    manifest.write_text(("0" * 64) + first[64:] + "\n" + rest)
    with pytest.raises(BundleError, match="not a good signature"):
        verify_bundle(copy, verify_with_public_key, made[1])
