"""The audit log: append-only events, the leaves of an RFC 9162 Merkle tree.

`record` is the one way an event is written. It runs in its own short
`BEGIN IMMEDIATE` transaction, so sequence numbers are gap-free and two
requests never race for the same one, and it is called *before* personal
data is handed out: if the event cannot be written, the read fails (fail
closed, PIPL Art. 51).

An event's bytes are its canonical JSON (UTF-8, sorted keys, no spaces): the
exact line `events.jsonl` holds on export. Leaf hash: SHA-256(0x00 || bytes).

Checkpoints (signed tree heads) seal the log: after `record`, once
`checkpoint_every` events are unsealed, or `checkpoint_minutes` have passed
since the last checkpoint with any event unsealed, the size, root (hex) and
time are signed with the box's GPG key (`compliance.signing`). The root is
kept up to date incrementally (a `merkle.Frontier` per store and process), so
a checkpoint hashes only the events since the previous one. The maintenance
job calls `checkpoint_if_due` so a quiet box seals its last events too, and
an export calls `checkpoint_now` so it always ends on a checkpoint.

`verify_live` walks the whole log and names the first entry that does not
hold. Events after the newest checkpoint are checked against their own leaf
hashes only: until a checkpoint signs them, someone able to rewrite the
database could rewrite them together with their hashes. Verification says
how many such unsealed events there are.

Retention: nothing is ever pruned. Settings refuse a retention of less than
184 days (MLPS-3), and the log keeps every event for longer than that: a
pruned prefix would break every inclusion and consistency proof and every
verification of the signed checkpoints, so retention of the audit log is
"at least", never "at most". Events hold ids and field names only, no personal
values, so keeping them does not keep personal data beyond its own retention.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, insert, select, text, type_coerce
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from appliance.errors import ApplianceError
from appliance.records import AuditCheckpoint, AuditEvent, BoxInfo, utcnow
from appliance.settings import AuditSettings, Settings
from appliance.store import Store
from compliance import merkle
from compliance.actors import Actor
from compliance.signing import BoxSigner, box_signer

log = logging.getLogger(__name__)

RESULTS = ("allowed", "denied", "failed")


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_dict(
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    subject_ids: Sequence[str],
    entity: str,
    fields: Sequence[str],
    purpose: str,
    source_ip: str | None,
    result: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": format_time(at),
        "actor": actor,
        "role": role,
        "action": action,
        "subject_ids": list(subject_ids),
        "entity": entity,
        "fields": list(fields),
        "purpose": purpose,
        "source_ip": source_ip,
        "result": result,
    }


def event_bytes(event: AuditEvent) -> bytes:
    """The canonical bytes of a stored event, rebuilt from its columns."""
    return canonical(
        event_dict(
            event.seq,
            event.at,
            event.actor,
            event.role,
            event.action,
            event.subject_ids,
            event.entity,
            event.fields,
            event.purpose,
            event.source_ip,
            event.result,
        )
    )


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def record(
    store: Store,
    actor: Actor,
    action: str,
    entity: str,
    purpose: str,
    result: str = "allowed",
    subject_ids: Sequence[str] = (),
    fields: Sequence[str] = (),
) -> int:
    """Append one event; returns its sequence number. Values never go in, only names."""
    if result not in RESULTS:
        raise ValueError(f"result must be one of {RESULTS}")
    # Own short transaction holding the write lock from BEGIN: gap-free, race-free seq,
    # and times that never go backwards as seq goes up (exports select ranges by time).
    with store.engine.connect().execution_options(begin="IMMEDIATE") as conn, conn.begin():
        at = utcnow()
        seq = conn.execute(text("SELECT coalesce(max(seq) + 1, 0) FROM audit_events")).scalar_one()
        body = event_dict(
            seq,
            at,
            actor.name,
            actor.role_label,
            action,
            sorted(subject_ids),
            entity,
            sorted(fields),
            purpose,
            actor.source_ip,
            result,
        )
        conn.execute(
            insert(AuditEvent).values(
                seq=seq,
                at=at,
                actor=actor.name,
                role=actor.role_label,
                action=action,
                subject_ids=body["subject_ids"],
                entity=entity,
                fields=body["fields"],
                purpose=purpose,
                source_ip=actor.source_ip,
                result=result,
                leaf_hash=leaf_hash(canonical(body)),
            )
        )
    _checkpoint_after_record(store, int(seq))
    return int(seq)


# --- checkpoints --------------------------------------------------------------------------


class AuditIntegrityError(ApplianceError):
    """The stored log does not hold together (a gap, or leaf hashes that do not match);
    `appliance audit verify` names the first bad entry."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head. The signature covers canonical {"root","size","time"}."""

    size: int
    root: str
    time: str
    signature: str

    def signed_bytes(self) -> bytes:
        return checkpoint_bytes(self.size, self.root, self.time)

    def as_dict(self) -> dict[str, Any]:
        """The `checkpoints.jsonl` line of an export."""
        return {
            "root": self.root,
            "signature": self.signature,
            "size": self.size,
            "time": self.time,
        }


