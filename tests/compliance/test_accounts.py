"""Sign-in rules against a real SQLCipher store: password policy, lockout, TOTP, separated
duties (MLPS level 3 checks of issue #3)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from appliance.demo import DEMO_TOTP_CODE
from appliance.records import (
    AuditEvent,
    BoxInfo,
    OrgKind,
    OrgUnit,
    Role,
    RoleAssignment,
    User,
    utcnow,
)
from appliance.settings import LdapSettings, Settings
from appliance.store import Store
from compliance import accounts
from compliance.accounts import DutySeparationError, SignInOutcome
from compliance.actors import ADMIN_DUTIES, Actor

PASSWORD = "Correct-Horse-42"


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    secret: str | None


def _hq(store: Store) -> int:
    with store.transaction() as db:
        unit = db.scalars(select(OrgUnit).where(OrgUnit.code == "HQ")).one_or_none()
        if unit is None:
            unit = OrgUnit(code="HQ", kind=OrgKind.HQ, name="HQ")
            db.add(unit)
            db.flush()
            unit.place_under(None)
        return unit.id


def make_account(
    store: Store,
    settings: Settings,
    username: str = "li.hr",
    role: Role | None = Role.HR,
    totp: bool = True,
) -> Account:
    unit_id = _hq(store)
    with store.transaction() as db:
        user = accounts.create_account(db, username, "Li", settings, password=PASSWORD)
        secret = accounts.enrol_totp(user)[0] if totp else None
        if role is not None:
            accounts.assign_role(db, user, role, db.get(OrgUnit, unit_id))
        db.flush()
        return Account(user.id, username, secret)


def events(store: Store, action: str | None = None) -> list[AuditEvent]:
    with store.session() as db:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(db.scalars(query).all())


def sign_in(
    store: Store,
    settings: Settings,
    acct: Account,
    password: str = PASSWORD,
    code: str | None = None,
    now: datetime | None = None,
) -> accounts.SignInResult:
    """Sign in from 10.0.0.7 with the account's current code unless another is given."""
    now = now or utcnow()
    if code is None:
        code = pyotp.TOTP(acct.secret).at(now) if acct.secret else ""
        forget_used_code(store, acct.username)
    return accounts.authenticate(
        store, settings, acct.username, password, code, "10.0.0.7", now=now
    )


# --- password policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "codes"),
    [
        ("Short-1a", {"too_short"}),
        ("alllowercaseletters", {"too_simple"}),
        ("lowercase-and-digits-123", set()),
        ("ALLUPPER12345678", {"too_simple"}),
        ("my-li.hr-Password1", {"contains_username"}),
        ("MY-LI.HR-PASSWORD1", {"contains_username"}),
        ("Tr0ub4dor&3-horse", set()),
        ("医院人事系统Password1", set()),
        ("short", {"too_short", "too_simple"}),
    ],
)
def test_password_policy_names_each_broken_rule(
    settings: Settings, password: str, codes: set[str]
) -> None:
    """Length >= 12, three of four character classes, no username; messages in zh and en."""
    problems = accounts.password_problems(password, "li.hr", settings)
    assert {p.code for p in problems} == codes
    assert all(p.zh and p.en for p in problems)


def test_a_weak_password_is_refused_with_chinese_and_english_messages(settings: Settings) -> None:
    with pytest.raises(accounts.PasswordPolicyError) as err:
        accounts.check_password_policy("abc", "li.hr", settings)
    assert "至少需要 12 个字符" in err.value.zh and "at least 12 characters" in str(err.value)


def test_create_account_applies_the_policy(store: Store, settings: Settings) -> None:
    with store.session() as db, pytest.raises(accounts.PasswordPolicyError):
        accounts.create_account(db, "wang", "Wang", settings, password="wang-Password-1")


def test_passwords_are_stored_as_argon2id_and_rehashed_when_parameters_change(
    store: Store, settings: Settings
) -> None:
    acct = make_account(store, settings)
    with store.session() as db:
        stored = db.get(User, acct.id).password_hash  # type: ignore[union-attr]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with store.transaction() as db:
        db.get(User, acct.id).password_hash = weak  # type: ignore[union-attr]
    assert sign_in(store, settings, acct).ok
    with store.session() as db:
        rehashed = db.get(User, acct.id).password_hash  # type: ignore[union-attr]
    assert rehashed != weak and not accounts.needs_rehash(rehashed)


