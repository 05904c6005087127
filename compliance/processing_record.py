"""The record of processing activities (GDPR Art. 30; GB/T 35273-2020 11.3), generated.

Written from the reviewed field policy (`compliance/policy.yaml`: purposes, who
processes for each, which personal fields), the retention schedules, the consent
purposes and notices in force, the jurisdiction profile and the impact
assessments, so it can never drift from what the box enforces. `build` returns it
as a dict (the audit pack's JSON); `to_markdown` renders it for people.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from appliance.settings import Settings
from compliance import pia, profiles, register, retention
from compliance.policy import CANDIDATE_ROLE, SYSTEM_ROLE, FieldRule, Policy, default_policy

SENSITIVE = (
    "candidates.id_number",
    "employees.id_number",
    "face_signals.timeline",
    "face_signals.embedding",
    "expression_signals.signals",
    "equality_data.categories",
)
"""Sensitive personal information (PIPL Art. 28: biometrics, ID numbers; equality data)."""

SECURITY_MEASURES = (
    "Everything on one on-premise box; no call to the outside world (no transfers abroad).",
    "SQLCipher (AES-256) database; personal fields sealed again under a per-person key; "
    "files in AES-256-GCM chunks under the same key.",
    "Deletion destroys the person's key (crypto-shredding), backups included (PIPL Art. 47).",
    "One permission gate: row scope and field rules from the reviewed policy; every access "
    "of personal data in a tamper-evident, signed audit log (Merkle tree, GPG checkpoints).",
    "Three separate administrator roles (MLPS-3); second factor for staff sign-in.",
    "Face data only with separate consent; expression analysis only where the law allows.",
)


def _subjects_of(field: str) -> str:
    return "employees" if field.startswith("employees.") else "candidates"


def activities(policy: Policy) -> list[dict[str, Any]]:
    """One activity per purpose: who processes, which fields (how), whose data."""
    out = []
    for purpose, description in policy.purposes.items():
        roles = sorted(name for name, role in policy.roles.items() if purpose in role.purposes)
        fields: dict[str, dict[str, str]] = {}
        for name, entry in policy.fields.items():
            for role in roles:
                rule = entry.rules.get(role, FieldRule.HIDDEN)
                if rule > FieldRule.HIDDEN:
                    fields.setdefault(name, {})[role] = rule.label
        out.append(
            {
                "purpose": purpose,
                "description": description,
                "processed_by": roles,
                "recipients": [r for r in roles if r not in (CANDIDATE_ROLE, SYSTEM_ROLE)],
                "data_subjects": sorted({_subjects_of(f) for f in fields}),
                "personal_data": [
                    {"field": f, "sensitive": f in SENSITIVE, "access": access}
                    for f, access in sorted(fields.items())
                ],
                "transfers": "none: the box makes no outside calls",
            }
        )
    return out


def build(
    settings: Settings, db: Session | None = None, policy: Policy | None = None
) -> dict[str, Any]:
    policy = policy or default_policy()
    profile = profiles.load_profile(settings.jurisdiction)
    record: dict[str, Any] = {
        "format": "enclave-hr-processing-record/1",
        "controller": settings.privacy.controller,
        "dpo_contact": settings.privacy.dpo_contact,
        "jurisdiction": {"profile": profile.name, "title": profile.title, "law": profile.law},
        "features": {
            f: {
                "allowed_by_profile": profile.allows(f),
                "impact_assessment_required": f in profile.impact_assessment,
            }
            for f in profiles.FEATURES
        },
        "activities": activities(policy),
        "consent_purposes": [
            {
                "purpose": p.value,
                "title": p.title_en,
                "sensitive": p.sensitive,
                "covers": p.covers,
                "on_withdrawal": p.on_withdrawal,
            }
            for p in register.PURPOSES.values()
        ],
        "retention": retention.schedule(settings),
        "security_measures": list(SECURITY_MEASURES),
        "policy_version": policy.version,
    }
    if db is not None:
        for feature, entry in record["features"].items():
            current = pia.current(db, feature)
            entry["impact_assessment"] = None if current is None else current.id
        for item in record["consent_purposes"]:
            notice = register.current_notice(db, item["purpose"])
            item["notice_in_force"] = None if notice is None else notice.version
    return record


def to_markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Record of processing activities",
        "",
        f"Controller: {record['controller']}  ",
        f"Data-protection officer: {record['dpo_contact']}  ",
        f"Jurisdiction profile: {record['jurisdiction']['title']}",
        "",
        "## Activities",
    ]
    for act in record["activities"]:
        lines += [
            "",
            f"### {act['purpose']}: {act['description']}",
            f"- processed by: {', '.join(act['processed_by']) or '-'}",
            f"- data subjects: {', '.join(act['data_subjects']) or '-'}",
            f"- transfers: {act['transfers']}",
            "- personal data:",
        ]
        for item in act["personal_data"]:
            flag = " (sensitive)" if item["sensitive"] else ""
            access = ", ".join(f"{r} {a}" for r, a in sorted(item["access"].items()))
            lines.append(f"  - `{item['field']}`{flag}: {access}")
    lines += ["", "## Consent purposes"]
    for item in record["consent_purposes"]:
        flag = " (sensitive, separate consent)" if item["sensitive"] else ""
        lines.append(f"- {item['purpose']}{flag}: {item['covers']}")
    lines += ["", "## Retention", ""]
    lines += [
        f"- {r['title']}: {r['action']} after {r['days']} days from {r['counted_from']} "
        f"({r['law']})"
        for r in record["retention"]
    ]
    lines += ["", "## Security measures", ""]
    lines += [f"- {m}" for m in record["security_measures"]]
    return "\n".join(lines) + "\n"