def checkpoint_bytes(size: int, root: str, time: str) -> bytes:
    return canonical({"root": root, "size": size, "time": time})


class _StoreState:
    """Per store and process: the audit settings and the tree's frontier at the last
    checkpoint this process made (so the next one hashes only the new events)."""

    def __init__(self) -> None:
        self.settings = AuditSettings()
        self.frontier = merkle.Frontier()
        self.lock = threading.Lock()


_states: weakref.WeakKeyDictionary[Store, _StoreState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def _state(store: Store) -> _StoreState:
    with _states_lock:
        state = _states.get(store)
        if state is None:
            state = _states[store] = _StoreState()
        return state


def configure(store: Store, settings: AuditSettings | Settings) -> None:
    """Use these checkpoint settings for `store` (defaults otherwise: 1000 events, 10 min).
    The web app and the workers call this once when they open their store."""
    _state(store).settings = settings.audit if isinstance(settings, Settings) else settings


def signer_for(store: Store) -> BoxSigner:
    """The box's GPG key (made on first use, its user id naming the box id)."""
    with store.session() as session:
        info = session.get(BoxInfo, 1)
        box_id = info.box_id if info is not None else None
    return box_signer(store.data_dir, store.keys, box_id)


def _row_to_checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        size=row.size, root=row.root, time=format_time(row.at), signature=row.signature
    )


def list_checkpoints(store: Store) -> list[Checkpoint]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).all()
    return [_row_to_checkpoint(r) for r in rows]


def latest_checkpoint(store: Store) -> Checkpoint | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
        ).first()
    return None if row is None else _row_to_checkpoint(row)


def _log_size(conn: Connection) -> int:
    return int(
        conn.execute(text("SELECT coalesce(max(seq) + 1, 0) FROM audit_events")).scalar_one()
    )


def _leaf_hashes(conn: Connection, start: int, stop: int) -> list[bytes]:
    """Stored leaf hashes of events start..stop-1; raises on a gap."""
    hashes = list(
        conn.execute(
            select(AuditEvent.leaf_hash)
            .where(AuditEvent.seq >= start, AuditEvent.seq < stop)
            .order_by(AuditEvent.seq)
        ).scalars()
    )
    if len(hashes) != stop - start:
        seqs = conn.execute(
            select(AuditEvent.seq)
            .where(AuditEvent.seq >= start, AuditEvent.seq < stop)
            .order_by(AuditEvent.seq)
        ).scalars()
        missing = next(
            (want for want, got in zip(range(start, stop), seqs, strict=False) if want != got), None
        )
        missing = start + len(hashes) if missing is None else missing
        raise AuditIntegrityError(
            f"event {missing} missing (gap); run `appliance audit verify` for the full check"
        )
    return hashes


def leaf_hashes(store: Store, size: int) -> list[bytes]:
    """The stored leaf hashes of the first `size` events, in order."""
    with store.engine.connect() as conn:
        return _leaf_hashes(conn, 0, size)


