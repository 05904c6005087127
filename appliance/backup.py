"""Encrypted backups and keyring exports (issue #2, item 11).

A backup holds the database (an online, consistent snapshot through
SQLite's backup API, still SQLCipher-encrypted), every blob (already
encrypted under subject keys), the keystore (the wrapped master and box
keys) and the box's GPG home (its private key locked by a passphrase derived
from the box keys), so restored audit checkpoints still verify. It never
holds the subject keyring.

The keyring is kept as current state instead (`appliance keyring export`):
a restore takes the keyring as it is *now*, so a subject shredded after the
backup was taken stays unreadable in that backup too (PIPL Art. 47).

Both files open with the box's recovery passphrase or its key file: their
header carries the master key's two wraps and a random file key sealed under
the master key. The body is a tar stream sealed in AES-GCM records
(`blobs.ChunkCipher`), so a 2 GB recording never sits whole in memory and a
changed, dropped or cut record fails the restore with a clear error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from appliance import crypto
from appliance.blobs import RECORD_OVERHEAD, ChunkCipher
from appliance.database import cipher_connect, database_path
from appliance.datadir import check_empty, make_folders
from appliance.errors import DataDirError, IntegrityError, WrongKeyError
from appliance.keyring import SubjectKeyring, write_private
from appliance.keys import (
    BoxKeys,
    keys_dir,
    read_keystore,
    rewrap_for_new_key_file,
    unwrap_keystore,
    unwrap_master,
    write_keystore_doc,
)
from appliance.records import utcnow
from appliance.store import DATA_DIR_ENTRIES, Store

BACKUP_MAGIC = b"ENCBKUP1"
KEYRING_MAGIC = b"ENCKRNG1"
CHUNK = 1 << 20
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Credential:
    """How to unlock a backup or keyring file: the recovery passphrase or a key file."""

    passphrase: str | None = None
    key_file: Path | None = None


# --- sealed file: header + AES-GCM records --------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_header(
    out: IO[bytes], magic: bytes, keys: BoxKeys, data_dir: Path, kind: str, extra: dict[str, Any]
) -> ChunkCipher:
    """Header: the master key's two wraps (from the keystore) and a file key sealed under it."""
    file_id = os.urandom(16).hex()
    file_key = crypto.random_key()
    header = {
        "kind": kind,
        "file_id": file_id,
        "created_at": utcnow().isoformat(),
        "master": read_keystore(data_dir)["master"],
        "file_key": _b64(crypto.seal(keys.master, file_key, f"enclave:{kind}:{file_id}".encode())),
        **extra,
    }
    raw = json.dumps(header).encode()
    out.write(magic + _LEN.pack(len(raw)) + raw)
    return ChunkCipher(file_key, magic + file_id.encode())


def _read_header(fh: IO[bytes], magic: bytes, what: str) -> dict[str, Any]:
    start = fh.read(len(magic) + _LEN.size)
    if start[: len(magic)] != magic:
        raise IntegrityError(f"{what} is not an Enclave {what} file (wrong magic bytes)")
    (length,) = _LEN.unpack(start[len(magic) :])
    header: dict[str, Any] = json.loads(fh.read(length))
    return header


def _unlock(header: dict[str, Any], credential: Credential, what: str) -> tuple[bytes, ChunkCipher]:
    """The master key of the box that wrote the file, and the file's record cipher."""
    try:
        master = unwrap_master(header["master"], credential.key_file, credential.passphrase)
    except WrongKeyError:
        how = "recovery passphrase" if credential.passphrase is not None else "key file"
        raise WrongKeyError(
            f"the {how} does not open this {what} (it was written under another master key)"
        ) from None
    aad = f"enclave:{header['kind']}:{header['file_id']}".encode()
    file_key = crypto.open_sealed(master, base64.b64decode(header["file_key"]), aad)
    magic = BACKUP_MAGIC if header["kind"] == "backup" else KEYRING_MAGIC
    return master, ChunkCipher(file_key, magic + header["file_id"].encode())


