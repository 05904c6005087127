"""The access policy: `compliance/policy.yaml` loaded once, validated, and looked up typed.

Why a file and not code: the policy is what the hospital's DPO and security admin
review (PIPL Art. 52, MLPS-3 access control); it must read as a table of who may
see what, and the permission-matrix test is generated from it.

Why the strict loader: YAML takes the last of two equal keys silently, so a second
`hr:` entry further down would quietly replace the reviewed one. Duplicate keys,
unknown roles, rules or masks, and misspelt keys fail the load with the line
number, and the box does not start on a policy it cannot read exactly.

Defaults are deny: `rule()` of a field or role the file does not name is hidden,
a role it does not name has no rows, no actions, no purposes and no media.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from appliance.personal import PersonalField
from appliance.records import Role
from compliance.masks import MASKS

POLICY_PATH = Path(__file__).with_name("policy.yaml")

CANDIDATE_ROLE = "candidate"
SYSTEM_ROLE = "system"
ROLES: tuple[str, ...] = (*(r.value for r in Role), CANDIDATE_ROLE, SYSTEM_ROLE)
"""Every role the policy may name: the staff roles, a candidate's token, the box's jobs."""

ACTIONS = ("view", "search", "export")
MEDIA_MODES = ("stream", "download")


class PolicyError(ValueError):
    """The policy file cannot be used as written; the message names the line and key."""


class FieldRule(enum.IntEnum):
    """Ordered: a rule includes every one below it (write implies read)."""

    HIDDEN = 0
    MASKED = 1
    READ = 2
    WRITE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class RowScope(enum.StrEnum):
    NONE = "none"
    ORG_SUBTREE = "org_subtree"
    ASSIGNED = "assigned"
    SELF = "self"
    ALL = "all"


@dataclass(frozen=True)
class RolePolicy:
    name: str
    rows: RowScope = RowScope.NONE
    actions: frozenset[str] = frozenset()
    purposes: tuple[str, ...] = ()
    """The first is the default purpose of a request that names none."""
    media: frozenset[str] = frozenset()

    @property
    def default_purpose(self) -> str | None:
        return self.purposes[0] if self.purposes else None


@dataclass(frozen=True)
class FieldPolicy:
    name: str
    """`table.field`, as `PersonalField.where` names it."""
    mask: str | None
    rules: Mapping[str, FieldRule] = field(default_factory=dict)


NO_ROLE = RolePolicy(name="")


@dataclass(frozen=True)
class Policy:
    version: int
    purposes: Mapping[str, str]
    roles: Mapping[str, RolePolicy]
    fields: Mapping[str, FieldPolicy]
    source: str = ""

    def role(self, name: str) -> RolePolicy:
        """The role's policy; a role the file does not name gets nothing (NO_ROLE)."""
        return self.roles.get(name, NO_ROLE)

    def rule(self, role: str, field_name: str) -> FieldRule:
        """How `role` sees `field_name` (`candidates.phone`); hidden unless the file says more."""
        entry = self.fields.get(field_name)
        if entry is None:
            return FieldRule.HIDDEN
        return entry.rules.get(role, FieldRule.HIDDEN)

    def mask_of(self, field_name: str) -> str | None:
        entry = self.fields.get(field_name)
        return entry.mask if entry else None

    def unlisted_fields(
        self, registry: Iterable[tuple[type, PersonalField]] | None = None
    ) -> list[str]:
        """Personal fields of the models that this policy does not mention (hidden for everyone;
        a test keeps this list empty so a new field gets a reviewed rule)."""
        pairs = PersonalField.registry if registry is None else registry
        return sorted({pf.where for _owner, pf in pairs} - set(self.fields))

    def unknown_fields(self) -> list[str]:
        """Policy entries naming no personal field of the models (a typo or a removed field)."""
        known = {pf.where for _owner, pf in PersonalField.registry}
        return sorted(set(self.fields) - known)


