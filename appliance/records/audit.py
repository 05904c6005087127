"""The audit log's rows: append-only events (Merkle leaves) and signed checkpoints.

Events hold ids, field names, actor, purpose and result, never values
(ARCHITECTURE.md "Access and audit"). The canonical bytes of an event, its
Merkle leaf, are built from these columns by `compliance.audit`; a column
changed in the database no longer matches the signed tree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.records.base import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    """0-based leaf index in the Merkle tree; assigned by the audit log, gap-free."""
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120), index=True)
    """A staff username, `candidate:<token id>`, `job:<rq job id>` or `system`."""
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(40), index=True)
    subject_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The people whose data was touched (one for a person's read; all of a batch job's)."""
    entity: Mapped[str] = mapped_column(String(80))
    """`candidates:42`, `recordings:7`, or a table name for a list or search."""
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str] = mapped_column(String(80))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16), index=True)
    """allowed, denied or failed."""
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256(0x00 || canonical event bytes), stored to build proofs without rehashing."""


class AuditCheckpoint(Base):
    """A signed tree head: (size, root, time) signed with the box's GPG key."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(unique=True)
    root: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 root of the first `size` events."""
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    signature: Mapped[str] = mapped_column(Text)
    """ASCII-armoured detached OpenPGP signature over canonical {"root","size","time"}."""


class CandidateToken(Base):
    """A candidate's access: signed, expiring, one candidate, one purpose, revocable.

    The token string carries only this row's id, the purpose and the expiry, signed;
    never a name or phone (no personal data in a token or URL).
    """

    __tablename__ = "candidate_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    candidate_id: Mapped[int] = mapped_column(index=True)
    purpose: Mapped[str] = mapped_column(String(24))
    """interview or data_request."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None]
