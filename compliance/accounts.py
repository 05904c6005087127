"""Staff accounts: passwords, sign-in with a second factor, lockout, and separated duties.

MLPS level 3 (GB/T 22239-2019 8.1.4.1) asks for identification and authentication
with two factors, a password policy, lockout after repeated failures and login
timeouts; 8.1.4.2 asks for separate system, security and audit administrators.

Sign-in (`authenticate`) takes username, password and TOTP code together, in one
step, and gives one answer for an unknown or disabled username, a wrong password, a
wrong code and a missing code, so the form is no oracle for any one of them; each
wrong password or code counts towards the lockout. A locked account says so (people
must know to wait). Only behind the right password are the rest told apart: no second
factor enrolled yet, an integration account (API token only), duties that may not be
combined.

TOTP is required of every account that signs in here: every staff role either sees
personal data or changes settings or logs (MLPS-3 asks for two factors), and an
account with no role yet is no exception. The fixed demo code is accepted only when
both the box (BoxInfo.demo) and the settings (demo = true) say demo.

Separation of duties holds twice: `assign_role` refuses a forbidden combination,
and `check_separation` runs again at every sign-in, every request (webapp.auth's
`load_actor`) and every API token use, so a row written around `assign_role` (by
hand, by an old backup) makes the account unusable instead of powerful.

No Flask here: the web app, the CLI and tests call these functions alike.
"""

from __future__ import annotations

import enum
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from appliance.clock import format_local
from appliance.demo import DEMO_TOTP_CODE
from appliance.records import BoxInfo, OrgUnit, Role, RoleAssignment, User, utcnow
from appliance.settings import LdapSettings, Settings
from appliance.store import Store
from compliance import audit
from compliance.actors import ADMIN_DUTIES, Actor, Grant

CANDIDATE_DATA_ROLES = frozenset({Role.HR_ADMIN, Role.HR, Role.INTERVIEWER, Role.DPO})
"""Roles that read candidate data; no administrator may also hold one (issue #3, item 2)."""

PURPOSE = "authentication"
"""The purpose every sign-in, sign-out and role-change event is recorded under."""

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$")
"""Also what makes a username safe to put in an LDAP DN or filter."""

MAX_PASSWORD_LENGTH = 256
LOCAL, LDAP = "local", "ldap"
API_TOKEN_HASH_PREFIX = "token$"  # noqa: S105 (a marker, not a secret)
"""users.password_hash of an integration account: token$<sha256 hex of its API token>."""
LDAP_HASH_MARKER = "ldap$"
"""users.password_hash of a directory account: the directory checks the password."""

logger = logging.getLogger(__name__)
_hasher = PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 low-memory profile
_dummy_hash: str | None = None


class AccountError(Exception):
    """Base for account failures; `zh` carries the same message in Chinese for the pages."""

    zh = "账号操作失败。"


class PasswordPolicyError(AccountError):
    """The password breaks the policy; `problems` lists each rule it breaks."""

    zh = "密码不符合要求。"

    def __init__(self, problems: list[PolicyProblem]) -> None:
        super().__init__("; ".join(p.en for p in problems))
        self.problems = problems
        self.zh = "；".join(p.zh for p in problems)


class DutySeparationError(AccountError):
    """The roles asked for may not be held by one account (MLPS-3 three-role separation)."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.zh = zh


class InvalidUsername(AccountError):
    zh = "用户名只能包含字母、数字和 . _ @ -，且以字母或数字开头，最长 80 个字符。"

    def __init__(self) -> None:
        super().__init__(
            "a username is 1-80 letters, digits or . _ @ -, starting with a letter or digit"
        )


class NotPermitted(AccountError):
    """The acting account may not manage accounts (that is the security admin's duty)."""

    zh = "只有安全管理员可以管理账号和角色。"

    def __init__(self) -> None:
        super().__init__("only the security admin may manage accounts and roles")


class DirectoryUnavailable(AccountError):
    """The LDAP/AD server did not answer or refused the connection (not the password)."""

    zh = "目录服务器（LDAP/AD）暂时无法连接，请稍后再试或联系系统管理员。"


# --- password policy -------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyProblem:
    code: str
    zh: str
    en: str


def _classes(password: str) -> int:
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not c.isalnum() for c in password) or any(
        c.isalpha() and not (c.islower() or c.isupper()) for c in password
    )  # symbols, spaces, and caseless letters such as 汉字
    return sum((lower, upper, digit, other))


