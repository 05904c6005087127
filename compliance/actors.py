"""Who is acting: a staff member (with roles scoped to org subtrees), a candidate through
their token, or the system (a job). The gate decides from this alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.records import Role

ADMIN_DUTIES = frozenset({Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN})
"""Separate duties (MLPS-3 "three-role separation"): no account holds two of them."""


@dataclass(frozen=True)
class Grant:
    role: Role
    org_path: str
    """The org unit's materialised path ("/1/4/"): the role applies to this subtree."""


@dataclass(frozen=True)
class Actor:
    kind: str
    """staff, candidate or system."""
    name: str
    """Username, `candidate:<token id>` or `job:<rq job id>`: what the audit log names."""
    user_id: int | None = None
    grants: tuple[Grant, ...] = ()
    candidate_id: int | None = None
    """For candidates: the one candidate their token opens."""
    token_purpose: str | None = None
    source_ip: str | None = None
    mfa: bool = False
    roles: frozenset[Role] = field(default=frozenset())

    @classmethod
    def staff(
        cls,
        username: str,
        user_id: int,
        grants: tuple[Grant, ...],
        source_ip: str | None = None,
        mfa: bool = False,
    ) -> Actor:
        return cls(
            kind="staff",
            name=username,
            user_id=user_id,
            grants=grants,
            source_ip=source_ip,
            mfa=mfa,
            roles=frozenset(g.role for g in grants),
        )

    @classmethod
    def candidate(
        cls, token_id: str, candidate_id: int, purpose: str, source_ip: str | None = None
    ) -> Actor:
        return cls(
            kind="candidate",
            name=f"candidate:{token_id}",
            candidate_id=candidate_id,
            token_purpose=purpose,
            source_ip=source_ip,
        )

    @classmethod
    def system(cls, job_id: str) -> Actor:
        return cls(kind="system", name=f"job:{job_id}")

    @property
    def role_label(self) -> str:
        """The role the audit event names (several roles: joined, sorted)."""
        if self.kind != "staff":
            return self.kind
        return "+".join(sorted(r.value for r in self.roles)) or "none"