class _SealedWriter(io.RawIOBase):
    """File-like sink that seals what is written into fixed-size records."""

    def __init__(self, out: IO[bytes], cipher: ChunkCipher) -> None:
        self._out, self._cipher = out, cipher
        self._buf = bytearray()
        self._index = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buf += data
        while len(self._buf) > CHUNK:  # keep the last chunk back: it may be the final one
            self._out.write(self._cipher.seal(self._index, bytes(self._buf[:CHUNK]), False))
            del self._buf[:CHUNK]
            self._index += 1
        return len(data)

    def finish(self) -> None:
        self._out.write(self._cipher.seal(self._index, bytes(self._buf), True))
        self._buf.clear()


def _open_records(fh: IO[bytes], cipher: ChunkCipher, what: str) -> Iterator[bytes]:
    """Plaintext records in order; an altered, dropped or missing final record fails."""
    index = 0
    record = fh.read(CHUNK + RECORD_OVERHEAD)
    while True:
        following = fh.read(CHUNK + RECORD_OVERHEAD)
        final = not following
        plain = cipher.open(index, record, final)
        if plain is None:
            reason = "is cut short" if final else "was altered or its records reordered"
            raise IntegrityError(f"{what}: record {index} failed authentication; the file {reason}")
        yield plain
        if final:
            return
        record, index = following, index + 1


class _RecordReader(io.RawIOBase):
    def __init__(self, records: Iterator[bytes]) -> None:
        self._records = records
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._records)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


# --- backup -----------------------------------------------------------------------------


def backup(store: Store, out_path: Path) -> None:
    """Online and consistent: the database through the backup API, then blobs, then keystore."""
    tmp = Path(tempfile.mkdtemp(prefix="enclave-backup-"))
    try:
        snapshot = tmp / "enclave.db"
        _snapshot_database(store, snapshot)
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            cipher = _write_header(out, BACKUP_MAGIC, store.keys, store.data_dir, "backup", {})
            sink = _SealedWriter(out, cipher)
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(snapshot, arcname="enclave.db")
                tar.add(keys_dir(store.data_dir) / "keystore.json", arcname="keys/keystore.json")
                # The box's GPG key signs the audit checkpoints; its private part is locked
                # with a passphrase derived from the box keys. Sockets and locks stay behind.
                for path in sorted((store.data_dir / "gnupg").rglob("*")):
                    if path.is_file() and not path.is_symlink() and not path.name.startswith("S."):
                        tar.add(path, arcname=str(path.relative_to(store.data_dir)))
                for blob_id in store.blobs.blob_ids():
                    rel = Path("blobs") / blob_id[:2] / blob_id
                    tar.add(store.data_dir / rel, arcname=str(rel))
            sink.finish()
            out.flush()
            os.fsync(out.fileno())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _snapshot_database(store: Store, target: Path) -> None:
    """SQLite's online backup into a file keyed like the live one (it stays encrypted)."""
    dst = cipher_connect(target, store.keys.database)
    raw = store.engine.raw_connection()
    try:
        raw.driver_connection.backup(dst)  # type: ignore[union-attr]
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        raw.close()
        dst.close()


def restore(
    data_dir: Path,
    backup_path: Path,
    keyring_path: Path,
    credential: Credential,
    key_file: Path,
    force: bool = False,
) -> None:
    """Restore into `data_dir` with the *current* keyring. Never over data without --force;
    a restore that fails half-way (a tampered record, a full disk) leaves the dir empty.
    The backup and the keyring export are unlocked *before* --force clears anything: a
    wrong passphrase or file never costs the data that is there (issue 9's rollback drill)."""
    with backup_path.open("rb") as fh:
        header = _read_header(fh, BACKUP_MAGIC, "backup")
        master, cipher = _unlock(header, credential, "backup")
        keyring_keys = read_keyring_export(keyring_path, credential)
        if force and data_dir.exists():
            _clear_data_dir(data_dir)
        check_empty(data_dir)
        make_folders(data_dir)
        try:
            reader = io.BufferedReader(_RecordReader(_open_records(fh, cipher, str(backup_path))))
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                # Members checked by _safe_members (and the data filter where Python has it).
                tar.extractall(data_dir, members=_safe_members(tar), **_DATA_FILTER)  # noqa: S202
            _install_keys(data_dir, master, key_file, keyring_keys)
        except BaseException:
            _clear_data_dir(data_dir)
            raise