class _Lines(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key (for error messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}
        self.line = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Lines:
    loader.flatten_mapping(node)
    mapping = _Lines()
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in mapping:
            raise PolicyError(
                f"line {line}: key {key!r} appears twice in the same mapping "
                f"(first on line {mapping.lines[key]}); YAML would silently keep the last"
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = line
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Reader:
    """Validation helpers that name the file, line and dotted key of what is wrong."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, line: int, message: str) -> PolicyError:
        return PolicyError(f"{self.source} line {line}: {where}: {message}")

    def mapping(self, value: Any, where: str, line: int) -> _Lines:
        if not isinstance(value, _Lines):
            raise self.fail(where, line, f"expected a mapping, got {type(value).__name__}")
        return value

    def keys(self, value: _Lines, where: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else str(key),
                    value.lines[key],
                    f"unknown key; expected one of {', '.join(allowed)}",
                )

    def names(self, value: Any, where: str, line: int, allowed: Iterable[str]) -> tuple[str, ...]:
        allowed = tuple(allowed)
        if not isinstance(value, list):
            raise self.fail(where, line, "expected a list")
        for item in value:
            if item not in allowed:
                raise self.fail(where, line, f"{item!r} is not one of {', '.join(allowed)}")
        if len(set(value)) != len(value):
            raise self.fail(where, line, "lists an entry twice")
        return tuple(value)


def parse_policy(text: str, source: str = "policy.yaml") -> Policy:
    """Parse and validate policy text; PolicyError names the line and key of the first fault."""
    reader = _Reader(source)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    except PolicyError as exc:
        raise PolicyError(f"{source} {exc}") from None
    top = reader.mapping(doc, "(top level)", 1)
    reader.keys(top, "", ("version", "purposes", "roles", "fields"))
    for key in ("version", "purposes", "roles", "fields"):
        if key not in top:
            raise reader.fail(key, 1, "missing")
    if top["version"] != 1:
        raise reader.fail("version", top.lines["version"], "only version 1 is known")

    purposes = reader.mapping(top["purposes"], "purposes", top.lines["purposes"])
    for key, text_ in purposes.items():
        if not isinstance(key, str) or not isinstance(text_, str) or not text_.strip():
            raise reader.fail(f"purposes.{key}", purposes.lines[key], "needs a description")

    roles_doc = reader.mapping(top["roles"], "roles", top.lines["roles"])
    roles: dict[str, RolePolicy] = {}
    for name, body in roles_doc.items():
        where, line = f"roles.{name}", roles_doc.lines[name]
        if name not in ROLES:
            raise reader.fail(where, line, f"unknown role; known roles: {', '.join(ROLES)}")
        body = reader.mapping(body, where, line)
        reader.keys(body, where, ("rows", "actions", "purposes", "media"))
        rows = body.get("rows", "none")
        if rows not in RowScope.__members__.values():
            raise reader.fail(
                f"{where}.rows",
                body.lines.get("rows", line),
                f"{rows!r} is not one of {', '.join(s.value for s in RowScope)}",
            )
        get = body.get
        lines = body.lines
        role = RolePolicy(
            name=name,
            rows=RowScope(rows),
            actions=frozenset(
                reader.names(
                    get("actions", []), f"{where}.actions", lines.get("actions", line), ACTIONS
                )
            ),
            purposes=reader.names(
                get("purposes", []), f"{where}.purposes", lines.get("purposes", line), purposes
            ),
            media=frozenset(
                reader.names(
                    get("media", []), f"{where}.media", lines.get("media", line), MEDIA_MODES
                )
            ),
        )
        if role.rows is not RowScope.NONE and not role.purposes:
            raise reader.fail(where, line, "a role that reads rows needs at least one purpose")
        roles[name] = role

    fields_doc = reader.mapping(top["fields"], "fields", top.lines["fields"])
    fields: dict[str, FieldPolicy] = {}
    for name, body in fields_doc.items():
        where, line = f"fields.{name}", fields_doc.lines[name]
        if not isinstance(name, str) or name.count(".") != 1:
            raise reader.fail(where, line, "a field is named table.field (candidates.phone)")
        body = reader.mapping(body, where, line)
        reader.keys(body, where, ("mask", "roles"))
        mask = body.get("mask")
        if mask is not None and mask not in MASKS:
            raise reader.fail(
                f"{where}.mask", body.lines["mask"], f"unknown mask; known: {', '.join(MASKS)}"
            )
        rules_doc = reader.mapping(body.get("roles", _Lines()), f"{where}.roles", line)
        rules: dict[str, FieldRule] = {}
        for role_name, rule in rules_doc.items():
            rule_where, rule_line = f"{where}.roles.{role_name}", rules_doc.lines[role_name]
            if role_name not in ROLES:
                raise reader.fail(rule_where, rule_line, f"unknown role; known: {', '.join(ROLES)}")
            labels = [r.label for r in FieldRule]
            if rule not in labels:
                raise reader.fail(
                    rule_where, rule_line, f"{rule!r} is not one of {', '.join(labels)}"
                )
            rules[role_name] = FieldRule[rule.upper()]
            if rules[role_name] is FieldRule.MASKED and mask is None:
                raise reader.fail(rule_where, rule_line, "a masked rule needs the field's `mask`")
        fields[name] = FieldPolicy(name=name, mask=mask, rules=rules)

    return Policy(version=1, purposes=dict(purposes), roles=roles, fields=fields, source=source)


def load_policy(path: Path = POLICY_PATH) -> Policy:
    return parse_policy(path.read_text(encoding="utf-8"), source=path.name)


@functools.cache
def default_policy() -> Policy:
    """The box's policy, read once per process (a changed file needs a restart, by design)."""
    return load_policy()
