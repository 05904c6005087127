"""Interview invitations and the outbox that delivers them (issue 6, item 5).

Neither table holds personal data: an invitation names an application, an interview
session and a candidate token by id; an outbox message names its invitation, channel
and state. The e-mail or SMS itself is composed at send time by the outbox worker,
which reads the candidate's name, e-mail and phone through the gate, so no address,
phone number or name sits in these rows, in Redis or on disk (ARCHITECTURE.md).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.records.base import Base, UTCDateTime, utcnow
from appliance.records.hiring import Application
from appliance.records.interviews import InterviewSession


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class MessageKind(enum.StrEnum):
    INVITATION = "invitation"
    REMINDER = "reminder"
    RESCHEDULED = "rescheduled"


class MessageStatus(enum.StrEnum):
    """queued -> sending -> sent, or -> failed (retried by the worker, or by a person)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Invitation(Base):
    """One candidate invited to one interview session, with the link's token.

    `window_*` is what HR allowed; `slot_*` the time the candidate is expected, which they
    may move within the window (`sequence` counts the moves, the ICS SEQUENCE).
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("interview_sessions.id"), unique=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("candidate_tokens.id"), unique=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime())
    slot_end: Mapped[datetime] = mapped_column(UTCDateTime())
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    sequence: Mapped[int] = mapped_column(default=0)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    application: Mapped[Application] = relationship()
    session: Mapped[InterviewSession] = relationship()
    messages: Mapped[list[OutboxMessage]] = relationship(back_populates="invitation")


class OutboxMessage(Base):
    """One e-mail or SMS to send, and how sending it went (what the portal shows).

    `idempotency_key` is sent with every try of this message (SMS: the `Idempotency-Key`
    header; e-mail: the Message-ID), so a gateway that took a try whose answer was lost
    does not deliver it twice; `status = sent` stops the worker from trying again.
    `last_error` names the failure (SMTP code, HTTP status), never an address or a name.
    """

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    invitation_id: Mapped[int] = mapped_column(ForeignKey("invitations.id"), index=True)
    channel: Mapped[Channel] = mapped_column(Enum(Channel, native_enum=False, length=8))
    kind: Mapped[MessageKind] = mapped_column(Enum(MessageKind, native_enum=False, length=16))
    status: Mapped[MessageStatus] = mapped_column(
        Enum(MessageStatus, native_enum=False, length=16), default=MessageStatus.QUEUED, index=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(32), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    invitation: Mapped[Invitation] = relationship(back_populates="messages")