def password_problems(password: str, username: str, settings: Settings) -> list[PolicyProblem]:
    """Every rule `password` breaks (empty when it is acceptable)."""
    minimum = settings.auth.password_min_length
    problems = []
    if len(password) < minimum:
        problems.append(
            PolicyProblem(
                "too_short",
                f"密码至少需要 {minimum} 个字符",
                f"the password must have at least {minimum} characters",
            )
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(
            PolicyProblem(
                "too_long",
                f"密码最多 {MAX_PASSWORD_LENGTH} 个字符",
                f"the password may have at most {MAX_PASSWORD_LENGTH} characters",
            )
        )
    if _classes(password) < 3:
        problems.append(
            PolicyProblem(
                "too_simple",
                "密码需包含小写字母、大写字母、数字、符号中的至少三类",
                "the password must mix at least three of: lower-case letters, upper-case "
                "letters, digits, symbols",
            )
        )
    if username and username.casefold() in password.casefold():
        problems.append(
            PolicyProblem(
                "contains_username",
                "密码不能包含用户名",
                "the password must not contain the username",
            )
        )
    return problems


def check_password_policy(password: str, username: str, settings: Settings) -> None:
    """Raise PasswordPolicyError naming every broken rule (GB/T 22239-2019 8.1.4.1 a)."""
    problems = password_problems(password, username, settings)
    if problems:
        raise PasswordPolicyError(problems)


# --- hashing ----------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Constant-time Argon2id check; False for a wrong password or a hash that is not ours."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other Argon2 parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return False


def _spend_a_hash(password: str) -> None:
    """As slow as a real check, so a missing account cannot be told apart by timing."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    verify_password(_dummy_hash, password)


def set_password(
    user: User, password: str, settings: Settings, now: datetime | None = None
) -> None:
    """Check the policy, then store the Argon2id hash of a local account's new password."""
    check_password_policy(password, user.username, settings)
    user.password_hash = hash_password(password)
    user.auth_source = LOCAL
    user.password_changed_at = now or utcnow()


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidUsername()
    return username


def create_account(
    session: Session,
    username: str,
    display_name: str,
    settings: Settings,
    password: str | None = None,
    auth_source: str = LOCAL,
) -> User:
    """A new staff account with no role and no second factor yet (see `enrol_totp`).

    Local accounts need a password that meets the policy; directory accounts (`ldap`)
    have none here. Integration accounts get an API token from `compliance.tokens`.
    """
    check_username(username)
    if auth_source not in (LOCAL, LDAP):
        raise ValueError(f"auth_source must be {LOCAL!r} or {LDAP!r}")
    user = User(username=username, display_name=display_name, auth_source=auth_source)
    if auth_source == LOCAL:
        if password is None:
            raise ValueError("a local account needs a password")
        set_password(user, password, settings)
    else:
        user.password_hash = LDAP_HASH_MARKER
    session.add(user)
    return user


def enrol_totp(user: User, issuer: str = "Enclave HR") -> tuple[str, str]:
    """Give the account a new TOTP secret; returns (secret, otpauth:// URI for a QR code).

    The security admin hands these to the person once; the old secret stops working.
    """
    secret = pyotp.random_base32()
    user.totp_secret = secret
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=issuer)


# --- separation of duties ---------------------------------------------------------------


