"""The encrypted blob store: round trips, tamper detection, partial reads, shredding."""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import tarfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import crypto
from appliance.blobs import HEADER_SIZE, RECORD_OVERHEAD, BlobStore
from appliance.errors import (
    BlobIntegrityError,
    BlobNotFound,
    BlobTruncated,
    SubjectKeyDestroyed,
)
from appliance.keyring import SubjectKeyring

CHUNK = 4096
RECORD = CHUNK + RECORD_OVERHEAD


@pytest.fixture
def keyring(tmp_path: Path) -> SubjectKeyring:
    return SubjectKeyring(tmp_path / "keys" / "subjects", crypto.random_key())


@pytest.fixture
def subject(keyring: SubjectKeyring) -> str:
    subject_id = uuid.uuid4().hex
    keyring.create(subject_id)
    return subject_id


@pytest.fixture
def other_subject(keyring: SubjectKeyring) -> str:
    subject_id = uuid.uuid4().hex
    keyring.create(subject_id)
    return subject_id


@pytest.fixture
def store(tmp_path: Path, keyring: SubjectKeyring) -> BlobStore:
    return BlobStore(tmp_path / "blobs", keyring, chunk_size=CHUNK)


def blob_path(store: BlobStore, blob_id: str) -> Path:
    return store.root / blob_id[:2] / blob_id


def pieces(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def five_and_a_bit(store: BlobStore, subject: str) -> tuple[str, bytes]:
    """A blob of five full chunks plus a remainder, so it has records 0..5."""
    data = os.urandom(5 * CHUNK + 100)
    return store.put(subject, pieces(data)), data


@pytest.mark.parametrize("size", [0, 100, CHUNK, 3 * CHUNK + 123], ids=lambda n: f"{n}B")
def test_round_trip(store: BlobStore, subject: str, size: int) -> None:
    """Any size, chunk-aligned or not and empty included, reads back exactly."""
    data = os.urandom(size)
    blob_id = store.put(subject, pieces(data))
    assert store.read_bytes(blob_id) == data
    with store.open(blob_id) as reader:
        chunks = list(reader)
        assert reader.complete
    assert b"".join(chunks) == data
    assert all(len(chunk) == CHUNK for chunk in chunks[:-1])


def test_plaintext_is_not_on_disk(store: BlobStore, subject: str) -> None:
    """The blob file holds no trace of the plaintext."""
    marker = b"Candidate resume: Zhang Wei, phone 138-0000-0000. "
    blob_id = store.put(subject, [marker * 300])
    raw = blob_path(store, blob_id).read_bytes()
    assert marker[:16] not in raw
    assert store.read_bytes(blob_id) == marker * 300


def test_changed_byte_names_blob_and_chunk(store: BlobStore, subject: str) -> None:
    """One flipped byte in chunk 2's ciphertext fails with an error naming the blob and chunk 2."""
    blob_id, _ = five_and_a_bit(store, subject)
    path = blob_path(store, blob_id)
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + 2 * RECORD + RECORD // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobIntegrityError) as caught:
        store.read_bytes(blob_id)
    assert caught.value.chunk == 2
    assert blob_id in str(caught.value)
    assert not isinstance(caught.value, BlobTruncated)


def test_dropped_chunk_is_detected(store: BlobStore, subject: str) -> None:
    """Removing chunk 1's record fails at chunk 1."""
    blob_id, _ = five_and_a_bit(store, subject)
    path = blob_path(store, blob_id)
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER_SIZE + RECORD] + raw[HEADER_SIZE + 2 * RECORD :])
    with pytest.raises(BlobIntegrityError) as caught:
        store.read_bytes(blob_id)
    assert caught.value.chunk == 1
    assert blob_id in str(caught.value)


def test_reordered_chunks_are_detected(store: BlobStore, subject: str) -> None:
    """Swapping chunks 1 and 2 fails at the first chunk out of place."""
    blob_id, _ = five_and_a_bit(store, subject)
    path = blob_path(store, blob_id)
    raw = path.read_bytes()
    one = raw[HEADER_SIZE + RECORD : HEADER_SIZE + 2 * RECORD]
    two = raw[HEADER_SIZE + 2 * RECORD : HEADER_SIZE + 3 * RECORD]
    path.write_bytes(raw[: HEADER_SIZE + RECORD] + two + one + raw[HEADER_SIZE + 3 * RECORD :])
    with pytest.raises(BlobIntegrityError) as caught:
        store.read_bytes(blob_id)
    assert caught.value.chunk == 1


