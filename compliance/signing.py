"""The box's own OpenPGP key: it signs audit checkpoints and export manifests.

Real gpg through python-gnupg, keyring in `<data dir>/gnupg` (mode 0700). The
key (Ed25519, signing only, no expiry; user id "Enclave HR appliance
<box-ID@enclave.invalid>", nothing personal) is made on first use. Its
private half is "wrapped like the others": gpg-agent protects it with a
passphrase derived from the box's signing key material, which only exists
unwrapped in memory once the master key is unsealed. A copy of `gnupg/`
without the keystore and its key file (or recovery passphrase) signs
nothing.

Every operation passes the passphrase by pinentry loopback; the agent is
told to cache nothing, and to use the minimum S2K iteration count (the
passphrase is 256 random bits, so iterations add no strength, only about
half a second per signature).

gpg-agent's sockets go in the gnupg home, or in /run/user/<uid>/gnupg/d.<hash>
when that exists. A unix socket path may not exceed 107 bytes: when the home
is too deep for that, gpg is pointed at a short private symlink to it
(`<tmp>/enclave-gpg-<uid>/<hash>`), which leaves the files where they are.

Back-ups must carry `gnupg/` for old checkpoints to keep verifying against
this key after a restore (the private key in it is useless without the
keystore, see above).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import gnupg

from appliance import crypto
from appliance.errors import ApplianceError
from appliance.keys import BoxKeys

USER_ID_NAME = "Enclave HR appliance"
AGENT_CONF = (
    "# Written by Enclave HR (compliance/signing.py).\n"
    "allow-loopback-pinentry\n"
    "default-cache-ttl 0\n"
    "max-cache-ttl 0\n"
    "s2k-count 65536\n"
)
_SOCKET_PATH_MAX = 107
_LONGEST_SOCKET = "S.gpg-agent.browser"


class SigningError(ApplianceError):
    """gpg could not make or use the box key; the message says what gpg reported."""


def gnupg_home(data_dir: Path) -> Path:
    return data_dir / "gnupg"


def key_passphrase(keys: BoxKeys) -> str:
    """The gpg passphrase: derived from the box's signing key material, never stored."""
    return crypto.derive_key(keys.signing, b"enclave:gpg-passphrase").hex()


def _gpgconf() -> str:
    found = shutil.which("gpgconf")
    if found is None:
        raise SigningError("gpgconf (GnuPG 2) is not installed; install the gnupg package")
    return found