def checkpoint_now(
    store: Store, settings: AuditSettings | Settings | None = None
) -> Checkpoint | None:
    """Sign a checkpoint covering every event now in the log (or return the newest one if it
    already does). None only while the log is empty."""
    if settings is not None:
        configure(store, settings)
    state = _state(store)
    with state.lock:
        with store.engine.connect() as conn:
            size = _log_size(conn)
            latest = conn.execute(
                select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
            ).first()
            if size == 0 or (latest is not None and latest.size >= size):
                return None if latest is None else _row_to_checkpoint(latest)
            frontier = state.frontier if state.frontier.size <= size else merkle.Frontier()
            frontier = frontier.copy()
            frontier.extend(_leaf_hashes(conn, frontier.size, size))
        made = _sign_checkpoint(store, size, frontier.root().hex())
        state.frontier = frontier
    return made


def _sign_checkpoint(store: Store, size: int, root: str) -> Checkpoint:
    at = utcnow()
    time = format_time(at)
    signature = signer_for(store).sign_detached(checkpoint_bytes(size, root, time))
    with store.engine.begin() as conn:
        # Another process may have sealed the same size a moment ago: theirs stands.
        conn.execute(
            sqlite_insert(AuditCheckpoint)
            .values(size=size, root=root, at=at, signature=signature)
            .on_conflict_do_nothing(index_elements=["size"])
        )
        row = conn.execute(select(AuditCheckpoint).where(AuditCheckpoint.size == size)).one()
    return _row_to_checkpoint(row)


def checkpoint_if_due(
    store: Store, settings: AuditSettings | Settings | None = None
) -> Checkpoint | None:
    """Sign a checkpoint when the settings say one is due; the maintenance job's entry."""
    if settings is not None:
        configure(store, settings)
    if _due(store, _state(store).settings, None):
        return checkpoint_now(store)
    return None


def _due(store: Store, settings: AuditSettings, last_seq: int | None) -> bool:
    with store.engine.connect() as conn:
        size = _log_size(conn) if last_seq is None else last_seq + 1
        latest = conn.execute(
            select(AuditCheckpoint.size, AuditCheckpoint.at)
            .order_by(AuditCheckpoint.size.desc())
            .limit(1)
        ).first()
        sealed = 0 if latest is None else latest.size
        if size <= sealed:
            return False
        if size - sealed >= settings.checkpoint_every:
            return True
        if latest is not None:
            since: datetime = latest.at
        else:
            since = conn.execute(select(AuditEvent.at).where(AuditEvent.seq == 0)).scalar_one()
    return utcnow() - since >= timedelta(minutes=settings.checkpoint_minutes)


def _checkpoint_after_record(store: Store, seq: int) -> None:
    """The event is committed; sealing it may wait for the next event or the maintenance
    job if gpg fails now, so a failure is logged, not raised into the caller's read."""
    try:
        if _due(store, _state(store).settings, seq):
            checkpoint_now(store)
    except Exception:
        log.exception("audit checkpoint after event %d failed; it will be retried", seq)


# --- reading events -----------------------------------------------------------------------

_EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.role,
    AuditEvent.action,
    type_coerce(AuditEvent.subject_ids, String).label("subject_ids"),
    AuditEvent.entity,
    type_coerce(AuditEvent.fields, String).label("fields"),
    AuditEvent.purpose,
    AuditEvent.source_ip,
    AuditEvent.result,
    AuditEvent.leaf_hash,
)


@dataclass(frozen=True)
class StoredEvent:
    """One stored row: its seq, its canonical bytes rebuilt from the columns (None when a
    column cannot be read back) and the leaf hash stored beside it."""

    seq: int
    data: bytes | None
    stored_leaf_hash: bytes
    error: str | None = None


def _rebuild(row: Any) -> StoredEvent:
    try:
        data = canonical(
            event_dict(
                row.seq,
                row.at,
                row.actor,
                row.role,
                row.action,
                json.loads(row.subject_ids),
                row.entity,
                json.loads(row.fields),
                row.purpose,
                row.source_ip,
                row.result,
            )
        )
    except (TypeError, ValueError, AttributeError) as exc:
        return StoredEvent(row.seq, None, row.leaf_hash, f"{type(exc).__name__}")
    return StoredEvent(row.seq, data, row.leaf_hash)