# --- lockout ----------------------------------------------------------------------------


def test_five_bad_passwords_lock_the_account_and_the_lock_is_logged(
    store: Store, settings: Settings
) -> None:
    """MLPS check: 5 bad passwords lock; then even the right password is refused until the
    lock runs out (30 min); the failures and the lock are in the audit log."""
    acct = make_account(store, settings)
    now = utcnow()
    results = [
        sign_in(store, settings, acct, password=f"Wrong-pass-{i}", now=now) for i in range(5)
    ]
    assert [r.outcome for r in results[:4]] == [SignInOutcome.BAD_CREDENTIALS] * 4
    assert results[4].outcome is SignInOutcome.LOCKED
    assert results[4].locked_until == now + timedelta(minutes=30)
    assert "锁定" in results[4].messages[0] and "locked" in results[4].messages[1]

    right = sign_in(store, settings, acct, now=now + timedelta(minutes=29))
    assert right.outcome is SignInOutcome.LOCKED and right.actor is None

    failures = events(store, "signin.bad_password")
    assert len(failures) == 5
    assert {e.actor for e in failures} == {"li.hr"} and {e.result for e in failures} == {"failed"}
    assert all(e.source_ip == "10.0.0.7" and e.entity == f"users:{acct.id}" for e in failures)
    (lock,) = events(store, "account.lock")
    assert lock.actor == "li.hr" and lock.result == "denied"
    (refused,) = events(store, "signin.locked")
    assert refused.result == "denied"
    assert not events(store, "signin")

    after = sign_in(store, settings, acct, now=now + timedelta(minutes=31))
    assert after.ok, after.messages
    with store.session() as db:
        user = db.get(User, acct.id)
        assert user is not None and user.failed_logins == 0 and user.locked_until is None


def test_a_lock_that_ran_out_starts_the_count_again(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings)
    with store.transaction() as db:
        user = db.get(User, acct.id)
        assert user is not None
        user.failed_logins, user.locked_until = 5, utcnow() - timedelta(seconds=1)
    result = sign_in(store, settings, acct, password="Wrong-pass-x")
    assert result.outcome is SignInOutcome.BAD_CREDENTIALS
    with store.session() as db:
        assert db.get(User, acct.id).failed_logins == 1  # type: ignore[union-attr]


def test_a_success_resets_the_failure_count(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings)
    for _ in range(4):
        sign_in(store, settings, acct, password="Wrong-pass-x")
    assert sign_in(store, settings, acct).ok
    for _ in range(4):
        assert sign_in(store, settings, acct, password="Wrong-pass-x").outcome is (
            SignInOutcome.BAD_CREDENTIALS
        )


def test_an_unknown_username_is_logged_as_unknown_never_as_typed(
    store: Store, settings: Settings
) -> None:
    """A mistyped username is often a password: it never reaches the audit log."""
    make_account(store, settings)
    typed = "Correct-Horse-42-typed-in-the-wrong-box"
    result = accounts.authenticate(store, settings, typed, "x", "123456", "10.0.0.9")
    assert result.outcome is SignInOutcome.BAD_CREDENTIALS
    (event,) = events(store, "signin.bad_password")
    assert event.actor == "unknown" and event.entity == "users"
    with store.session() as db:
        rows = db.scalars(select(AuditEvent)).all()
    blob = repr([(e.actor, e.entity, e.fields, e.subject_ids, e.purpose) for e in rows])
    assert typed not in blob and "Correct-Horse" not in blob


def test_a_disabled_account_answers_like_a_wrong_password(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings)
    with store.transaction() as db:
        db.get(User, acct.id).active = False  # type: ignore[union-attr]
    assert sign_in(store, settings, acct).outcome is SignInOutcome.BAD_CREDENTIALS
    assert events(store, "signin.inactive")[0].result == "denied"