def separation_problems(roles: Iterable[Role]) -> list[DutySeparationError]:
    """Why this set of roles may not be held by one account (empty when it may)."""
    held = frozenset(roles)
    problems = []
    duties = sorted(r.value for r in held & ADMIN_DUTIES)
    if len(duties) > 1:
        problems.append(
            DutySeparationError(
                f"one account cannot hold two administrator duties ({', '.join(duties)}): "
                "system, security and audit administration are separate (MLPS-3)",
                f"同一账号不能同时担任两种管理员职责（{'、'.join(duties)}）：系统管理员、"
                "安全管理员、审计管理员必须分设（等保三级三权分立）",
            )
        )
    data_roles = sorted(r.value for r in held & CANDIDATE_DATA_ROLES)
    if duties and data_roles:
        problems.append(
            DutySeparationError(
                f"an administrator ({', '.join(duties)}) cannot also hold a role that reads "
                f"candidate data ({', '.join(data_roles)})",
                f"管理员（{'、'.join(duties)}）不能同时拥有可查看候选人数据的角色"
                f"（{'、'.join(data_roles)}）",
            )
        )
    if Role.INTEGRATION in held and len(held) > 1:
        others = sorted(r.value for r in held - {Role.INTEGRATION})
        problems.append(
            DutySeparationError(
                "an integration account (API only) cannot hold any other role "
                f"({', '.join(others)}); give people their own accounts",
                f"集成账号（仅限 API）不能同时拥有其他角色（{'、'.join(others)}），"
                "请为个人单独开设账号",
            )
        )
    return problems


def check_separation(roles: Iterable[Role]) -> None:
    """Raise the first DutySeparationError for `roles`; runs on assignment and on every load."""
    problems = separation_problems(roles)
    if problems:
        raise problems[0]


def assign_role(session: Session, user: User, role: Role, org_unit: OrgUnit) -> RoleAssignment:
    """Give `user` the role in `org_unit`'s subtree, refusing combinations duties forbid.

    Writes no audit event (it runs inside the caller's transaction, and the audit log
    writes in its own): callers record the change, as `grant_role` does.
    """
    check_separation({a.role for a in user.roles} | {role})
    for existing in user.roles:
        same_unit = existing.org_unit is org_unit or existing.org_unit_id == org_unit.id
        if existing.role == role and same_unit:
            return existing
    assignment = RoleAssignment(role=role, org_unit=org_unit)
    user.roles.append(assignment)
    return assignment


def _require_security_admin(actor: Actor) -> None:
    if actor.kind != "system" and Role.SECURITY_ADMIN not in actor.roles:
        raise NotPermitted()


def grant_role(store: Store, actor: Actor, user_id: int, role: Role, org_unit_id: int) -> None:
    """The security admin gives an account a role; recorded (allowed or denied) in the audit log."""
    _require_security_admin(actor)
    entity = f"users:{user_id}"
    try:
        with store.transaction() as db:
            user = db.get(User, user_id)
            unit = db.get(OrgUnit, org_unit_id)
            if user is None or unit is None:
                raise LookupError(f"no user {user_id} or no org unit {org_unit_id}")
            assign_role(db, user, role, unit)
    except DutySeparationError:
        audit.record(store, actor, "role.assign", entity, PURPOSE, result="denied")
        raise
    audit.record(store, actor, "role.assign", entity, PURPOSE)


def revoke_role(store: Store, actor: Actor, user_id: int, role: Role, org_unit_id: int) -> bool:
    """Take a role back; True when the account held it. Recorded in the audit log."""
    _require_security_admin(actor)
    with store.transaction() as db:
        row = db.scalars(
            select(RoleAssignment).where(
                RoleAssignment.user_id == user_id,
                RoleAssignment.role == role,
                RoleAssignment.org_unit_id == org_unit_id,
            )
        ).one_or_none()
        if row is not None:
            db.delete(row)
    if row is not None:
        audit.record(store, actor, "role.revoke", f"users:{user_id}", PURPOSE)
    return row is not None


def grants_of(session: Session, user_id: int) -> tuple[Grant, ...]:
    rows = session.execute(
        select(RoleAssignment.role, OrgUnit.path)
        .join(OrgUnit, RoleAssignment.org_unit_id == OrgUnit.id)
        .where(RoleAssignment.user_id == user_id)
        .order_by(RoleAssignment.id)
    ).all()
    return tuple(Grant(role=Role(r), org_path=p) for r, p in rows)


# --- sign-in ----------------------------------------------------------------------------