def iter_stored_events(
    store: Store, start: int = 0, stop: int | None = None
) -> Iterator[StoredEvent]:
    """Events start..stop-1 in seq order, rebuilt from their columns, streamed."""
    query = select(*_EVENT_COLUMNS).where(AuditEvent.seq >= start).order_by(AuditEvent.seq)
    if stop is not None:
        query = query.where(AuditEvent.seq < stop)
    with store.engine.connect() as conn:
        for row in conn.execution_options(yield_per=5000).execute(query):
            yield _rebuild(row)


# --- verification of the live log ---------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    """Events checked (up to the first problem)."""
    checkpoints: int
    """Checkpoints checked (root and signature)."""
    problem: str | None = None
    """The first bad entry, e.g. "event 17: content does not match its leaf hash"."""
    seq: int | None = None
    checkpoint_size: int | None = None
    unsealed: int = 0
    """Events after the newest checkpoint: checked against their own hashes only."""
    fingerprint: str = ""

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED: {self.problem}"
        text = (
            f"ok: {self.events} events and {self.checkpoints} signed checkpoints hold "
            f"(box key {self.fingerprint})"
        )
        if self.unsealed:
            text += f"; {self.unsealed} newest events are not yet under a signed checkpoint"
        return text


def verify_live(store: Store) -> VerifyResult:
    """Walk the whole log in seq order: every event against its leaf hash, the sequence
    gap-free, every checkpoint's root over the recomputed leaves and its signature.
    Returns ok, or the first bad entry."""
    signer = signer_for(store)
    checkpoints = list_checkpoints(store)
    # gpg runs in its own process: check the signatures a few at a time while we hash.
    with ThreadPoolExecutor(max_workers=4) as pool:
        signatures = pool.map(
            lambda cp: signer.verify_detached(cp.signed_bytes(), cp.signature), checkpoints
        )
        signature_ok = dict(zip((cp.size for cp in checkpoints), signatures, strict=True))

    def fail(problem: str, seq: int | None = None, size: int | None = None) -> VerifyResult:
        return VerifyResult(
            ok=False,
            events=expected,
            checkpoints=checked,
            problem=problem,
            seq=seq,
            checkpoint_size=size,
            fingerprint=signer.fingerprint,
        )

    frontier = merkle.Frontier()
    expected = checked = 0
    pending = iter(checkpoints)
    upcoming = next(pending, None)
    for event in iter_stored_events(store):
        if event.seq != expected:
            if event.seq > expected:
                return fail(f"event {expected} missing (gap before event {event.seq})", expected)
            return fail(f"event {event.seq}: out of order", event.seq)
        if event.data is None:
            return fail(
                f"event {event.seq}: stored columns cannot be read back ({event.error})",
                event.seq,
            )
        if leaf_hash(event.data) != event.stored_leaf_hash:
            return fail(f"event {event.seq}: content does not match its leaf hash", event.seq)
        frontier.append(event.stored_leaf_hash)
        expected += 1
        while upcoming is not None and upcoming.size <= expected:
            problem = _check_checkpoint(upcoming, frontier, signature_ok, signer.fingerprint)
            if problem:
                return fail(problem, size=upcoming.size)
            checked += 1
            upcoming = next(pending, None)
    if upcoming is not None:
        return fail(
            f"checkpoint size {upcoming.size}: the log holds only {expected} events "
            "(events removed from its end)",
            size=upcoming.size,
        )
    sealed = checkpoints[-1].size if checkpoints else 0
    return VerifyResult(
        ok=True,
        events=expected,
        checkpoints=checked,
        unsealed=expected - sealed,
        fingerprint=signer.fingerprint,
    )


def _check_checkpoint(
    checkpoint: Checkpoint,
    frontier: merkle.Frontier,
    signature_ok: dict[int, bool],
    fingerprint: str,
) -> str | None:
    if checkpoint.size != frontier.size:
        return f"checkpoint size {checkpoint.size}: size is not a point in the log"
    if checkpoint.root != frontier.root().hex():
        return (
            f"checkpoint size {checkpoint.size}: root mismatch (the first "
            f"{checkpoint.size} events are not the ones it signed)"
        )
    if not signature_ok[checkpoint.size]:
        return (
            f"checkpoint size {checkpoint.size}: signature does not verify with the box key "
            f"{fingerprint}"
        )
    return None


