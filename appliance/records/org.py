"""The hospital's org tree and its staff accounts.

Staff accounts are not crypto-shredded subjects: the audit trail must keep
naming the person who acted ("a named human makes every decision").
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.records.base import Base, UTCDateTime, utcnow


class OrgKind(enum.StrEnum):
    HQ = "hq"
    BRANCH = "branch"
    DEPARTMENT = "department"


class Role(enum.StrEnum):
    """ARCHITECTURE.md "Access and audit"; what each may do lives in compliance's policy."""

    SYSTEM_ADMIN = "system_admin"
    SECURITY_ADMIN = "security_admin"
    AUDIT_ADMIN = "audit_admin"
    AUDITOR = "auditor"
    HR_ADMIN = "hr_admin"
    HR = "hr"
    INTERVIEWER = "interviewer"
    DPO = "dpo"
    INTEGRATION = "integration"


class OrgUnit(Base):
    """HQ, branch or department. `path` ("/1/4/9/") makes a subtree one LIKE query."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))
    kind: Mapped[OrgKind] = mapped_column(Enum(OrgKind, native_enum=False, length=16))
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    path: Mapped[str] = mapped_column(String(400), index=True, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])

    def place_under(self, parent: OrgUnit | None) -> None:
        """Set parent and path; call after the unit has an id (flush first)."""
        self.parent = parent
        self.path = f"{parent.path if parent else '/'}{self.id}/"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    auth_source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    """local (Argon2id hash here) or ldap (bind against the directory)."""
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    """Raised at sign-out: every session cookie issued before it stops working, copies too."""
    totp_last_step: Mapped[int | None]
    """The last 30-second TOTP step accepted: a code is good once (RFC 6238 section 5.2)."""

    roles: Mapped[list[RoleAssignment]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )


class RoleAssignment(Base):
    """A role held in an org unit's subtree (HR of the east branch, HR admin at HQ)."""

    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("user_id", "role", "org_unit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=32))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="roles")
    org_unit: Mapped[OrgUnit] = relationship()