def test_truncated_blob_is_strict_error_and_partial_prefix(store: BlobStore, subject: str) -> None:
    """Without its final chunk a blob raises BlobTruncated; partial_ok gives the complete chunks."""
    blob_id, data = five_and_a_bit(store, subject)
    path = blob_path(store, blob_id)
    path.write_bytes(path.read_bytes()[: HEADER_SIZE + 5 * RECORD])
    with pytest.raises(BlobTruncated) as caught:
        store.open(blob_id)
    assert caught.value.chunk == 5
    assert blob_id in str(caught.value)
    with store.open(blob_id, partial_ok=True) as reader:
        assert reader.read() == data[: 5 * CHUNK]
        assert not reader.complete


def test_blob_being_written_reads_up_to_last_full_chunk(store: BlobStore, subject: str) -> None:
    """While the writer is open, partial_ok reads its flushed chunks and a strict open refuses."""
    data = os.urandom(3 * CHUNK + 500)
    with store.create(subject) as writer:
        writer.write(data)  # three full chunks flushed, 500 bytes still buffered
        with store.open(writer.blob_id, partial_ok=True) as reader:
            assert list(reader) == [data[i * CHUNK : (i + 1) * CHUNK] for i in range(3)]
        with pytest.raises(BlobTruncated) as caught:
            store.open(writer.blob_id)
        assert caught.value.chunk == 3
    assert store.read_bytes(writer.blob_id) == data