# --- second factor ----------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(set(Role) - {Role.INTEGRATION}))
def test_every_staff_role_needs_the_totp_code(store: Store, settings: Settings, role: Role) -> None:
    """MLPS check: right password without the code, or with a wrong one, does not sign in."""
    acct = make_account(store, settings, role=role)
    assert sign_in(store, settings, acct, code="").outcome is SignInOutcome.BAD_CREDENTIALS
    wrong = f"{(int(pyotp.TOTP(acct.secret).now()) + 500000) % 1000000:06d}"
    assert sign_in(store, settings, acct, code=wrong).outcome is SignInOutcome.BAD_CREDENTIALS
    assert len(events(store, "signin.bad_totp")) == 2
    ok = sign_in(store, settings, acct)
    assert ok.ok and ok.actor is not None and ok.actor.mfa and ok.actor.roles == {role}
    (signin,) = events(store, "signin")
    assert signin.actor == acct.username and signin.role == role.value


def test_wrong_codes_count_towards_the_lockout(store: Store, settings: Settings) -> None:
    """Otherwise a stolen password would let anyone guess codes without limit."""
    acct = make_account(store, settings)
    for _ in range(5):
        result = sign_in(store, settings, acct, code="")
    assert result.outcome is SignInOutcome.LOCKED


def test_a_code_from_the_previous_step_is_still_accepted(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings)
    now = utcnow()
    previous = pyotp.TOTP(acct.secret).at(now - timedelta(seconds=30))
    assert sign_in(store, settings, acct, code=previous, now=now).ok
    old = pyotp.TOTP(acct.secret).at(now - timedelta(seconds=120))
    assert not sign_in(store, settings, acct, code=old, now=now).ok


def test_an_account_without_totp_cannot_sign_in_and_is_told_whom_to_ask(
    store: Store, settings: Settings
) -> None:
    acct = make_account(store, settings, totp=False)
    result = sign_in(store, settings, acct, code="123456")
    assert result.outcome is SignInOutcome.NOT_ENROLLED and result.actor is None
    assert "安全管理员" in result.messages[0] and "security admin" in result.messages[1]
    assert events(store, "signin.no_totp_enrolled")[0].result == "denied"


@pytest.mark.parametrize(
    ("box_demo", "settings_demo", "accepted"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_the_demo_code_works_only_on_a_demo_box_in_demo_mode(
    store: Store, settings: Settings, box_demo: bool, settings_demo: bool, accepted: bool
) -> None:
    acct = make_account(store, settings)
    with store.transaction() as db:
        db.get(BoxInfo, 1).demo = box_demo  # type: ignore[union-attr]
    mode = settings.model_copy(update={"demo": settings_demo})
    assert sign_in(store, mode, acct, code=DEMO_TOTP_CODE).ok is accepted


def test_an_integration_account_cannot_sign_in_interactively(
    store: Store, settings: Settings
) -> None:
    acct = make_account(store, settings, username="his", role=Role.INTEGRATION)
    result = sign_in(store, settings, acct)
    assert result.outcome is SignInOutcome.NOT_INTERACTIVE and not result.ok


# --- separation of duties ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (a, b)
        for a in sorted(ADMIN_DUTIES)
        for b in sorted(set(Role) - {a})
        if b in ADMIN_DUTIES or b in accounts.CANDIDATE_DATA_ROLES or b is Role.INTEGRATION
    ],
)
def test_assign_role_refuses_a_second_admin_duty_or_candidate_data(
    store: Store, settings: Settings, first: Role, second: Role
) -> None:
    """MLPS check: one account cannot hold two admin duties, nor an admin duty and a role
    that reads candidate data; both orders are refused."""
    for i, (a, b) in enumerate(((first, second), (second, first))):
        acct = make_account(store, settings, username=f"admin{i}", role=a)
        with store.session() as db:
            user = db.get(User, acct.id)
            unit = db.get(OrgUnit, _hq(store))
            assert user is not None and unit is not None
            with pytest.raises(DutySeparationError) as err:
                accounts.assign_role(db, user, b, unit)
            assert err.value.zh and str(err.value)
            assert {r.role for r in user.roles} == {a}


