"""Subjects (candidates and employees): the people whose data is personal.

Every row holding personal fields carries `subject_id`: the subject whose
data key seals those fields, and whose key's destruction shreds them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Enum, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.personal import PersonalField, normalise_email, normalise_phone
from appliance.records.base import Base, UTCDateTime, new_uuid, utcnow

if TYPE_CHECKING:
    from appliance.records.hiring import Application


class SubjectKind(enum.StrEnum):
    CANDIDATE = "candidate"
    EMPLOYEE = "employee"


class Subject(Base):
    """One person's identity for keys: created with a data key, shredded by destroying it."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    kind: Mapped[SubjectKind] = mapped_column(Enum(SubjectKind, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    shredded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Candidate(Base):
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), unique=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    name_sealed: Mapped[bytes | None] = mapped_column("name", LargeBinary)
    phone_sealed: Mapped[bytes | None] = mapped_column("phone", LargeBinary)
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    email_sealed: Mapped[bytes | None] = mapped_column("email", LargeBinary)
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)
    address_sealed: Mapped[bytes | None] = mapped_column("address", LargeBinary)

    name = PersonalField("name_sealed")
    phone = PersonalField("phone_sealed", "phone_index", normalise_phone)
    email = PersonalField("email_sealed", "email_index", normalise_email)
    id_number = PersonalField("id_number_sealed")
    address = PersonalField("address_sealed")

    subject: Mapped[Subject] = relationship()
    applications: Mapped[list[Application]] = relationship(back_populates="candidate")


class Employee(Base):
    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), unique=True)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    employee_no: Mapped[str] = mapped_column(String(40), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    hired_on: Mapped[datetime | None] = mapped_column(UTCDateTime())

    name_sealed: Mapped[bytes | None] = mapped_column("name", LargeBinary)
    phone_sealed: Mapped[bytes | None] = mapped_column("phone", LargeBinary)
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    email_sealed: Mapped[bytes | None] = mapped_column("email", LargeBinary)
    email_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)

    name = PersonalField("name_sealed")
    phone = PersonalField("phone_sealed", "phone_index", normalise_phone)
    email = PersonalField("email_sealed", "email_index", normalise_email)
    id_number = PersonalField("id_number_sealed")

    subject: Mapped[Subject] = relationship()


class Referral(Base):
    """Who referred a candidate: a staff member, or a channel (job fair, school)."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    referrer_employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    channel: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    note_sealed: Mapped[bytes | None] = mapped_column("note", LargeBinary)
    note = PersonalField("note_sealed")
