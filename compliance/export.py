"""Signed audit exports: what an auditor takes away and checks with `compliance/verify.py`.

An export is a folder:

    events.jsonl        the events of the range, one canonical JSON line each, the very
                        bytes of their Merkle leaves
    checkpoints.jsonl   {"root","size","signature","time"} per line, by size: the newest
                        checkpoint at or before the range's start (linking to an earlier
                        export), those inside the range, and the last one, made by the
                        export itself, which covers every exported event
    proofs.jsonl        first a consistency proof between each two consecutive
                        checkpoints, then an inclusion proof of every exported event in
                        the last checkpoint's tree (so a partial range verifies alone)
    box-public-key.asc  the box's OpenPGP key
    manifest.json       sha256 of each file above, the range and the key's fingerprint
    manifest.json.asc   the box's detached signature over manifest.json

A range is a contiguous run of sequence numbers: from the first event at or
after `start` to the last one before `end`. Events hold ids and field names,
never personal values, so the files are not personal data beyond those ids.

Making an export is itself an audited action: its event is recorded first,
and the closing checkpoint covers it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from appliance.errors import ApplianceError
from appliance.records import AuditEvent, utcnow
from appliance.settings import AuditSettings, Settings
from appliance.store import Store
from compliance import audit, merkle
from compliance.actors import Actor
from compliance.signing import BoxSigner

FORMAT = "enclave-hr-audit-export/1"
EXPORT_FILES = ("events.jsonl", "checkpoints.jsonl", "proofs.jsonl", "box-public-key.asc")


class ExportError(ApplianceError):
    """The export cannot be written (the target is not empty, a time is malformed)."""

    exit_code = 2


@dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    first_seq: int | None
    last_seq: int | None
    tree_size: int
    checkpoint_sizes: list[int]
    fingerprint: str

    @property
    def events(self) -> int:
        return (
            0
            if self.first_seq is None or self.last_seq is None
            else (self.last_seq - self.first_seq + 1)
        )


def parse_time(text: str | None, zone: ZoneInfo) -> datetime | None:
    """An ISO 8601 date or time; without an offset it is the hospital's local time."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(0))
        else:
            moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise ExportError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-01-31 or 2026-01-31T08:00+08:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def seq_range(store: Store, start: datetime | None, end: datetime | None, size: int) -> range:
    """Sequence numbers of events with start <= time < end, among the first `size`.

    Times never decrease as seq rises (`record` stamps them under the write lock),
    so this is one contiguous run."""
    with store.engine.connect() as conn:
        first = 0
        if start is not None:
            first = conn.execute(
                select(func.min(AuditEvent.seq)).where(AuditEvent.at >= start)
            ).scalar_one()
            first = size if first is None else first
        stop = size
        if end is not None:
            last = conn.execute(
                select(func.max(AuditEvent.seq)).where(AuditEvent.at < end)
            ).scalar_one()
            stop = 0 if last is None else min(size, last + 1)
    return range(first, max(first, stop))


def export_log(
    store: Store,
    actor: Actor,
    out_dir: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: AuditSettings | Settings | None = None,
) -> ExportSummary:
    """Record the export, seal the log with a checkpoint, and write the export folder."""
    _prepare_out_dir(out_dir)
    audit.record(
        store,
        actor,
        "audit.export",
        "audit_events",
        "audit export",
    )
    last = audit.checkpoint_now(store, settings)
    if last is None:  # not reachable: the export's own event is in the log
        raise audit.AuditIntegrityError("the audit log is empty")
    tree = merkle.MerkleTree(audit.leaf_hashes(store, last.size))
    if tree.root().hex() != last.root:
        raise audit.AuditIntegrityError(
            f"checkpoint size {last.size}: root mismatch; run `appliance audit verify`"
        )
    seqs = seq_range(store, start, end, last.size)
    chosen = _checkpoints_for(audit.list_checkpoints(store), seqs, last)
    lines = _event_lines(store, seqs, tree)
    signer = audit.signer_for(store)
    write_export(
        out_dir,
        lines,
        seqs,
        tree,
        chosen,
        signer,
        extra={
            "from": None if start is None else audit.format_time(start),
            "to": None if end is None else audit.format_time(end),
        },
    )
    return ExportSummary(
        out_dir=out_dir,
        first_seq=seqs[0] if seqs else None,
        last_seq=seqs[-1] if seqs else None,
        tree_size=last.size,
        checkpoint_sizes=[c.size for c in chosen],
        fingerprint=signer.fingerprint,
    )


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty; give a new folder for the export")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _checkpoints_for(
    checkpoints: Sequence[audit.Checkpoint], seqs: range, last: audit.Checkpoint
) -> list[audit.Checkpoint]:
    """The newest at or before the range's start, those inside it, the first one after
    it, and the last: enough to chain to earlier exports without listing the whole log."""
    start, stop = (seqs.start, seqs.stop) if seqs else (last.size, last.size)
    before = [c for c in checkpoints if c.size <= start]
    inside = [c for c in checkpoints if start < c.size <= stop]
    after = [c for c in checkpoints if c.size > stop][:1]
    chosen = {c.size: c for c in [*before[-1:], *inside, *after, last]}
    return [chosen[size] for size in sorted(chosen) if size <= last.size]