def test_two_admin_duties_are_named_in_the_refusal(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings, username="ops", role=Role.SYSTEM_ADMIN)
    with store.session() as db:
        user, unit = db.get(User, acct.id), db.get(OrgUnit, _hq(store))
        with pytest.raises(DutySeparationError, match="two administrator duties") as err:
            accounts.assign_role(db, user, Role.AUDIT_ADMIN, unit)  # type: ignore[arg-type]
    assert "audit_admin" in str(err.value) and "三权分立" in err.value.zh


def test_compatible_roles_can_be_combined(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings, username="chen", role=Role.HR)
    with store.transaction() as db:
        user, unit = db.get(User, acct.id), db.get(OrgUnit, _hq(store))
        accounts.assign_role(db, user, Role.INTERVIEWER, unit)  # type: ignore[arg-type]
        accounts.assign_role(db, user, Role.INTERVIEWER, unit)  # type: ignore[arg-type]
    with store.session() as db:
        assert sorted(r.role for r in db.get(User, acct.id).roles) == [  # type: ignore[union-attr]
            Role.HR,
            Role.INTERVIEWER,
        ]


def test_an_account_that_holds_two_duties_by_a_crafted_row_cannot_sign_in(
    store: Store, settings: Settings
) -> None:
    """A row written around assign_role does not make the account powerful: it is refused."""
    acct = make_account(store, settings, username="ops", role=Role.SYSTEM_ADMIN)
    with store.transaction() as db:
        db.add(RoleAssignment(user_id=acct.id, role=Role.SECURITY_ADMIN, org_unit_id=_hq(store)))
    result = sign_in(store, settings, acct)
    assert result.outcome is SignInOutcome.DUTY_CONFLICT and result.actor is None
    assert events(store, "signin.duty_conflict")[0].result == "denied"


def test_grant_role_is_for_the_security_admin_and_is_logged(
    store: Store, settings: Settings
) -> None:
    secadmin = make_account(store, settings, username="sec", role=Role.SECURITY_ADMIN)
    target = make_account(store, settings, username="ops", role=Role.SYSTEM_ADMIN)
    hq = _hq(store)
    sec_actor = sign_in(store, settings, secadmin).actor
    ops_actor = sign_in(store, settings, target).actor
    assert sec_actor is not None and ops_actor is not None
    with pytest.raises(accounts.NotPermitted):
        accounts.grant_role(store, ops_actor, target.id, Role.AUDITOR, hq)
    with pytest.raises(DutySeparationError):
        accounts.grant_role(store, sec_actor, target.id, Role.AUDIT_ADMIN, hq)
    accounts.grant_role(store, sec_actor, target.id, Role.AUDITOR, hq)
    assert accounts.revoke_role(store, sec_actor, target.id, Role.AUDITOR, hq)
    assigned = events(store, "role.assign")
    assert [(e.actor, e.result) for e in assigned] == [("sec", "denied"), ("sec", "allowed")]
    assert [e.entity for e in events(store, "role.revoke")] == [f"users:{target.id}"]


def test_the_security_admin_can_end_a_lock(store: Store, settings: Settings) -> None:
    acct = make_account(store, settings)
    for _ in range(5):
        sign_in(store, settings, acct, password="Wrong-pass-x")
    sec = Actor.staff("sec", 999, (), mfa=True)
    with pytest.raises(accounts.NotPermitted):
        accounts.unlock(store, sec, acct.id)
    accounts.unlock(store, Actor(kind="system", name="system"), acct.id)
    assert sign_in(store, settings, acct).ok