class SignInOutcome(enum.StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    """Unknown user, wrong password, wrong or missing code: one answer for all."""
    LOCKED = "locked"
    NOT_ENROLLED = "not_enrolled"
    NOT_INTERACTIVE = "not_interactive"
    DUTY_CONFLICT = "duty_conflict"
    DIRECTORY_UNAVAILABLE = "directory_unavailable"


_MESSAGES = {
    SignInOutcome.OK: ("登录成功。", "Signed in."),
    SignInOutcome.BAD_CREDENTIALS: (
        "用户名、密码或动态验证码不正确。",
        "Wrong username, password or one-time code.",
    ),
    SignInOutcome.LOCKED: (
        "连续登录失败次数过多，账号已锁定至 {until}。请届时再试，或联系安全管理员。",
        "Too many failed sign-ins: this account is locked until {until}. "
        "Try again then, or ask the security admin.",
    ),
    SignInOutcome.NOT_ENROLLED: (
        "此账号尚未绑定动态验证码（TOTP），无法登录。请联系安全管理员为您开通。",
        "This account has no one-time-code (TOTP) authenticator yet, so it cannot sign in. "
        "Ask the security admin to enrol you.",
    ),
    SignInOutcome.NOT_INTERACTIVE: (
        "集成账号只能通过 API 令牌访问，不能在此登录。",
        "An integration account uses its API token; it cannot sign in here.",
    ),
    SignInOutcome.DUTY_CONFLICT: (
        "此账号的角色组合违反职责分离要求，已被拒绝登录。请联系安全管理员。",
        "This account holds roles that may not be combined (separation of duties); "
        "sign-in refused. Ask the security admin.",
    ),
    SignInOutcome.DIRECTORY_UNAVAILABLE: (
        DirectoryUnavailable.zh,
        "The directory server (LDAP/AD) cannot be reached; try again later or tell the "
        "system admin.",
    ),
}


@dataclass(frozen=True)
class SignInResult:
    outcome: SignInOutcome
    user_id: int | None = None
    actor: Actor | None = None
    """The signed-in actor (second factor done) when `ok`."""
    locked_until: datetime | None = None
    messages: tuple[str, str] = ("", "")
    """(Chinese, English) text to show the person."""

    @property
    def ok(self) -> bool:
        return self.outcome is SignInOutcome.OK


def _result(
    outcome: SignInOutcome,
    settings: Settings,
    user_id: int | None = None,
    actor: Actor | None = None,
    locked_until: datetime | None = None,
) -> SignInResult:
    zh, en = _MESSAGES[outcome]
    if locked_until is not None:
        until = format_local(locked_until, settings)
        zh, en = zh.format(until=until), en.format(until=until)
    return SignInResult(outcome, user_id, actor, locked_until, (zh, en))


def demo_code_accepted(store: Store, settings: Settings) -> bool:
    """The fixed demo code opens only a demo box in demo mode: two keys for one door."""
    if not settings.demo:
        return False
    with store.session() as db:
        box = db.get(BoxInfo, 1)
        return bool(box is not None and box.demo)


def totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The 30-second step `code` belongs to (one step of clock drift either side), or None."""
    code = "".join(code.split())
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def totp_ok(secret: str, code: str, now: datetime) -> bool:
    return totp_step(secret, code, now) is not None


@dataclass
class _Account:
    """What sign-in needs of a user row, read in one short session."""

    id: int
    username: str
    active: bool
    auth_source: str
    password_hash: str
    totp_secret: str | None
    failed_logins: int
    locked_until: datetime | None
    grants: tuple[Grant, ...]


def _load_account(store: Store, username: str) -> _Account | None:
    with store.session() as db:
        user = db.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None:
            return None
        return _Account(
            id=user.id,
            username=user.username,
            active=user.active,
            auth_source=user.auth_source,
            password_hash=user.password_hash,
            totp_secret=user.totp_secret,
            failed_logins=user.failed_logins,
            locked_until=user.locked_until,
            grants=grants_of(db, user.id),
        )


def authenticate(
    store: Store,
    settings: Settings,
    username: str,
    password: str,
    totp_code: str,
    source_ip: str | None,
    now: datetime | None = None,
) -> SignInResult:
    """Check password and second factor together; lock, unlock and log as MLPS-3 asks.

    Every outcome is written to the audit log (never the typed password, code, or a
    username that matches no account: a mistyped username is often a password).
    `now` lets tests move time; it defaults to the clock.
    """
    now = now or utcnow()
    username = username.strip()
    account = _load_account(store, username) if USERNAME_PATTERN.fullmatch(username) else None
    if account is None:
        _spend_a_hash(password)
        _log(store, "unknown", (), source_ip, "signin.bad_password", "users", "failed")
        return _result(SignInOutcome.BAD_CREDENTIALS, settings)
    if not account.active:
        _spend_a_hash(password)  # a disabled account answers like a missing one
        _log(
            store,
            account.username,
            (),
            source_ip,
            "signin.inactive",
            f"users:{account.id}",
            "denied",
        )
        return _result(SignInOutcome.BAD_CREDENTIALS, settings)

    def log(action: str, result: str, grants: tuple[Grant, ...] = account.grants) -> None:
        _log(store, account.username, grants, source_ip, action, f"users:{account.id}", result)

    if account.locked_until is not None and account.locked_until > now:
        # Not even the right password opens a locked account; attempts now do not count.
        log("signin.locked", "denied")
        return _result(
            SignInOutcome.LOCKED, settings, account.id, locked_until=account.locked_until
        )
    lock_expired = account.locked_until is not None

    grants = account.grants
    if account.auth_source == LDAP:
        try:
            answer = _ldap_check(store, settings.auth.ldap, account.username, password)
        except DirectoryUnavailable as exc:
            logger.warning("directory sign-in could not be checked: %s", exc)
            log("signin.directory_unavailable", "failed")
            return _result(SignInOutcome.DIRECTORY_UNAVAILABLE, settings, account.id)
        password_ok = answer is not None
        if answer is not None and answer.grants is not None:
            grants = answer.grants
    else:
        password_ok = account.auth_source == LOCAL and verify_password(
            account.password_hash, password
        )
    if not password_ok:
        return _failed(store, settings, account, "signin.bad_password", lock_expired, now, log)

    roles = {g.role for g in grants}
    if Role.INTEGRATION in roles:
        log("signin.not_interactive", "denied", grants)
        return _result(SignInOutcome.NOT_INTERACTIVE, settings, account.id)
    if separation_problems(roles):
        log("signin.duty_conflict", "denied", grants)
        return _result(SignInOutcome.DUTY_CONFLICT, settings, account.id)
    if not account.totp_secret:
        log("signin.no_totp_enrolled", "denied", grants)
        return _result(SignInOutcome.NOT_ENROLLED, settings, account.id)
    code = totp_code.strip()
    step = totp_step(account.totp_secret, code, now)
    demo = step is None and code == DEMO_TOTP_CODE and demo_code_accepted(store, settings)
    if step is None and not demo:
        # Counts like a wrong password: otherwise the code could be guessed without limit.
        return _failed(store, settings, account, "signin.bad_totp", lock_expired, now, log)
    if step is not None and not _claim_totp_step(store, account.id, step):
        # The code was right but already used: someone watched or replayed it.
        return _failed(store, settings, account, "signin.totp_reused", lock_expired, now, log)

    roles_changed = set(grants) != set(account.grants)
    with store.transaction() as db:
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if account.auth_source == LOCAL and needs_rehash(account.password_hash):
            values["password_hash"] = hash_password(password)
        db.execute(update(User).where(User.id == account.id).values(**values))
        if roles_changed:
            _sync_directory_roles(db, account.id, grants)
    if roles_changed:
        system = Actor(kind="system", name="system", source_ip=source_ip)
        audit.record(store, system, "role.sync", f"users:{account.id}", "directory groups")
    actor = Actor.staff(account.username, account.id, grants, source_ip=source_ip, mfa=True)
    audit.record(store, actor, "signin", f"users:{account.id}", PURPOSE)
    return _result(SignInOutcome.OK, settings, account.id, actor=actor)


def _claim_totp_step(store: Store, user_id: int, step: int) -> bool:
    """Record `step` as used, atomically: of two sign-ins with one code, one wins."""
    with store.engine.connect().execution_options(begin="IMMEDIATE") as conn, conn.begin():
        claimed = conn.execute(
            update(User)
            .where(User.id == user_id)
            .where(or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step)
        )
        return claimed.rowcount == 1


def end_all_sessions(store: Store, user_id: int) -> int:
    """Sign-out: raise the account's session epoch, so every cookie issued before (a copy
    on another PC included) is refused on its next request. Returns the new epoch."""
    with store.engine.connect().execution_options(begin="IMMEDIATE") as conn, conn.begin():
        conn.execute(
            update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1)
        )
        epoch: int = conn.execute(select(User.session_epoch).where(User.id == user_id)).scalar_one()
    return epoch


def _log(
    store: Store,
    name: str,
    grants: tuple[Grant, ...],
    source_ip: str | None,
    action: str,
    entity: str,
    result: str,
) -> None:
    actor = Actor(
        kind="staff",
        name=name,
        grants=grants,
        source_ip=source_ip,
        roles=frozenset(g.role for g in grants),
    )
    audit.record(store, actor, action, entity, PURPOSE, result=result)


def _failed(
    store: Store,
    settings: Settings,
    account: _Account,
    action: str,
    lock_expired: bool,
    now: datetime,
    log: Callable[[str, str], None],
) -> SignInResult:
    """Count one failure (a single UPDATE, so parallel attempts all count); lock at the limit."""
    rules = settings.auth
    with store.transaction() as db:
        count = User.failed_logins + 1 if not lock_expired else 1
        failed = db.execute(
            update(User)
            .where(User.id == account.id)
            .values(failed_logins=count, locked_until=None)
            .returning(User.failed_logins)
        ).scalar_one()
        locked_until = None
        if failed >= rules.lockout_attempts:
            locked_until = now + timedelta(minutes=rules.lockout_minutes)
            db.execute(update(User).where(User.id == account.id).values(locked_until=locked_until))
    log(action, "failed")
    if locked_until is None:
        return _result(SignInOutcome.BAD_CREDENTIALS, settings, account.id)
    log("account.lock", "denied")
    return _result(SignInOutcome.LOCKED, settings, account.id, locked_until=locked_until)


def unlock(store: Store, actor: Actor, user_id: int) -> None:
    """The security admin ends a lock before it runs out; recorded in the audit log."""
    _require_security_admin(actor)
    with store.transaction() as db:
        db.execute(
            update(User).where(User.id == user_id).values(failed_logins=0, locked_until=None)
        )
    audit.record(store, actor, "account.unlock", f"users:{user_id}", PURPOSE)


def record_session_end(
    store: Store, actor: Actor, action: str = "signout", result: str = "allowed"
) -> None:
    """Log the end of a session: `signout` (the person), `session.expired` (idle timeout or
    lifetime), `session.refused` (denied: the account may no longer act, e.g. duties)."""
    entity = f"users:{actor.user_id}" if actor.user_id is not None else "users"
    audit.record(store, actor, action, entity, PURPOSE, result=result)


# --- LDAP / AD --------------------------------------------------------------------------


@dataclass(frozen=True)
class _DirectoryAnswer:
    grants: tuple[Grant, ...] | None
    """What the user's groups map to; None when no mapping is set (local roles stand)."""


