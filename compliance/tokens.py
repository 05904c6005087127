"""Tokens: a candidate's link (signed, expiring, one candidate, one purpose, revocable)
and an integration account's API token.

Candidate token string: base64url (no padding) of
    version (1) | token id (16 random bytes) | purpose (1) | expiry, unix seconds (8)
    | HMAC-SHA256 over all of that (32)
with the HMAC key derived from the box's signing key. It names no person: the
candidate is found through the `candidate_tokens` row the id points to, and that
row decides revocation. A token whose signature fails never reaches the database.
The row's id doubles as the audit name of the candidate acting (`candidate:<id>`):
useless to anyone without the signature.

API token: "ehr_" + 256 random bits (base64url), shown once. Only its SHA-256 is
kept, in the integration account's `users.password_hash` as `token$<hex>` (so an
integration account has no password at all, and a new token replaces the old).
The token acts with the account's grants, scoped like an HR role by its
RoleAssignment; the account may hold the integration role only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from appliance.crypto import derive_key
from appliance.records import Candidate, CandidateToken, Role, Subject, User, utcnow
from appliance.store import Store
from compliance import audit
from compliance.accounts import (
    API_TOKEN_HASH_PREFIX,
    DutySeparationError,
    NotPermitted,
    check_separation,
    grants_of,
)
from compliance.actors import Actor, Grant

PURPOSES = {"interview": 1, "data_request": 2}
"""What a candidate token opens; one token, one purpose."""
MAX_TTL = timedelta(days=90)
TOKEN_VERSION = 1
_ID_BYTES = 16
_BODY = struct.Struct(">B16sBQ")
_MAC_BYTES = 32
API_TOKEN_PREFIX = "ehr_"  # noqa: S105 (a prefix that secret scanners can spot)
PURPOSE = "authentication"


class TokenError(Exception):
    """A token was refused; `zh` is the message for the candidate's page."""

    zh = "链接无效。请联系招聘人员。"


class BadTokenSignature(TokenError):
    """Not a token this box made, or changed in transit (malformed counts as this too)."""

    zh = "链接无效或不完整，请检查是否完整复制，或联系招聘人员重新发送。"

    def __init__(self) -> None:
        super().__init__(
            "the token is malformed or its signature does not match: "
            "it was not issued by this box or was changed"
        )


class TokenExpired(TokenError):
    zh = "链接已过期，请联系招聘人员重新发送。"

    def __init__(self) -> None:
        super().__init__("the token has expired; ask the recruiter for a new link")


class TokenRevoked(TokenError):
    zh = "链接已被撤销，请联系招聘人员。"

    def __init__(self) -> None:
        super().__init__("the token was revoked (or its candidate's data was erased)")


class WrongTokenPurpose(TokenError):
    zh = "此链接不能用于该操作。"

    def __init__(self, has: str, wanted: str) -> None:
        super().__init__(f"the token is for {has!r}, not {wanted!r}")


class BadApiToken(TokenError):
    zh = "API 令牌无效。"

    def __init__(self) -> None:
        super().__init__("the API token is unknown, revoked, or its account is disabled")


def _key(store: Store) -> bytes:
    return derive_key(store.keys.signing, b"enclave:candidate-token:v1")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _as_datetime(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def issue(
    store: Store,
    candidate_id: int,
    purpose: str,
    ttl: timedelta,
    created_by: Actor,
    now: datetime | None = None,
) -> str:
    """A new token for one candidate and one purpose; the issue is recorded in the audit log."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {sorted(PURPOSES)}")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be positive and at most {MAX_TTL.days} days")
    now = now or utcnow()
    with store.transaction() as db:
        candidate = db.get(Candidate, candidate_id)
        if candidate is None:
            raise LookupError(f"no candidate {candidate_id}")
        subject_id = candidate.subject_id
        row = new_token_row(candidate_id, purpose, now + ttl, created_by.user_id, now)
        db.add(row)
    audit.record(
        store,
        created_by,
        "token.issue",
        f"candidate_tokens:{row.id}",
        purpose,
        subject_ids=[subject_id],
    )
    return token_of(store, row)


def new_token_row(
    candidate_id: int,
    purpose: str,
    expires: datetime,
    created_by_id: int | None,
    now: datetime | None = None,
) -> CandidateToken:
    """A token row for the caller's own transaction (invitations write many at once with
    their sessions, issue 6); the caller records the issue in the audit log. Expiry is
    kept to the second: the token carries unix seconds."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {sorted(PURPOSES)}")
    return CandidateToken(
        id=secrets.token_bytes(_ID_BYTES).hex(),
        candidate_id=candidate_id,
        purpose=purpose,
        created_at=now or utcnow(),
        expires_at=_as_datetime(int(expires.timestamp())),
        created_by_id=created_by_id,
    )


