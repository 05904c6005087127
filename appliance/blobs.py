"""The encrypted blob store: resumes, recordings and exports under `<data dir>/blobs/`.

Why chunks: a 2 GB interview recording has to stream in from the recorder and out
to the browser or into an export without ever sitting whole in memory, and a
recording cut by a crash has to stay playable up to where it stopped. So a blob
is a header followed by AES-256-GCM records of a fixed plaintext size, each
written to the file as soon as it is full; only the final record may be shorter.

Why this associated data: every record's AAD binds a hash of the header (so the
subject id, salt and chunk size cannot be relabelled), the blob id (so records
cannot move between blobs), the record's index (so reordering or dropping one
fails) and a final flag (so a blob cut on a record boundary is told apart from a
complete one). The final flag is stored nowhere in clear: a reader learns it
from which AAD authenticates the last record.

Why a key per blob: each blob is sealed under an HKDF sub-key of its subject's
data key, salted with 16 random bytes from its header. The subject key is
fetched from the keyring every time a writer or reader is opened, so once a
subject's key is destroyed none of their blobs opens again (crypto-shredding,
PIPL Art. 47).

File `blobs/<id[:2]>/<id>` (mode 0600, folders 0700)::

    header  b"ENCBLOB1" | version (1 byte) | subject id (16 raw bytes)
            | salt (16 bytes) | plaintext chunk size (u32, big-endian)
    record  nonce (12) | ciphertext | tag (16), repeated: every record but the
            final one holds exactly `chunk size` plaintext bytes, so record i
            starts at HEADER_SIZE + i * (chunk size + RECORD_OVERHEAD). The
            final record is shorter (empty for an empty blob, or when the data
            ended on a chunk boundary).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance import crypto
from appliance.errors import BlobIntegrityError, BlobNotFound, BlobTruncated, IntegrityError
from appliance.keyring import SubjectKeyring, check_subject_id

MAGIC = b"ENCBLOB1"
FORMAT_VERSION = 1
SALT_BYTES = 16
TAG_BYTES = 16
RECORD_OVERHEAD = crypto.NONCE_BYTES + TAG_BYTES
DEFAULT_CHUNK_SIZE = 1 << 20
# The header is parsed before anything has authenticated it: cap the chunk size it
# may claim, so an altered header cannot make a reader allocate gigabytes.
MAX_CHUNK_SIZE = 64 << 20

_HEADER = struct.Struct(">8sB16s16sI")
HEADER_SIZE = _HEADER.size
_HEX32 = re.compile(r"[0-9a-f]{32}")
_FAN_OUT = re.compile(r"[0-9a-f]{2}")
_FAILED = "failed authentication (the chunk was altered, moved, or one before it was dropped)"


def check_blob_id(blob_id: str) -> str:
    """Blob ids are uuid4 hex and become file names, so nothing else may reach the disk."""
    if not isinstance(blob_id, str) or not _HEX32.fullmatch(blob_id):
        raise ValueError(f"not a blob id: {blob_id!r}")
    return blob_id


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Header:
    subject_id: str
    salt: bytes
    chunk_size: int
    raw: bytes

    @classmethod
    def new(cls, subject_id: str, chunk_size: int) -> _Header:
        salt = os.urandom(SALT_BYTES)
        raw = _HEADER.pack(MAGIC, FORMAT_VERSION, bytes.fromhex(subject_id), salt, chunk_size)
        return cls(subject_id, salt, chunk_size, raw)

    @classmethod
    def parse(cls, blob_id: str, raw: bytes) -> _Header:
        if len(raw) < HEADER_SIZE:
            raise IntegrityError(
                f"blob {blob_id}: the file is shorter than a blob header "
                "(not a blob, or cut off while being created)"
            )
        magic, version, subject, salt, chunk_size = _HEADER.unpack(raw[:HEADER_SIZE])
        if magic != MAGIC:
            raise IntegrityError(f"blob {blob_id}: not a blob file (wrong magic bytes)")
        if version != FORMAT_VERSION:
            raise IntegrityError(
                f"blob {blob_id}: blob format version {version} is not known to this version "
                "of the appliance"
            )
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise IntegrityError(f"blob {blob_id}: the header claims chunk size {chunk_size}")
        return cls(subject.hex(), salt, chunk_size, raw[:HEADER_SIZE])


def _read_header(blob_id: str, fd: int) -> _Header:
    return _Header.parse(blob_id, os.pread(fd, HEADER_SIZE, 0))


class ChunkCipher:
    """Seals and opens numbered records of one stream; the AAD binds prefix, index and final.

    Blobs use it with a per-blob sub-key; backups use it for their outer layer.
    """

    def __init__(self, key: bytes, aad_prefix: bytes) -> None:
        self._aead = AESGCM(key)
        self._aad_prefix = aad_prefix

    def _aad(self, index: int, final: bool) -> bytes:
        return self._aad_prefix + struct.pack(">QB", index, 1 if final else 0)

    def seal(self, index: int, plaintext: bytes, final: bool) -> bytes:
        nonce = os.urandom(crypto.NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, self._aad(index, final))

    def open(self, index: int, record: bytes, final: bool) -> bytes | None:
        """The plaintext, or None when the record does not authenticate with this flag."""
        if len(record) < RECORD_OVERHEAD:
            return None
        nonce, body = record[: crypto.NONCE_BYTES], record[crypto.NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, self._aad(index, final))
        except InvalidTag:
            return None


def _blob_cipher(blob_id: str, header: _Header, subject_key: bytes) -> ChunkCipher:
    """The records of one blob, under its own sub-key, bound to its header and id."""
    info = b"enclave:blob:" + blob_id.encode("ascii")
    key = crypto.derive_key(subject_key, info=info, salt=header.salt)
    return ChunkCipher(key, hashlib.sha256(header.raw).digest() + bytes.fromhex(blob_id))


class BlobWriter:
    """Streams one new blob to disk, one chunk at a time.

    Each chunk goes to the file as soon as it is full, so readers with
    `partial_ok=True` (and a crashed recording) see everything up to the last
    full chunk. `close()` writes the final chunk: until then a strict reader
    reports the blob as truncated.

    Used as a context manager, an exception inside the `with` block closes the
    file *without* the final chunk (so does a failed write): what was written stays readable with
    `partial_ok=True` (minus the buffered, not yet full chunk), and a strict
    reader raises BlobTruncated, so a failed export is never taken for a
    complete one. Deleting the leftover is the caller's choice.
    """

    def __init__(
        self, blob_id: str, fd: int, path: Path, cipher: ChunkCipher, chunk_size: int
    ) -> None:
        self.blob_id = blob_id
        self._fd: int | None = fd
        self._path = path
        self._cipher = cipher
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, data: bytes) -> None:
        """Append `data` (any size); never holds more than one chunk of it in memory."""
        fd = self._open_fd()
        view = memoryview(data)
        while view:
            room = self._chunk_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._chunk_size:
                record = self._cipher.seal(self._index, bytes(self._buffer), final=False)
                try:
                    _write_all(fd, record)
                except BaseException:
                    # A record may be half on disk: appending after it would misplace
                    # every later one, so the blob ends here (unfinished).
                    self._abandon()
                    raise
                self._index += 1
                self._buffer.clear()

    def close(self) -> None:
        """Write the final chunk and make the blob durable. Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _write_all(fd, self._cipher.seal(self._index, bytes(self._buffer), final=True))
            os.fsync(fd)
        finally:
            os.close(fd)
            self._buffer.clear()
        _fsync_dir(self._path.parent)

    def _abandon(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._buffer.clear()
            os.close(fd)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"blob {self.blob_id}: the writer is closed")
        return self._fd

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon()


