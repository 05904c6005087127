"""The box's keys: a master key that is only ever stored wrapped, and the keys under it.

`keys/keystore.json` holds
- the master key twice wrapped: by the key file (`keys/unseal.key`, 32 random
  bytes, mode 0600, for unattended start) and by the recovery passphrase
  (Argon2id), which `appliance init` shows once;
- under the master key, each random and sealed with its own purpose as
  associated data: the database key, the box's signing key material, the
  blind-index key and the keyring key that seals every subject's data key.

`rekey` makes a new master key and key file and re-wraps those few keys:
nothing else is rewritten, the subject keyring included. `rekey --database`
also changes the database key (SQLCipher `PRAGMA rekey`, see
`appliance.database.rekey_database`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import crypto
from appliance.errors import IntegrityError, MissingKeyError, WrongKeyError
from appliance.keyring import write_private

BOX_KEYS = ("database", "signing", "blind_index", "keyring")
KEYSTORE_VERSION = 1
# No 0/O or 1/I: the passphrase is read aloud and typed by hand.
_PASSPHRASE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 (an alphabet)


@dataclass(frozen=True)
class BoxKeys:
    """The unwrapped keys of one box, held in memory only."""

    master: bytes
    database: bytes
    signing: bytes
    blind_index: bytes
    keyring: bytes
    database_previous: bytes | None = None
    """Set only while a database rekey is in flight (see rekey_database)."""


def keys_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


def keystore_path(data_dir: Path) -> Path:
    return keys_dir(data_dir) / "keystore.json"


def new_recovery_passphrase() -> str:
    """160 random bits as 8 groups of 4 unambiguous characters."""
    chars = "".join(secrets.choice(_PASSPHRASE_ALPHABET) for _ in range(32))
    return "-".join(chars[i : i + 4] for i in range(0, 32, 4))


def normalise_passphrase(passphrase: str) -> str:
    """People retype the printed passphrase: case, spaces and dashes do not matter."""
    return "".join(ch for ch in passphrase.upper() if ch.isalnum())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _file_key_id(file_key: bytes) -> str:
    return hashlib.sha256(b"enclave:key-file-id:" + file_key).hexdigest()[:16]


def _wrap_master(master: bytes, file_key: bytes, passphrase: str) -> dict[str, Any]:
    params = crypto.Argon2Params()
    salt = os.urandom(16)
    kek = crypto.passphrase_key(normalise_passphrase(passphrase), salt, params)
    return {
        "key_file_id": _file_key_id(file_key),
        "by_key_file": _b64(crypto.seal(file_key, master, b"enclave:master:key-file")),
        "by_passphrase": {
            "kdf": "argon2id",
            "params": params.as_dict(),
            "salt": _b64(salt),
            "sealed": _b64(crypto.seal(kek, master, b"enclave:master:passphrase")),
        },
    }


def _wrap_box_keys(master: bytes, keys: dict[str, bytes]) -> dict[str, str]:
    return {
        name: _b64(crypto.seal(master, key, f"enclave:box-key:{name}".encode()))
        for name, key in keys.items()
    }


def _write_keystore(
    data_dir: Path, master_wrap: dict[str, Any], wrapped: dict[str, str], created_at: str
) -> None:
    doc = {
        "version": KEYSTORE_VERSION,
        "created_at": created_at,
        "rotated_at": datetime.now(UTC).isoformat(),
        "master": master_wrap,
        "keys": wrapped,
    }
    write_private(keystore_path(data_dir), json.dumps(doc, indent=2).encode())


def read_keystore(data_dir: Path) -> dict[str, Any]:
    path = keystore_path(data_dir)
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingKeyError(
            f"no keystore at {path}: this data dir was not initialised (run `appliance init`)"
        ) from None
    if doc.get("version") != KEYSTORE_VERSION:
        raise MissingKeyError(f"{path} has unknown keystore version {doc.get('version')!r}")
    return doc


def create_keys(data_dir: Path, passphrase: str, key_file: Path) -> BoxKeys:
    """First start: make every box key and store them wrapped. Refuses to overwrite."""
    if keystore_path(data_dir).exists() or key_file.exists():
        raise MissingKeyError(f"keys already exist in {keys_dir(data_dir)}; refusing to overwrite")
    keys_dir(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    master, file_key = crypto.random_key(), crypto.random_key()
    box = {name: crypto.random_key() for name in BOX_KEYS}
    write_private(key_file, file_key)
    _write_keystore(
        data_dir,
        _wrap_master(master, file_key, passphrase),
        _wrap_box_keys(master, box),
        datetime.now(UTC).isoformat(),
    )
    (keys_dir(data_dir) / "subjects").mkdir(mode=0o700, exist_ok=True)
    return BoxKeys(master=master, **box)


def _pending_key_file(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".next")


def _read_key_file(key_file: Path, expected_id: str) -> bytes:
    """The key file, finishing a rekey that stopped between its two writes."""
    pending = _pending_key_file(key_file)
    if pending.exists() and _file_key_id(pending.read_bytes()) == expected_id:
        os.replace(pending, key_file)
    try:
        file_key = key_file.read_bytes()
    except FileNotFoundError:
        raise MissingKeyError(
            f"key file {key_file} is missing; start with the recovery passphrase "
            "(--passphrase-file) or restore the key file"
        ) from None
    if _file_key_id(file_key) != expected_id:
        raise WrongKeyError(f"key file {key_file} is not the key file of this data dir")
    return file_key


def unseal(data_dir: Path, key_file: Path | None = None, passphrase: str | None = None) -> BoxKeys:
    """Unwrap the master key with the passphrase (if given) or the key file, then the rest."""
    return unwrap_keystore(read_keystore(data_dir), key_file, passphrase)


def unwrap_keystore(doc: dict[str, Any], key_file: Path | None, passphrase: str | None) -> BoxKeys:
    return _unwrap_box_keys(unwrap_master(doc["master"], key_file, passphrase), doc["keys"])


def unwrap_master(
    master_doc: dict[str, Any], key_file: Path | None, passphrase: str | None
) -> bytes:
    """The master key from its passphrase wrap (if a passphrase is given) or key-file wrap."""
    try:
        if passphrase is not None:
            wrap = master_doc["by_passphrase"]
            kek = crypto.passphrase_key(
                normalise_passphrase(passphrase),
                _unb64(wrap["salt"]),
                crypto.Argon2Params.from_dict(wrap["params"]),
            )
            return crypto.open_sealed(kek, _unb64(wrap["sealed"]), b"enclave:master:passphrase")
        if key_file is not None:
            file_key = _read_key_file(key_file, master_doc["key_file_id"])
            return crypto.open_sealed(
                file_key, _unb64(master_doc["by_key_file"]), b"enclave:master:key-file"
            )
    except IntegrityError:
        what = "recovery passphrase" if passphrase is not None else f"key file {key_file}"
        raise WrongKeyError(f"the {what} does not unlock this master key") from None
    raise MissingKeyError("no key file or recovery passphrase given")


def _unwrap_box_keys(master: bytes, wrapped: dict[str, str]) -> BoxKeys:
    def get(name: str) -> bytes:
        return crypto.open_sealed(master, _unb64(wrapped[name]), f"enclave:box-key:{name}".encode())

    previous = get("database_previous") if "database_previous" in wrapped else None
    return BoxKeys(
        master=master, database_previous=previous, **{name: get(name) for name in BOX_KEYS}
    )


def rekey_master(data_dir: Path, keys: BoxKeys, key_file: Path, new_passphrase: str) -> BoxKeys:
    """Rotate the master key and the key file; re-wrap the box keys. No data is rewritten.

    Crash-safe order: the new key file goes to `<key file>.next`, then the
    keystore is replaced atomically, then `.next` is renamed; `unseal` finishes
    a rename that a crash interrupted.
    """
    doc = read_keystore(data_dir)
    master, file_key = crypto.random_key(), crypto.random_key()
    write_private(_pending_key_file(key_file), file_key)
    box = {name: getattr(keys, name) for name in BOX_KEYS}
    if keys.database_previous is not None:
        box["database_previous"] = keys.database_previous
    _write_keystore(
        data_dir,
        _wrap_master(master, file_key, new_passphrase),
        _wrap_box_keys(master, box),
        doc["created_at"],
    )
    os.replace(_pending_key_file(key_file), key_file)
    return BoxKeys(
        master=master,
        database=keys.database,
        signing=keys.signing,
        blind_index=keys.blind_index,
        keyring=keys.keyring,
        database_previous=keys.database_previous,
    )


def store_database_key(
    data_dir: Path, keys: BoxKeys, database: bytes, previous: bytes | None
) -> BoxKeys:
    """Record a new database key (keeping the previous one while PRAGMA rekey runs)."""
    doc = read_keystore(data_dir)
    box = {name: getattr(keys, name) for name in BOX_KEYS}
    box["database"] = database
    if previous is not None:
        box["database_previous"] = previous
    _write_keystore(data_dir, doc["master"], _wrap_box_keys(keys.master, box), doc["created_at"])
    return BoxKeys(
        master=keys.master,
        database=database,
        signing=keys.signing,
        blind_index=keys.blind_index,
        keyring=keys.keyring,
        database_previous=previous,
    )


def rewrap_for_new_key_file(doc: dict[str, Any], master: bytes, key_file: Path) -> dict[str, Any]:
    """A restored keystore on a new box: a new key file, the same recovery passphrase wrap."""
    file_key = crypto.random_key()
    write_private(key_file, file_key)
    new_doc = dict(doc)
    new_doc["master"] = dict(
        doc["master"],
        key_file_id=_file_key_id(file_key),
        by_key_file=_b64(crypto.seal(file_key, master, b"enclave:master:key-file")),
    )
    return new_doc


def write_keystore_doc(data_dir: Path, doc: dict[str, Any]) -> None:
    keys_dir(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(keystore_path(data_dir), json.dumps(doc, indent=2).encode())