def _ldap_check(
    store: Store, ldap: LdapSettings, username: str, password: str
) -> _DirectoryAnswer | None:
    """Bind as the user: None for a wrong password, else the directory's answer.

    Raises DirectoryUnavailable when the server cannot say (down, TLS, misconfigured):
    that is not the person's fault and does not count towards the lockout.
    """
    if not ldap.url:
        raise DirectoryUnavailable("auth.ldap.url is not set, but this account signs in by LDAP")
    if not password:
        # An empty password is an "unauthenticated bind" many servers accept (RFC 4513 5.1.2).
        return None
    try:
        import ldap3
        from ldap3.core.exceptions import LDAPException
    except ImportError:
        raise DirectoryUnavailable("the ldap3 package is not installed on this box") from None

    bind_name = ldap.user_dn_template.format(username=username)
    try:
        tls = None
        if ldap.ca_file is not None or ldap.url.lower().startswith("ldaps://") or ldap.start_tls:
            import ssl

            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(ldap.ca_file) if ldap.ca_file else None,
            )
        # No schema read (get_info=NONE): memberOf exists on AD but not on a plain OpenLDAP,
        # and a schema-checking client would refuse to ask for it there.
        server = ldap3.Server(
            ldap.url, tls=tls, connect_timeout=ldap.timeout_seconds, get_info=ldap3.NONE
        )
        conn = ldap3.Connection(
            server,
            user=bind_name,
            password=password,
            receive_timeout=ldap.timeout_seconds,
            raise_exceptions=False,
        )
        conn.open()
        if ldap.start_tls and not conn.start_tls():
            raise DirectoryUnavailable("StartTLS with the directory failed")
        if not conn.bind():
            if conn.result.get("description") == "invalidCredentials":
                return None
            raise DirectoryUnavailable(f"directory bind failed: {conn.result.get('description')}")
        try:
            if not ldap.group_roles or not ldap.search_base:
                return _DirectoryAnswer(grants=None)
            groups = _ldap_groups(conn, ldap, username, bind_name)
        finally:
            conn.unbind()
    except LDAPException as exc:
        raise DirectoryUnavailable(f"directory error: {type(exc).__name__}: {exc}") from None
    return _DirectoryAnswer(grants=_map_groups(store, ldap, groups))