def _socket_dir(home: Path) -> Path:
    out = subprocess.run(  # noqa: S603  (gpgconf, fixed arguments)
        [_gpgconf(), "--homedir", str(home), "--list-dirs", "socketdir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(out.replace("%3a", ":").replace("%25", "%"))


def _private_alias(home: Path) -> Path:
    """A short path to `home` for gpg when the agent's sockets would not fit otherwise."""
    parent = Path(tempfile.gettempdir()) / f"enclave-gpg-{os.getuid()}"
    parent.mkdir(mode=0o700, exist_ok=True)
    info = parent.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SigningError(f"{parent} is not a private directory of this user; remove it")
    link = parent / hashlib.sha256(str(home).encode()).hexdigest()[:16]
    if not (link.is_symlink() and Path(os.readlink(link)) == home):
        tmp = link.with_name(link.name + f".{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(home, target_is_directory=True)
        os.replace(tmp, link)
    return link


def prepare_home(home: Path) -> Path:
    """Make the gnupg home (0700) with its agent config; returns the path to give gpg."""
    home = home.absolute()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    conf = home / "gpg-agent.conf"
    if not conf.exists() or conf.read_text() != AGENT_CONF:
        conf.write_text(AGENT_CONF)
        conf.chmod(0o600)
    if len(str(_socket_dir(home) / _LONGEST_SOCKET).encode()) <= _SOCKET_PATH_MAX:
        return home
    return _private_alias(home)


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent serving `home` and drop its short alias, if any (tests, and
    before a data dir is removed)."""
    gpgconf = shutil.which("gpgconf")
    home = home.absolute()
    alias = Path(tempfile.gettempdir()) / f"enclave-gpg-{os.getuid()}"
    alias = alias / hashlib.sha256(str(home).encode()).hexdigest()[:16]
    for path in (home, alias):
        if gpgconf is not None and path.exists():
            subprocess.run(  # noqa: S603  (gpgconf, fixed arguments)
                [gpgconf, "--homedir", str(path), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
    if alias.is_symlink():
        alias.unlink()


class BoxSigner:
    """The box key in `<data dir>/gnupg`, made on first use."""

    def __init__(self, data_dir: Path, keys: BoxKeys, box_id: str | None = None) -> None:
        self.home = gnupg_home(data_dir).absolute()
        self._gpg_home = prepare_home(self.home)
        self._passphrase = key_passphrase(keys)
        self._gpg = gnupg.GPG(gnupghome=str(self._gpg_home), options=["--pinentry-mode=loopback"])
        self._gpg.encoding = "utf-8"
        tag = box_id or hashlib.sha256(keys.signing + b"enclave:box-tag").hexdigest()[:16]
        self.fingerprint = self._find_or_create(tag)

    def _find_or_create(self, tag: str) -> str:
        secret = self._gpg.list_keys(secret=True)
        ours = [k for k in secret if any(USER_ID_NAME in uid for uid in k["uids"])]
        if len(ours) > 1:
            raise SigningError(f"{self.home} holds {len(ours)} box keys; expected one")
        if ours:
            return str(ours[0]["fingerprint"])
        params = self._gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            key_usage="sign",
            name_real=USER_ID_NAME,
            name_email=f"box-{tag}@enclave.invalid",
            expire_date="0",
            passphrase=self._passphrase,
        )
        made = self._gpg.gen_key(params)
        if not made.fingerprint:
            raise SigningError(f"gpg could not create the box key: {made.stderr.strip()[-300:]}")
        return str(made.fingerprint)

    def sign_detached(self, data: bytes) -> str:
        """An ASCII-armoured detached OpenPGP signature over `data`."""
        signed = self._gpg.sign(
            data,
            keyid=self.fingerprint,
            passphrase=self._passphrase,
            detach=True,
            binary=False,
            extra_args=["--digest-algo", "SHA256"],
        )
        text = str(signed)
        if not text.startswith("-----BEGIN PGP SIGNATURE-----"):
            raise SigningError(f"gpg could not sign with the box key: {signed.stderr[-300:]}")
        return text

    def export_public_key(self) -> str:
        armoured = self._gpg.export_keys(self.fingerprint)
        if not isinstance(armoured, str) or "BEGIN PGP PUBLIC KEY BLOCK" not in armoured:
            raise SigningError("gpg could not export the box's public key")
        return armoured

    def verify_detached(self, data: bytes, signature: str) -> bool:
        """True when `signature` is a good signature over `data` by this box's key."""
        with tempfile.TemporaryDirectory(prefix="enc-sig-") as tmp:
            sig_path = Path(tmp) / "data.asc"
            sig_path.write_text(signature)
            result = self._gpg.verify_data(str(sig_path), data)
        return bool(result.valid) and self.fingerprint in (
            result.fingerprint,
            result.pubkey_fingerprint,
        )

    def stop_agent(self) -> None:
        stop_agent(self.home)


_signers: dict[tuple[Path, bytes], BoxSigner] = {}
_signers_lock = threading.Lock()


def box_signer(data_dir: Path, keys: BoxKeys, box_id: str | None = None) -> BoxSigner:
    """One signer per data dir and process (listing the keyring costs a gpg run)."""
    cache_key = (data_dir.absolute(), hashlib.sha256(keys.signing).digest())
    with _signers_lock:
        signer = _signers.get(cache_key)
        if signer is None or not signer.home.exists():
            signer = BoxSigner(data_dir, keys, box_id)
            _signers[cache_key] = signer
        return signer


def ensure_box_key(data_dir: Path, keys: BoxKeys, box_id: str | None = None) -> str:
    """Create the box key if there is none; returns its fingerprint."""
    return box_signer(data_dir, keys, box_id).fingerprint


def verify_with_public_key(public_key: str, data: bytes, signature: str) -> str | None:
    """Check a signature the way an auditor does: stock gpg, a fresh keyring holding only
    `public_key`. Returns the signing key's fingerprint, or None when it does not verify."""
    with tempfile.TemporaryDirectory(prefix="enc") as tmp:
        home = Path(tmp) / "g"
        home.mkdir(mode=0o700)
        gpg = gnupg.GPG(gnupghome=str(home))
        try:
            gpg.import_keys(public_key)
            sig_path = Path(tmp) / "sig.asc"
            sig_path.write_text(signature)
            result = gpg.verify_data(str(sig_path), data)
        finally:
            stop_agent(home)
    if not result.valid:
        return None
    return str(result.pubkey_fingerprint or result.fingerprint)
