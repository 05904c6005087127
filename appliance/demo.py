"""The demo hospital `make run` starts with: two branches, departments, one account per
role, two jobs with scoring templates and questions, and a few invented candidates.

Demo passwords and TOTP secrets are printed by `appliance init --demo`; in demo
mode (and only there) staff may also use the fixed code DEMO_TOTP_CODE.
"""

from __future__ import annotations

import pyotp
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from appliance.records import (
    Application,
    Candidate,
    InterviewPlan,
    InterviewQuestion,
    Job,
    JobStatus,
    OrgKind,
    OrgUnit,
    Role,
    RoleAssignment,
    RubricLine,
    ScoringDimension,
    ScoringTemplate,
    SubjectKind,
    User,
)
from appliance.store import Store

DEMO_TOTP_CODE = "000000"  # noqa: S105 (accepted only on a demo box in demo mode)

_ORG = (
    ("HQ", OrgKind.HQ, "南屏市第一人民医院", None),
    ("EAST", OrgKind.BRANCH, "东院区", "HQ"),
    ("WEST", OrgKind.BRANCH, "西院区", "HQ"),
    ("EAST-CARD", OrgKind.DEPARTMENT, "心内科", "EAST"),
    ("EAST-ER", OrgKind.DEPARTMENT, "急诊科", "EAST"),
    ("WEST-NURS", OrgKind.DEPARTMENT, "护理部", "WEST"),
    ("WEST-PHARM", OrgKind.DEPARTMENT, "药剂科", "WEST"),
    ("HQ-IT", OrgKind.DEPARTMENT, "信息科", "HQ"),
)

# (role, username, display name, org code)
_ACCOUNTS = (
    (Role.SYSTEM_ADMIN, "sysadmin", "系统管理员", "HQ"),
    (Role.SECURITY_ADMIN, "secadmin", "安全管理员", "HQ"),
    (Role.AUDIT_ADMIN, "auditadmin", "审计管理员", "HQ"),
    (Role.AUDITOR, "auditor", "审计员", "HQ"),
    (Role.HR_ADMIN, "hradmin", "人事处 管理员", "HQ"),
    (Role.HR, "hr.east", "东院区 人事专员", "EAST"),
    (Role.INTERVIEWER, "interviewer", "心内科 面试官", "EAST-CARD"),
    (Role.DPO, "dpo", "个人信息保护负责人", "HQ"),
    (Role.INTEGRATION, "integration", "集成账号 (API)", "HQ"),
    # Last, so the ids above stay as they were: another branch's HR, who must not see
    # the east campus's candidates (issue 6).
    (Role.HR, "hr.west", "西院区 人事专员", "WEST"),
)

_DIMENSIONS = (
    ("沟通能力", 0.25, "表达清楚，能倾听并回应患者与同事的关切"),
    ("团队协作", 0.2, "主动配合，能在多学科团队中分工与支援"),
    ("专业知识", 0.25, "专业判断准确，符合诊疗规范与操作流程"),
    ("应变能力", 0.15, "面对突发情况冷静，能排序并及时上报"),
    ("语言逻辑", 0.15, "条理清楚，先结论后依据"),
)

_JOBS = (
    (
        "EAST-CARD",
        "住院医师（心内科）",
        {"education": "本科", "licences": ["执业医师资格证书", "医师执业证书"], "years": 1},
        ("请介绍一次您处理患者投诉的经历。", "如果夜班时发现用药错误，您会怎么做？"),
    ),
    (
        "WEST-NURS",
        "注册护士（护理部）",
        {"education": "大专", "licences": ["护士执业证书"], "years": 0},
        ("为什么选择我们医院？", "请谈谈您在团队中协作的一次经历。"),
    ),
)

_CANDIDATES = (
    ("吴子涵", "13800006583", "wuzihan@example.com", "EAST"),
    ("林思远", "13800001234", "linsiyuan@example.cn", "EAST"),
    ("Emily Carter", "13800004321", "emily.carter@example.com", "WEST"),
)


def seed_demo_hospital(store: Store) -> list[tuple[str, str, str, str]]:
    with store.transaction() as session:
        units = _seed_org(session)
        logins = _seed_accounts(session, units)
        jobs = _seed_jobs(session, units)
        _seed_candidates(store, session, units, jobs)
    return logins


def _seed_org(session: Session) -> dict[str, OrgUnit]:
    units: dict[str, OrgUnit] = {}
    for code, kind, name, parent in _ORG:
        unit = OrgUnit(code=code, kind=kind, name=name)
        session.add(unit)
        session.flush()
        unit.place_under(units[parent] if parent else None)
        units[code] = unit
    return units


def _seed_accounts(session: Session, units: dict[str, OrgUnit]) -> list[tuple[str, str, str, str]]:
    hasher = PasswordHasher()
    logins = []
    for role, username, display, org in _ACCOUNTS:
        password = demo_password(username)
        secret = pyotp.random_base32()
        user = User(
            username=username,
            display_name=display,
            password_hash=hasher.hash(password),
            totp_secret=secret,
        )
        user.roles.append(RoleAssignment(role=role, org_unit=units[org]))
        session.add(user)
        logins.append((role.value, username, password, secret))
    return logins


def _template(session: Session, name: str) -> ScoringTemplate:
    template = ScoringTemplate(name=name)
    for position, (dim_name, weight, rubric_top) in enumerate(_DIMENSIONS):
        dim = ScoringDimension(name=dim_name, weight=weight, position=position)
        dim.rubric = [
            RubricLine(score=1, text="未体现"),
            RubricLine(score=3, text="基本体现，缺少具体例子"),
            RubricLine(score=5, text=rubric_top),
        ]
        template.dimensions.append(dim)
    session.add(template)
    return template


def _seed_jobs(session: Session, units: dict[str, OrgUnit]) -> list[Job]:
    jobs = []
    for org, title, requirements, questions in _JOBS:
        job = Job(
            org_unit_id=units[org].id,
            title=title,
            requirements=requirements,
            status=JobStatus.OPEN,
            description=f"{units[org].name}招聘{title}",
            scoring_template=_template(session, f"{title} 评分模板"),
        )
        plan = InterviewPlan(name="AI 视频面试（第一轮）", mode="async", round_no=1)
        plan.questions = [
            InterviewQuestion(
                position=i, text=text, think_seconds=30, answer_seconds=120, retakes=1
            )
            for i, text in enumerate(questions)
        ]
        job.plans.append(plan)
        session.add(job)
        jobs.append(job)
    session.flush()
    return jobs


def _seed_candidates(
    store: Store, session: Session, units: dict[str, OrgUnit], jobs: list[Job]
) -> None:
    for i, (name, phone, email, org) in enumerate(_CANDIDATES):
        subject = store.new_subject(session, SubjectKind.CANDIDATE)
        candidate = Candidate(subject_id=subject.id, org_unit_id=units[org].id, source="demo")
        session.add(candidate)
        candidate.name, candidate.phone, candidate.email = name, phone, email
        session.add(Application(candidate=candidate, job=jobs[i % len(jobs)]))


def demo_password(username: str) -> str:
    """Demo passwords are derived from the username so `appliance run` can print them again."""
    return f"Demo-{username}-2026"


def demo_logins(store: Store) -> list[tuple[str, str, str, str]]:
    """(role, username, password, TOTP secret) of a demo box's accounts, for the start banner."""
    from sqlalchemy import select

    with store.session() as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        return [
            (
                u.roles[0].role.value if u.roles else "-",
                u.username,
                demo_password(u.username),
                u.totp_secret or "",
            )
            for u in users
        ]