def _ldap_groups(conn: Any, ldap: LdapSettings, username: str, bind_name: str) -> set[str]:
    """The user's group DNs, lower-cased: `memberOf` (AD, or OpenLDAP's memberof overlay)
    plus groups listing the user as `member`/`uniqueMember` (plain OpenLDAP)."""
    from ldap3.utils.conv import escape_filter_chars as escape

    who = conn.extend.standard.who_am_i() or ""
    user_dn = who[3:] if who.startswith("dn:") else None
    groups: set[str] = set()
    user_filter = (
        f"(|(uid={escape(username)})(sAMAccountName={escape(username)})"
        f"(userPrincipalName={escape(bind_name)}))"
    )
    conn.search(ldap.search_base, user_filter, attributes=["memberOf"])
    for entry in conn.response or []:
        if entry.get("type") != "searchResEntry":
            continue
        user_dn = user_dn or entry["dn"]
        groups.update(str(g).lower() for g in entry.get("attributes", {}).get("memberOf", []))
    if user_dn:
        dn = escape(user_dn)
        conn.search(ldap.search_base, f"(|(member={dn})(uniqueMember={dn}))", attributes=[])
        groups.update(
            e["dn"].lower() for e in conn.response or [] if e.get("type") == "searchResEntry"
        )
    return groups