# --- proofs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof of event `index` in the tree of `tree_size` events."""

    index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    root: bytes

    def verify(self) -> bool:
        return merkle.verify_inclusion(
            self.leaf_hash, self.index, self.tree_size, self.path, self.root
        )

    def as_dict(self) -> dict[str, Any]:
        """The `proofs.jsonl` line of an export."""
        return {
            "index": self.index,
            "kind": "inclusion",
            "leaf_hash": self.leaf_hash.hex(),
            "path": [h.hex() for h in self.path],
            "tree_size": self.tree_size,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof: tree `second` is tree `first` with events appended."""

    first: int
    second: int
    path: list[bytes]
    first_root: bytes = field(repr=False)
    second_root: bytes = field(repr=False)

    def verify(self) -> bool:
        return merkle.verify_consistency(
            self.first, self.second, self.first_root, self.second_root, self.path
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "kind": "consistency",
            "path": [h.hex() for h in self.path],
            "second": self.second,
        }


def _checkpoint_of_size(store: Store, size: int | None) -> Checkpoint:
    if size is None:
        found = latest_checkpoint(store)
    else:
        found = next((c for c in list_checkpoints(store) if c.size == size), None)
    if found is None:
        raise AuditIntegrityError(
            "no signed checkpoint" + ("" if size is None else f" of size {size}")
        )
    return found


def inclusion_proof(store: Store, seq: int, checkpoint_size: int | None = None) -> InclusionProof:
    """Prove event `seq` is in the signed checkpoint of that size (default: the newest)."""
    checkpoint = _checkpoint_of_size(store, checkpoint_size)
    tree = merkle.MerkleTree(leaf_hashes(store, checkpoint.size))
    if tree.root().hex() != checkpoint.root:
        raise AuditIntegrityError(f"checkpoint size {checkpoint.size}: root mismatch")
    return InclusionProof(
        index=seq,
        tree_size=checkpoint.size,
        leaf_hash=tree.levels[0][seq],
        path=tree.inclusion_proof(seq),
        root=bytes.fromhex(checkpoint.root),
    )


def consistency_proof(store: Store, first: int, second: int | None = None) -> ConsistencyProof:
    """Prove the checkpoint of size `second` (default: newest) extends the one of `first`."""
    old = _checkpoint_of_size(store, first)
    new = _checkpoint_of_size(store, second)
    tree = merkle.MerkleTree(leaf_hashes(store, new.size))
    return ConsistencyProof(
        first=old.size,
        second=new.size,
        path=tree.consistency_proof(old.size, new.size),
        first_root=bytes.fromhex(old.root),
        second_root=bytes.fromhex(new.root),
    )


# --- search (the auditor console) ---------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    start: datetime | None = None
    end: datetime | None = None
    actor: str | None = None
    subject_id: str | None = None
    action: str | None = None
    result: str | None = None
    before_seq: int | None = None
    """Paging: only events older than this seq."""
    limit: int = 100


def search_events(store: Store, query: EventQuery) -> list[AuditEvent]:
    """Newest first. Exact matches on actor, action, result and subject id."""
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(max(1, min(query.limit, 1000)))
    if query.start is not None:
        stmt = stmt.where(AuditEvent.at >= query.start)
    if query.end is not None:
        stmt = stmt.where(AuditEvent.at < query.end)
    if query.actor:
        stmt = stmt.where(AuditEvent.actor == query.actor)
    if query.action:
        stmt = stmt.where(AuditEvent.action == query.action)
    if query.result:
        stmt = stmt.where(AuditEvent.result == query.result)
    if query.before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < query.before_seq)
    if query.subject_id:
        stmt = stmt.where(
            text(
                "EXISTS (SELECT 1 FROM json_each(audit_events.subject_ids) "
                "WHERE json_each.value = :subject_id)"
            ).bindparams(subject_id=query.subject_id)
        )
    with store.session() as session:
        return list(session.scalars(stmt))