class BlobReader:
    """Authenticated plaintext of one blob, one chunk in memory at a time.

    Iterating yields the plaintext chunks in order; `read(n)` makes it a
    file-like object for `tarfile`, `shutil.copyfileobj` or Flask's `send_file`.

    The end of the blob is checked when the reader is opened: a strict reader
    on a blob that was cut short or is still being written fails there, before
    any byte is served. The chunks before it are checked as they stream, so a
    consumer must treat a BlobIntegrityError raised mid-stream (an altered,
    dropped or moved chunk) as a failed transfer.

    With `partial_ok=True` the reader serves every chunk up to the last one that
    authenticates, for recordings still being written or cut by a crash; a
    partly written last record is skipped, since nothing tells a torn write from
    an altered one. Only authenticated bytes are ever returned, and `complete`
    says whether the final chunk was there.
    """

    def __init__(
        self, blob_id: str, fd: int, header: _Header, cipher: ChunkCipher, partial_ok: bool
    ) -> None:
        self.blob_id = blob_id
        self.subject_id = header.subject_id
        self._fd: int | None = fd
        self._cipher = cipher
        self._record_size = header.chunk_size + RECORD_OVERHEAD
        self._tail_error: BlobIntegrityError | None = None
        self._body_records, self._final_size = self._plan(os.fstat(fd).st_size, partial_ok)
        self.complete = self._final_size is not None
        self._chunks = self._decrypt()
        self._pending = b""
        self._pos = 0

    def _plan(self, file_size: int, partial_ok: bool) -> tuple[int, int | None]:
        """How many non-final records to stream, and the final record's size (None: absent).

        Only the end of the blob is read here. When the last record is bad and the
        one before it is bad too, records were dropped or moved further up: the
        error is left to the stream, which names the first chunk out of place.
        """
        full, tail = divmod(file_size - HEADER_SIZE, self._record_size)
        if tail >= RECORD_OVERHEAD:
            if self._cipher.open(full, self._record(full, tail), final=True) is not None:
                return full, tail
            if not partial_ok and self._body_ends_in_place(full):
                raise BlobIntegrityError(
                    self.blob_id,
                    full,
                    "the last record does not authenticate as the final chunk "
                    "(altered, or cut off while being written)",
                )
            if not partial_ok:
                self._tail_error = BlobIntegrityError(self.blob_id, full, _FAILED)
            return full, None
        if tail:
            if not partial_ok:
                raise BlobTruncated(
                    self.blob_id,
                    full,
                    f"the blob ends in a partly written record of {tail} bytes "
                    "(still being written, or cut short)",
                )
            return full, None
        # Ends on a record boundary: the last record is the final one only if it
        # authenticates as such (a writer may end on a full chunk).
        if full and self._cipher.open(full - 1, self._record(full - 1), final=True) is not None:
            return full - 1, self._record_size
        if not partial_ok and self._body_ends_in_place(full):
            raise BlobTruncated(
                self.blob_id,
                full,
                "the blob ends before its final chunk (still being written, or cut short)",
            )
        if not partial_ok:
            self._tail_error = BlobTruncated(self.blob_id, full, "the blob has no final chunk")
        return full, None

    def _body_ends_in_place(self, full: int) -> bool:
        """Whether the last full record authenticates as non-final at its own index."""
        if full == 0:
            return True
        last = full - 1
        return self._cipher.open(last, self._record(last), final=False) is not None

    def _record(self, index: int, length: int | None = None) -> bytes:
        if self._fd is None:
            raise ValueError(f"blob {self.blob_id}: the reader is closed")
        offset = HEADER_SIZE + index * self._record_size
        length = self._record_size if length is None else length
        parts: list[bytes] = []
        while length:
            part = os.pread(self._fd, length, offset)
            if not part:
                raise BlobTruncated(self.blob_id, index, "the blob file shrank while being read")
            parts.append(part)
            length -= len(part)
            offset += len(part)
        return b"".join(parts)

    def _decrypt(self) -> Iterator[bytes]:
        for index in range(self._body_records):
            plaintext = self._cipher.open(index, self._record(index), final=False)
            if plaintext is None:
                raise BlobIntegrityError(self.blob_id, index, _FAILED)
            yield plaintext
        if self._final_size is not None:
            index = self._body_records
            plaintext = self._cipher.open(index, self._record(index, self._final_size), final=True)
            if plaintext is None:
                raise BlobIntegrityError(self.blob_id, index, _FAILED)
            if plaintext:
                yield plaintext
        elif self._tail_error is not None:
            raise self._tail_error

    def __iter__(self) -> Iterator[bytes]:
        if self._pos < len(self._pending):
            rest = self._pending[self._pos :]
            self._pending, self._pos = b"", 0
            yield rest
        yield from self._chunks

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (fewer only at the end); all that is left when size < 0."""
        if size is None or size < 0:
            return b"".join(list(self))
        parts: list[bytes] = []
        while size > 0:
            if self._pos >= len(self._pending):
                self._pending, self._pos = next(self._chunks, b""), 0
                if not self._pending:
                    break
            part = self._pending[self._pos : self._pos + size]
            self._pos += len(part)
            size -= len(part)
            parts.append(part)
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._chunks = iter(())
            self._pending, self._pos = b"", 0
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BlobStore:
    """Encrypted blobs in `root` (the data dir's `blobs/` folder), each owned by one subject."""

    def __init__(
        self, root: Path, keyring: SubjectKeyring, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes")
        self.root = root
        self._keyring = keyring
        self._chunk_size = chunk_size

    def _path(self, blob_id: str) -> Path:
        return self.root / check_blob_id(blob_id)[:2] / blob_id

    def _open_fd(self, blob_id: str) -> int:
        try:
            return os.open(self._path(blob_id), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {blob_id} in {self.root}") from None

    def create(self, subject_id: str) -> BlobWriter:
        """A writer for a new blob of `subject_id`; SubjectKeyDestroyed if they have no key."""
        if not _HEX32.fullmatch(check_subject_id(subject_id)):
            raise ValueError(f"not a subject id: {subject_id!r}")
        subject_key = self._keyring.data_key(subject_id)
        blob_id = uuid.uuid4().hex
        header = _Header.new(subject_id, self._chunk_size)
        path = self._path(blob_id)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, header.raw)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        cipher = _blob_cipher(blob_id, header, subject_key)
        return BlobWriter(blob_id, fd, path, cipher, self._chunk_size)

    def put(self, subject_id: str, chunks: Iterable[bytes]) -> str:
        """Stream `chunks` into a new blob and return its id.

        If `chunks` raises, the partial blob is deleted: its id never reached the
        caller, so nothing could refer to it.
        """
        writer = self.create(subject_id)
        try:
            with writer:
                for chunk in chunks:
                    writer.write(chunk)
        except BaseException:
            self.delete(writer.blob_id)
            raise
        return writer.blob_id

    def open(self, blob_id: str, partial_ok: bool = False) -> BlobReader:
        """A reader of the blob; BlobNotFound, SubjectKeyDestroyed, or BlobIntegrityError."""
        fd = self._open_fd(blob_id)
        try:
            header = _read_header(blob_id, fd)
            cipher = _blob_cipher(blob_id, header, self._keyring.data_key(header.subject_id))
            return BlobReader(blob_id, fd, header, cipher, partial_ok)
        except BaseException:
            os.close(fd)
            raise

    def read_bytes(self, blob_id: str) -> bytes:
        """The whole plaintext in memory: for small blobs only (tests, small exports)."""
        with self.open(blob_id) as reader:
            return reader.read()

    def subject_of(self, blob_id: str) -> str:
        """The owner named in the header, without the key (so it works after a shredding)."""
        fd = self._open_fd(blob_id)
        try:
            return _read_header(blob_id, fd).subject_id
        finally:
            os.close(fd)

    def delete(self, blob_id: str) -> None:
        """Remove the blob. Idempotent.

        The header (with the salt the blob's sub-key is derived from) is overwritten
        first, so the chunks left in free disk blocks stay unreadable even while the
        subject's key lives on; on SSDs and copy-on-write file systems the overwrite
        may not reach the old blocks, which is why shredding destroys the key.
        """
        path = self._path(blob_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            size = min(os.fstat(fd).st_size, HEADER_SIZE)
            os.pwrite(fd, os.urandom(size), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)

    def blob_ids(self) -> Iterator[str]:
        """Every blob id in the store, in sorted order (for audits and erasure sweeps)."""
        if not self.root.is_dir():
            return
        for fan_out in sorted(self.root.iterdir()):
            if not _FAN_OUT.fullmatch(fan_out.name) or not fan_out.is_dir():
                continue
            for entry in sorted(fan_out.iterdir()):
                if _HEX32.fullmatch(entry.name) and entry.name.startswith(fan_out.name):
                    yield entry.name