def _event_lines(store: Store, seqs: range, tree: merkle.MerkleTree) -> Iterable[bytes]:
    if not seqs:
        return
    expected = seqs.start
    for event in audit.iter_stored_events(store, seqs.start, seqs.stop):
        if event.seq != expected:
            raise audit.AuditIntegrityError(f"event {expected} missing (gap)")
        if event.data is None or merkle.leaf_hash(event.data) != tree.levels[0][event.seq]:
            raise audit.AuditIntegrityError(
                f"event {event.seq}: content does not match its leaf hash; "
                "run `appliance audit verify`"
            )
        expected += 1
        yield event.data
    if expected != seqs.stop:
        raise audit.AuditIntegrityError(f"event {expected} missing (gap)")


class _HashingWriter:
    """Writes a file and its sha256 in one pass (a million proof lines are 1.4 GB)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self._fh: IO[bytes] = path.open("wb")
        self._buffer: list[bytes] = []
        self._buffered = 0

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        chunk = b"".join(self._buffer)
        self.digest.update(chunk)
        self._fh.write(chunk)
        self._buffer, self._buffered = [], 0

    def close(self) -> str:
        self._flush()
        self._fh.close()
        os.chmod(self.path, 0o600)
        return self.digest.hexdigest()


def inclusion_lines(tree: merkle.MerkleTree, seqs: range) -> Iterable[bytes]:
    """Canonical JSON of each inclusion proof against the full tree, built directly:
    the same bytes as `audit.canonical(proof.as_dict())`, a few microseconds each."""
    size = tree.size
    quoted = [[b'"' + h.hex().encode() + b'"' for h in level] for level in tree.levels]
    widths = [len(level) for level in tree.levels[:-1]]
    template = b'{"index":%d,"kind":"inclusion","leaf_hash":%s,"path":[%s],"tree_size":%d}\n'
    for i in seqs:
        path = [
            quoted[height][(i >> height) ^ 1]
            for height, width in enumerate(widths)
            if (i >> height) ^ 1 < width
        ]
        yield template % (i, quoted[0][i], b",".join(path), size)


def write_export(
    out_dir: Path,
    event_lines: Iterable[bytes],
    seqs: range,
    tree: merkle.MerkleTree,
    checkpoints: Sequence[audit.Checkpoint],
    signer: BoxSigner,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the export files for events `seqs` of `tree` (whose size is the last
    checkpoint's) and sign the manifest. Returns the manifest."""
    if not checkpoints or checkpoints[-1].size != tree.size:
        raise ExportError("the last checkpoint of an export must cover the whole tree")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    digests: dict[str, str] = {}

    events = _HashingWriter(out_dir / "events.jsonl")
    count = 0
    for count, line in enumerate(event_lines, start=1):  # noqa: B007 (used after the loop)
        events.write(line + b"\n")
    digests["events.jsonl"] = events.close()
    if count != len(seqs):
        raise ExportError(f"wrote {count} events for a range of {len(seqs)}")

    cps = _HashingWriter(out_dir / "checkpoints.jsonl")
    for checkpoint in checkpoints:
        cps.write(audit.canonical(checkpoint.as_dict()) + b"\n")
    digests["checkpoints.jsonl"] = cps.close()

    proofs = _HashingWriter(out_dir / "proofs.jsonl")
    for old, new in zip(checkpoints, checkpoints[1:], strict=False):
        proof = audit.ConsistencyProof(
            first=old.size,
            second=new.size,
            path=tree.consistency_proof(old.size, new.size),
            first_root=bytes.fromhex(old.root),
            second_root=bytes.fromhex(new.root),
        )
        proofs.write(audit.canonical(proof.as_dict()) + b"\n")
    for line in inclusion_lines(tree, seqs):
        proofs.write(line)
    digests["proofs.jsonl"] = proofs.close()

    key = out_dir / "box-public-key.asc"
    key.write_text(signer.export_public_key())
    digests["box-public-key.asc"] = hashlib.sha256(key.read_bytes()).hexdigest()

    manifest = {
        "format": FORMAT,
        "created": audit.format_time(utcnow()),
        "box_key_fingerprint": signer.fingerprint,
        "events": {
            "first_seq": seqs[0] if seqs else None,
            "last_seq": seqs[-1] if seqs else None,
            "count": len(seqs),
            **(extra or {}),
        },
        "tree_size": tree.size,
        "root": checkpoints[-1].root,
        "files": digests,
        "verify": "python3 verify.py <this folder>   (compliance/verify.py; gpg for signatures)",
    }
    raw = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (out_dir / "manifest.json").write_bytes(raw)
    (out_dir / "manifest.json.asc").write_text(signer.sign_detached(raw))
    return manifest