def token_of(store: Store, row: CandidateToken) -> str:
    """The token string of a row. Never stored: rebuilt from the row and the box's key
    whenever it is needed (the outbox composes links at send time)."""
    expires = int(row.expires_at.timestamp())
    body = _BODY.pack(TOKEN_VERSION, bytes.fromhex(row.id), PURPOSES[row.purpose], expires)
    return _b64(body + hmac.new(_key(store), body, hashlib.sha256).digest())


def _verify(store: Store, token: str) -> tuple[str, str, int]:
    """(token id, purpose, expiry epoch) of a token whose signature holds."""
    try:
        raw = _unb64(token.strip())
    except (binascii.Error, ValueError):
        raise BadTokenSignature() from None
    if len(raw) != _BODY.size + _MAC_BYTES:
        raise BadTokenSignature()
    body, mac = raw[: _BODY.size], raw[_BODY.size :]
    if not hmac.compare_digest(mac, hmac.new(_key(store), body, hashlib.sha256).digest()):
        raise BadTokenSignature()
    version, raw_id, code, expires = _BODY.unpack(body)
    names = {v: k for k, v in PURPOSES.items()}
    if version != TOKEN_VERSION or code not in names:
        raise BadTokenSignature()
    return raw_id.hex(), names[code], expires


def token_id(store: Store, token: str) -> str:
    """The row id of a genuine token (to revoke it); raises BadTokenSignature otherwise."""
    return _verify(store, token)[0]


def resolve(
    store: Store,
    token: str,
    purpose: str,
    source_ip: str | None = None,
    now: datetime | None = None,
) -> Actor:
    """The candidate actor a token stands for, for `purpose`; refusals are audit-logged.

    Raises BadTokenSignature, WrongTokenPurpose, TokenExpired or TokenRevoked.
    Success is not logged here: what the candidate then reads or writes is, by the gate.
    """
    return _resolve(store, token, purpose, source_ip, now)


def resolve_any(
    store: Store, token: str, source_ip: str | None = None, now: datetime | None = None
) -> Actor:
    """Like `resolve`, for whatever purpose the token was issued (`Actor.token_purpose`):
    for the API, where the gate decides what that purpose allows."""
    return _resolve(store, token, None, source_ip, now)


def _resolve(
    store: Store, token: str, purpose: str | None, source_ip: str | None, now: datetime | None
) -> Actor:
    now = now or utcnow()
    try:
        tid, has, expires = _verify(store, token)
    except BadTokenSignature:
        _refused(store, "unknown", "candidate_tokens", source_ip)
        raise
    wanted = purpose or has
    try:
        if has != wanted:
            raise WrongTokenPurpose(has, wanted)
        if expires <= now.timestamp():
            raise TokenExpired()
        with store.session() as db:
            row = db.execute(
                select(CandidateToken, Subject.shredded_at)
                .join(Candidate, Candidate.id == CandidateToken.candidate_id)
                .join(Subject, Subject.id == Candidate.subject_id)
                .where(CandidateToken.id == tid)
            ).one_or_none()
        if row is None or row[0].revoked_at is not None or row[1] is not None:
            raise TokenRevoked()
        record: CandidateToken = row[0]
        if record.purpose != wanted:
            raise WrongTokenPurpose(record.purpose, wanted)
        if record.expires_at <= now:
            raise TokenExpired()
    except TokenError:
        _refused(store, f"candidate:{tid}", f"candidate_tokens:{tid}", source_ip)
        raise
    return Actor.candidate(tid, record.candidate_id, wanted, source_ip=source_ip)


def _refused(store: Store, name: str, entity: str, source_ip: str | None) -> None:
    actor = Actor(kind="candidate", name=name, source_ip=source_ip)
    audit.record(store, actor, "token.rejected", entity, PURPOSE, result="denied")