def _map_groups(store: Store, ldap: LdapSettings, groups: set[str]) -> tuple[Grant, ...]:
    roles = {dn.lower(): Role(r) for dn, r in ldap.group_roles.items()}
    units = {dn.lower(): code for dn, code in ldap.group_org_units.items()}
    with store.session() as db:
        paths = {code: path for code, path in db.execute(select(OrgUnit.code, OrgUnit.path))}
        root = db.scalars(select(OrgUnit.path).where(OrgUnit.parent_id.is_(None))).first()
    grants: list[Grant] = []
    for dn in sorted(groups & roles.keys()):
        path = paths.get(units[dn]) if dn in units else root
        if path is None:
            continue  # a group mapped to an org unit code that does not exist: no grant
        grant = Grant(role=roles[dn], org_path=path)
        if grant not in grants:
            grants.append(grant)
    return tuple(grants)


def _sync_directory_roles(db: Session, user_id: int, grants: tuple[Grant, ...]) -> None:
    """Make the account's role rows what the directory's groups say (checked first)."""
    check_separation(g.role for g in grants)
    user = db.get(User, user_id)
    if user is None:
        raise LookupError(f"user {user_id} vanished during sign-in")
    units = {u.path: u for u in db.scalars(select(OrgUnit)).all()}
    wanted = {(g.role, units[g.org_path].id): units[g.org_path] for g in grants}
    for row in list(user.roles):
        if (row.role, row.org_unit_id) not in wanted:
            user.roles.remove(row)
    db.flush()
    for (role, _unit_id), unit in wanted.items():
        assign_role(db, user, role, unit)