def test_partly_written_last_record_is_skipped_only_in_partial_mode(
    store: BlobStore, subject: str
) -> None:
    """A torn trailing record is ignored with partial_ok and an error in strict mode."""
    blob_id, data = five_and_a_bit(store, subject)
    path = blob_path(store, blob_id)
    raw = path.read_bytes()
    for torn in (10, RECORD // 2):
        path.write_bytes(raw[: HEADER_SIZE + 3 * RECORD + torn])
        with store.open(blob_id, partial_ok=True) as reader:
            assert reader.read() == data[: 3 * CHUNK]
        with pytest.raises(BlobIntegrityError) as caught:
            store.open(blob_id)
        assert caught.value.chunk == 3


def test_writer_aborted_by_exception_keeps_full_chunks(store: BlobStore, subject: str) -> None:
    """An exception in `with` leaves the blob unfinished: partial_ok reads it, strict refuses."""
    data = os.urandom(2 * CHUNK + 10)
    with pytest.raises(RuntimeError), store.create(subject) as writer:
        writer.write(data)
        raise RuntimeError("recorder crashed")
    assert writer.closed
    with store.open(writer.blob_id, partial_ok=True) as reader:
        assert reader.read() == data[: 2 * CHUNK]
    with pytest.raises(BlobTruncated):
        store.open(writer.blob_id)


def test_put_deletes_its_blob_when_the_source_fails(store: BlobStore, subject: str) -> None:
    """A failed put leaves no orphan blob behind (its id never reached the caller)."""

    def failing() -> Iterator[bytes]:
        yield os.urandom(3 * CHUNK)
        raise OSError("upload interrupted")

    with pytest.raises(OSError, match="upload interrupted"):
        store.put(subject, failing())
    assert list(store.blob_ids()) == []


def test_destroyed_subject_key_makes_blobs_unreadable(
    store: BlobStore, keyring: SubjectKeyring, subject: str, other_subject: str
) -> None:
    """After the subject's key is destroyed their blob no longer opens; others' blobs still do."""
    theirs = store.put(subject, [b"resume of the erased subject"])
    others = store.put(other_subject, [b"resume of someone else"])
    keyring.destroy(subject)
    with pytest.raises(SubjectKeyDestroyed):
        store.open(theirs)
    with pytest.raises(SubjectKeyDestroyed):
        store.create(subject)
    assert store.subject_of(theirs) == subject
    assert store.read_bytes(others) == b"resume of someone else"


def test_relabelled_subject_in_header_fails(
    store: BlobStore, subject: str, other_subject: str
) -> None:
    """A blob whose header is changed to name another subject does not open (header is bound)."""
    blob_id = store.put(subject, [os.urandom(2 * CHUNK)])
    path = blob_path(store, blob_id)
    raw = bytearray(path.read_bytes())
    raw[9:25] = bytes.fromhex(other_subject)
    path.write_bytes(bytes(raw))
    assert store.subject_of(blob_id) == other_subject
    with pytest.raises(BlobIntegrityError) as caught:
        store.read_bytes(blob_id)
    assert blob_id in str(caught.value)


def test_blob_copied_under_another_id_fails(store: BlobStore, subject: str) -> None:
    """The blob id is bound too: a file copied to another id's name does not open."""
    blob_id = store.put(subject, [b"offer letter"])
    decoy = store.put(subject, [b"something else"])
    blob_path(store, decoy).write_bytes(blob_path(store, blob_id).read_bytes())
    with pytest.raises(BlobIntegrityError):
        store.read_bytes(decoy)


def test_file_modes_and_layout(store: BlobStore, subject: str) -> None:
    """Blob files are 0600 under 0700 folders at blobs/<id[:2]>/<id>."""
    blob_id = store.put(subject, [b"x"])
    path = blob_path(store, blob_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert path.read_bytes()[:8] == b"ENCBLOB1"


def test_ids_are_checked_before_the_file_system(store: BlobStore) -> None:
    """Malformed ids are refused outright; a well-formed unknown id is BlobNotFound."""
    for bad in ("../../etc/passwd", "A" * 32, "0" * 31, "0" * 32 + "\n"):
        with pytest.raises(ValueError):
            store.open(bad)
        with pytest.raises(ValueError):
            store.delete(bad)
    with pytest.raises(BlobNotFound):
        store.open(uuid.uuid4().hex)
    with pytest.raises(BlobNotFound):
        store.subject_of(uuid.uuid4().hex)


def test_list_owner_and_delete(store: BlobStore, subject: str, other_subject: str) -> None:
    """blob_ids lists every blob, subject_of names its owner, delete removes it (idempotently)."""
    first = store.put(subject, [b"one"])
    second = store.put(other_subject, [b"two"])
    assert sorted(store.blob_ids()) == sorted([first, second])
    assert store.subject_of(first) == subject
    assert store.subject_of(second) == other_subject
    store.delete(first)
    store.delete(first)
    assert list(store.blob_ids()) == [second]
    with pytest.raises(BlobNotFound):
        store.open(first)


def test_reader_is_file_like_for_tarfile(store: BlobStore, subject: str) -> None:
    """read(n) lets a blob stream straight into a tar export."""
    data = os.urandom(3 * CHUNK + 77)
    blob_id = store.put(subject, pieces(data))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar, store.open(blob_id) as reader:
        info = tarfile.TarInfo("recording.webm")
        info.size = len(data)
        tar.addfile(info, reader)
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar:
        member = tar.extractfile("recording.webm")
        assert member is not None
        assert member.read() == data


def test_200_mb_streams_with_bounded_memory(
    tmp_path: Path, keyring: SubjectKeyring, subject: str
) -> None:
    """A 200 MB blob goes in and out with 1 MiB chunks and under 16 MiB of peak Python memory."""
    store = BlobStore(tmp_path / "blobs", keyring)
    total, piece = 200 * 1024 * 1024, 64 * 1024
    rng = random.Random(os.urandom(16))
    written, read_back = hashlib.sha256(), hashlib.sha256()
    started = time.monotonic()
    tracemalloc.start()
    try:
        with store.create(subject) as writer:
            for _ in range(total // piece):
                data = rng.randbytes(piece)
                written.update(data)
                writer.write(data)
        size = 0
        with store.open(writer.blob_id) as reader:
            for chunk in reader:
                read_back.update(chunk)
                size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    store.delete(writer.blob_id)
    print(f"200 MB write+read: peak {peak / 2**20:.1f} MiB, {elapsed:.1f} s")
    assert size == total
    assert read_back.digest() == written.digest()
    assert peak < 16 * 2**20
