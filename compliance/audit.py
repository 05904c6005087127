"""The audit log: append-only events, the leaves of an RFC 9162 Merkle tree.

`record` is the one way an event is written. It runs in its own short
`BEGIN IMMEDIATE` transaction, so sequence numbers are gap-free and two
requests never race for the same one, and it is called *before* personal
data is handed out: if the event cannot be written, the read fails (fail
closed, PIPL Art. 51).

An event's bytes are its canonical JSON (UTF-8, sorted keys, no spaces): the
exact line `events.jsonl` holds on export. Leaf hash: SHA-256(0x00 || bytes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text

from appliance.records import AuditEvent, utcnow
from appliance.store import Store
from compliance.actors import Actor

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
    at = utcnow()
    # Own short transaction holding the write lock from BEGIN: gap-free, race-free seq.
    with store.engine.connect().execution_options(begin="IMMEDIATE") as conn, conn.begin():
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
    return int(seq)
