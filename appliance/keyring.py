"""The subject keyring: one random data key per subject (candidate or employee).

Each subject's key is stored in its own file `keys/subjects/<subject_id>.key`,
sealed under the keyring key (which itself is wrapped by the master key, see
`appliance.keys`). Destroying a subject's key deletes that file: every field
and blob sealed under it, in the live box and in every backup, becomes
unreadable (crypto-shredding, PIPL Art. 47). Backups never carry this folder;
it is copied as current state with `appliance keyring export|import`.

A file per subject keeps create and destroy atomic (write-then-rename,
unlink) and lets several processes share the keyring with no lock and no
cache that could outlive a destruction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from appliance import crypto
from appliance.errors import IntegrityError, KeyProblem, SubjectKeyDestroyed

_SUBJECT_ID = re.compile(r"[0-9a-f]{32}")


def check_subject_id(subject_id: str) -> str:
    """Subject ids are uuid4 hex: they become file names, so nothing else passes."""
    if not _SUBJECT_ID.fullmatch(subject_id):
        raise ValueError(f"not a subject id: {subject_id!r}")
    return subject_id


def write_private(path: Path, data: bytes) -> None:
    """Write a file atomically with mode 0600 (fsync, then rename over the old one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SubjectKeyring:
    """Create, fetch and destroy per-subject data keys."""

    def __init__(self, folder: Path, keyring_key: bytes) -> None:
        self.folder = folder
        self._kek = keyring_key

    def _path(self, subject_id: str) -> Path:
        return self.folder / f"{check_subject_id(subject_id)}.key"

    def _aad(self, subject_id: str) -> bytes:
        return f"enclave:subject-key:{subject_id}".encode()

    def create(self, subject_id: str) -> bytes:
        """Make and store a new data key; refuses to replace an existing one."""
        path = self._path(subject_id)
        if path.exists():
            raise KeyProblem(f"subject {subject_id} already has a data key")
        key = crypto.random_key()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, crypto.seal(self._kek, key, self._aad(subject_id)))
        return key

    def data_key(self, subject_id: str) -> bytes:
        """The subject's key; SubjectKeyDestroyed once it was destroyed (or never existed)."""
        try:
            sealed = self._path(subject_id).read_bytes()
        except FileNotFoundError:
            raise SubjectKeyDestroyed(subject_id) from None
        try:
            return crypto.open_sealed(self._kek, sealed, self._aad(subject_id))
        except IntegrityError as exc:
            raise KeyProblem(
                f"the data key file of subject {subject_id} does not open with this box's "
                "keyring key (altered, or from another box)"
            ) from exc

    def exists(self, subject_id: str) -> bool:
        return self._path(subject_id).exists()

    def destroy(self, subject_id: str) -> None:
        """Overwrite then unlink the key file. Idempotent."""
        path = self._path(subject_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        # Overwriting helps on file systems that update in place; on SSDs and
        # copy-on-write file systems it may not, which is why the key (not the
        # data) is what we destroy: 32 bytes are easier to lose than 2 GB.
        with path.open("r+b") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()

    def subject_ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.key"))

    def export_keys(self) -> dict[str, bytes]:
        """Every subject's plain data key, for an encrypted keyring export."""
        return {sid: self.data_key(sid) for sid in self.subject_ids()}

    def import_key(self, subject_id: str, key: bytes) -> None:
        """Store a key from an export, sealed under this box's keyring key."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self._path(subject_id), crypto.seal(self._kek, key, self._aad(subject_id)))