# --- LDAP / AD, against a real OpenLDAP slapd on loopback ---------------------------------

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SUFFIX = "dc=hospital,dc=test"
LDAP_ADMIN = f"cn=admin,{SUFFIX}"
LDAP_USERS = {"zhang": "Zhang-Directory-1", "boss": "Boss-Directory-1", "plain": "Plain-Dir-1"}
GROUPS = {
    "hr-staff": ["zhang"],
    "it-ops": ["boss"],
    "it-audit": ["boss"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def slapd() -> Iterator[str]:
    """slapd with an mdb database on a loopback port, users and groupOfNames groups."""
    # `make test` installs slapd (Makefile APT_TEST); a missing server is a set-up error.
    assert Path(SLAPD).exists(), "OpenLDAP slapd is not installed: run `make install-test`"
    import ldap3

    root = Path(tempfile.mkdtemp(prefix="enc-ldap"))
    (root / "db").mkdir()
    schema = "/etc/ldap/schema"
    (root / "slapd.conf").write_text(
        f"include {schema}/core.schema\ninclude {schema}/cosine.schema\n"
        f"include {schema}/inetorgperson.schema\n"
        f"pidfile {root}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{LDAP_ADMIN}"\nrootpw admin-secret\n'
        f"directory {root}/db\n"
        "access to attrs=userPassword by self auth by anonymous auth by * none\n"
        "access to * by users read by * none\n"
    )
    url = f"ldap://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [SLAPD, "-f", str(root / "slapd.conf"), "-h", f"{url}/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                admin = ldap3.Connection(url, LDAP_ADMIN, "admin-secret", auto_bind=True)
                break
            except ldap3.core.exceptions.LDAPException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        admin.add(SUFFIX, ["dcObject", "organization"], {"o": "Hospital", "dc": "hospital"})
        for ou in ("people", "groups"):
            admin.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
        for uid, password in LDAP_USERS.items():
            attrs = {"cn": uid, "sn": uid, "uid": uid, "userPassword": password}
            admin.add(f"uid={uid},ou=people,{SUFFIX}", ["inetOrgPerson"], attrs)
        for cn, members in GROUPS.items():
            dns = [f"uid={m},ou=people,{SUFFIX}" for m in members]
            admin.add(f"cn={cn},ou=groups,{SUFFIX}", ["groupOfNames"], {"cn": cn, "member": dns})
        admin.unbind()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _ldap_settings(settings: Settings, url: str, groups: bool = True) -> Settings:
    ldap = LdapSettings(
        url=url,
        user_dn_template=f"uid={{username}},ou=people,{SUFFIX}",
        search_base=SUFFIX if groups else None,
        group_roles={
            f"cn=hr-staff,ou=groups,{SUFFIX}": "hr",
            f"CN=IT-Ops,ou=groups,{SUFFIX}": "system_admin",
            f"cn=it-audit,ou=groups,{SUFFIX}": "audit_admin",
        }
        if groups
        else {},
        group_org_units={f"cn=hr-staff,ou=groups,{SUFFIX}": "HQ"},
    )
    return settings.model_copy(update={"auth": settings.auth.model_copy(update={"ldap": ldap})})


def _ldap_account(store: Store, settings: Settings, username: str) -> Account:
    _hq(store)
    with store.transaction() as db:
        user = accounts.create_account(db, username, username, settings, auth_source="ldap")
        secret = accounts.enrol_totp(user)[0]
        db.flush()
        return Account(user.id, username, secret)


def test_ldap_sign_in_binds_and_takes_roles_from_groups(
    store: Store, settings: Settings, slapd: str
) -> None:
    mode = _ldap_settings(settings, slapd)
    acct = _ldap_account(store, mode, "zhang")
    result = sign_in(store, mode, acct, password=LDAP_USERS["zhang"])
    assert result.ok and result.actor is not None, result.messages
    assert result.actor.roles == {Role.HR} and result.actor.grants[0].org_path == "/1/"
    with store.session() as db:
        assert [r.role for r in db.get(User, acct.id).roles] == [Role.HR]  # type: ignore[union-attr]
    assert [e.actor for e in events(store, "role.sync")] == ["system"]
    again = sign_in(store, mode, acct, password=LDAP_USERS["zhang"])
    assert again.ok and len(events(store, "role.sync")) == 1  # unchanged: no new sync


def test_ldap_wrong_or_empty_password_fails_and_counts(
    store: Store, settings: Settings, slapd: str
) -> None:
    """An empty password would be an anonymous bind that succeeds: it is refused first."""
    mode = _ldap_settings(settings, slapd)
    acct = _ldap_account(store, mode, "zhang")
    for password in ("Wrong-Directory-1", "", LDAP_USERS["plain"]):
        result = sign_in(store, mode, acct, password=password)
        assert result.outcome is SignInOutcome.BAD_CREDENTIALS
    with store.session() as db:
        assert db.get(User, acct.id).failed_logins == 3  # type: ignore[union-attr]
    assert not sign_in(store, mode, acct, password=LDAP_USERS["zhang"], code="").ok


def test_ldap_groups_that_map_to_two_admin_duties_are_refused(
    store: Store, settings: Settings, slapd: str
) -> None:
    mode = _ldap_settings(settings, slapd)
    acct = _ldap_account(store, mode, "boss")
    result = sign_in(store, mode, acct, password=LDAP_USERS["boss"])
    assert result.outcome is SignInOutcome.DUTY_CONFLICT
    with store.session() as db:
        assert db.get(User, acct.id).roles == []  # type: ignore[union-attr]


def test_ldap_roles_follow_the_directory_and_local_roles_stand_without_mapping(
    store: Store, settings: Settings, slapd: str
) -> None:
    """`plain` is in no mapped group: a local role is taken away when mapping is on, and
    kept when it is off."""
    acct = _ldap_account(store, settings, "plain")
    with store.transaction() as db:
        accounts.assign_role(db, db.get(User, acct.id), Role.DPO, db.get(OrgUnit, _hq(store)))  # type: ignore[arg-type]
    unmapped = sign_in(
        store, _ldap_settings(settings, slapd, groups=False), acct, LDAP_USERS["plain"]
    )
    assert unmapped.ok and unmapped.actor is not None and unmapped.actor.roles == {Role.DPO}
    mapped = sign_in(store, _ldap_settings(settings, slapd), acct, LDAP_USERS["plain"])
    assert mapped.ok and mapped.actor is not None and mapped.actor.roles == frozenset()


def test_an_unreachable_directory_is_not_the_persons_fault(
    store: Store, settings: Settings
) -> None:
    mode = _ldap_settings(settings, f"ldap://127.0.0.1:{_free_port()}")
    acct = _ldap_account(store, mode, "zhang")
    result = sign_in(store, mode, acct, password=LDAP_USERS["zhang"])
    assert result.outcome is SignInOutcome.DIRECTORY_UNAVAILABLE
    with store.session() as db:
        assert db.get(User, acct.id).failed_logins == 0  # type: ignore[union-attr]
    assert events(store, "signin.directory_unavailable")[0].result == "failed"


def test_plain_ldap_to_another_host_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="in clear"):
        LdapSettings(url="ldap://dc1.hospital.local")
    assert LdapSettings(url="ldap://dc1.hospital.local", start_tls=True).start_tls
    assert LdapSettings(url="ldaps://dc1.hospital.local").url


def forget_used_code(store: Store, username: str) -> None:
    """Tests sign one account in many times within 30 s; a person would wait for the next
    code. Clearing the last used step stands for that wait, and nothing else."""
    with store.transaction() as db:
        db.execute(update(User).where(User.username == username).values(totp_last_step=None))


def test_a_code_is_accepted_once(store: Store, settings: Settings) -> None:
    """RFC 6238 5.2: a code that signed in once is refused the second time, and the
    refusal counts as a failed attempt in the audit log."""
    acct = make_account(store, settings)
    now = utcnow()
    code = pyotp.TOTP(acct.secret).at(now)
    first = accounts.authenticate(
        store, settings, acct.username, PASSWORD, code, "10.0.0.7", now=now
    )
    again = accounts.authenticate(
        store, settings, acct.username, PASSWORD, code, "10.0.0.8", now=now
    )
    assert first.ok and not again.ok
    with store.session() as db:
        actions = [e.action for e in db.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions[-1] == "signin.totp_reused"
    newer = pyotp.TOTP(acct.secret).at(now + timedelta(seconds=30))
    assert accounts.authenticate(
        store, settings, acct.username, PASSWORD, newer, "10.0.0.7", now=now + timedelta(seconds=30)
    ).ok