def revoke(
    store: Store, token_id: str, revoked_by: Actor | None = None, now: datetime | None = None
) -> bool:
    """Revoke one token by its row id; True if it was live. Recorded in the audit log."""
    by = revoked_by or Actor(kind="system", name="system")
    with store.transaction() as db:
        row = db.get(CandidateToken, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = now or utcnow()
        subject_id = db.scalars(
            select(Candidate.subject_id).where(Candidate.id == row.candidate_id)
        ).one_or_none()
    audit.record(
        store,
        by,
        "token.revoke",
        f"candidate_tokens:{token_id}",
        PURPOSE,
        subject_ids=[subject_id] if subject_id else [],
    )
    return True


def revoke_for_candidate(store: Store, candidate_id: int, revoked_by: Actor | None = None) -> int:
    """Revoke every live token of one candidate (withdrawn consent, erasure); returns how many."""
    with store.session() as db:
        ids = db.scalars(
            select(CandidateToken.id).where(
                CandidateToken.candidate_id == candidate_id, CandidateToken.revoked_at.is_(None)
            )
        ).all()
    return sum(revoke(store, tid, revoked_by) for tid in ids)


# --- integration accounts' API tokens ---------------------------------------------------


def _require_security_admin(actor: Actor) -> None:
    """Integration accounts' credentials are the security admin's to hand out (MLPS-3)."""
    if actor.kind != "system" and Role.SECURITY_ADMIN not in actor.roles:
        raise NotPermitted()


def _api_hash(token: str) -> str:
    return API_TOKEN_HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_api_token(store: Store, user_id: int, issued_by: Actor) -> str:
    """A new API token for an integration account (replacing any old one); shown once."""
    _require_security_admin(issued_by)
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as db:
        user = db.get(User, user_id)
        if user is None:
            raise LookupError(f"no user {user_id}")
        roles = {a.role for a in user.roles}
        if roles != {Role.INTEGRATION}:
            raise ValueError(
                f"user {user_id} is not an integration account (holds {sorted(roles)}); "
                "API tokens are for accounts whose only role is integration"
            )
        user.password_hash = _api_hash(token)
        user.totp_secret = None
    audit.record(store, issued_by, "api_token.issue", f"users:{user_id}", PURPOSE)
    return token


def revoke_api_token(store: Store, user_id: int, revoked_by: Actor) -> None:
    """The account's token stops working at once (its stored hash is replaced)."""
    _require_security_admin(revoked_by)
    with store.transaction() as db:
        db.execute(
            update(User)
            .where(User.id == user_id, User.password_hash.startswith(API_TOKEN_HASH_PREFIX))
            .values(password_hash=API_TOKEN_HASH_PREFIX + "revoked")
        )
    audit.record(store, revoked_by, "api_token.revoke", f"users:{user_id}", PURPOSE)


def resolve_api_token(store: Store, token: str, source_ip: str | None = None) -> Actor:
    """The integration account a bearer token belongs to, as an actor with its grants.

    Raises BadApiToken (and logs the refusal) for an unknown token, a disabled account,
    or an account that holds anything but the integration role.
    """
    token = token.strip()
    user_id: int | None = None
    username: str | None = None
    grants: tuple[Grant, ...] = ()
    if token.startswith(API_TOKEN_PREFIX) and len(token) < 200:
        with store.session() as db:
            user = db.scalars(
                select(User).where(User.password_hash == _api_hash(token))
            ).one_or_none()
            if user is not None and user.active:
                user_id, username = user.id, user.username
                grants = grants_of(db, user.id)
    if user_id is None or username is None:
        actor = Actor(kind="staff", name="unknown", source_ip=source_ip)
        audit.record(store, actor, "api_token.rejected", "users", PURPOSE, result="denied")
        raise BadApiToken()
    roles = {g.role for g in grants}
    try:
        check_separation(roles)
        if roles != {Role.INTEGRATION}:
            raise DutySeparationError(
                "an API token acts only for an account whose only role is integration",
                "API 令牌只能用于仅拥有集成角色的账号",
            )
    except DutySeparationError:
        actor = Actor.staff(username, user_id, grants, source_ip=source_ip)
        audit.record(
            store, actor, "api_token.rejected", f"users:{user_id}", PURPOSE, result="denied"
        )
        raise BadApiToken() from None
    return Actor.staff(username, user_id, grants, source_ip=source_ip, mfa=True)