_DATA_FILTER: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
"""tarfile's extraction filters came in Python 3.11.4; Debian 12 runs 3.11.2, where
`_safe_members` alone keeps the archive inside the data dir."""


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Only plain files and folders, by relative paths that stay inside the data dir."""
    for member in tar:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise IntegrityError(
                f"the backup holds an entry that may not be restored: {member.name!r}"
            )
        yield member


def _install_keys(
    data_dir: Path, master: bytes, key_file: Path, keyring_keys: dict[str, bytes]
) -> None:
    """A new key file for this dir, then the current subject keys under the restored keyring key."""
    write_keystore_doc(data_dir, rewrap_for_new_key_file(read_keystore(data_dir), master, key_file))
    keys = unwrap_keystore(read_keystore(data_dir), key_file, None)
    keyring = SubjectKeyring(keys_dir(data_dir) / "subjects", keys.keyring)
    for subject_id, key in keyring_keys.items():
        keyring.import_key(subject_id, key)
    for path in [database_path(data_dir), *data_dir.glob("blobs/*/*")]:
        os.chmod(path, 0o600)
    for folder in [data_dir / "gnupg", *(p for p in (data_dir / "gnupg").rglob("*") if p.is_dir())]:
        os.chmod(folder, 0o700)  # gpg refuses a home others can read
    for path in (p for p in (data_dir / "gnupg").rglob("*") if p.is_file()):
        os.chmod(path, 0o600)


def _clear_data_dir(data_dir: Path) -> None:
    """--force: remove the layout's entries only; anything else means a wrong path."""
    stray = [
        p.name
        for p in data_dir.iterdir()
        if p.name not in DATA_DIR_ENTRIES and not p.name.startswith("enclave.db-")
    ]
    if stray:
        raise DataDirError(
            f"{data_dir} holds files that are not an Enclave data dir ({', '.join(stray[:5])}); "
            "refusing to clear it even with --force"
        )
    for entry in data_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# --- keyring export ---------------------------------------------------------------------


def export_keyring(store: Store, out_path: Path) -> int:
    """Every current subject key, sealed for this box's master key. Returns the count."""
    keys = store.keyring.export_keys()
    body = json.dumps({sid: _b64(key) for sid, key in keys.items()}).encode()
    buf = io.BytesIO()
    cipher = _write_header(
        buf, KEYRING_MAGIC, store.keys, store.data_dir, "keyring", {"subjects": len(keys)}
    )
    sink = _SealedWriter(buf, cipher)
    sink.write(body)
    sink.finish()
    write_private(out_path, buf.getvalue())
    return len(keys)


def read_keyring_export(path: Path, credential: Credential) -> dict[str, bytes]:
    with path.open("rb") as fh:
        header = _read_header(fh, KEYRING_MAGIC, "keyring")
        _master, cipher = _unlock(header, credential, "keyring export")
        body = b"".join(_open_records(fh, cipher, str(path)))
    return {sid: base64.b64decode(key) for sid, key in json.loads(body).items()}


def import_keyring(store: Store, path: Path, credential: Credential) -> int:
    """Replace nothing: add the export's keys this box lacks. Returns how many were added."""
    added = 0
    for subject_id, key in read_keyring_export(path, credential).items():
        if not store.keyring.exists(subject_id):
            store.keyring.import_key(subject_id, key)
            added += 1
    return added
