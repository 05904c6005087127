"""The reviewed policy file: complete for every personal field, strict when loaded, and the
masks it names keep only what they should."""

from __future__ import annotations

import pytest

from appliance.records import Role
from compliance.actors import ADMIN_DUTIES
from compliance.masks import apply_mask, mask_email, mask_id_number, mask_name, mask_phone
from compliance.policy import (
    ROLES,
    FieldRule,
    PolicyError,
    RowScope,
    default_policy,
    load_policy,
    parse_policy,
)

POLICY = default_policy()


def test_every_personal_field_has_a_policy_entry() -> None:
    """Lists each field of a model that the policy does not mention: must be empty (a new
    field gets a reviewed rule; until then it is hidden for everyone)."""
    assert POLICY.unlisted_fields() == []


def test_policy_names_no_field_the_models_lack() -> None:
    assert POLICY.unknown_fields() == []


def test_every_role_is_in_the_policy() -> None:
    assert set(POLICY.roles) == set(ROLES)


def test_administrators_and_auditors_read_no_personal_data() -> None:
    """Issue #3: none of the three administrators (nor the auditor) reads candidate data."""
    for role in (*sorted(r.value for r in ADMIN_DUTIES), Role.AUDITOR.value):
        policy = POLICY.role(role)
        assert policy.rows is RowScope.NONE
        assert not policy.actions and not policy.media
        assert all(POLICY.rule(role, f) is FieldRule.HIDDEN for f in POLICY.fields)


def test_nobody_may_download_a_recording_by_default() -> None:
    assert [r.name for r in POLICY.roles.values() if "download" in r.media] == []


def test_id_numbers_are_never_shown_whole_to_staff() -> None:
    """Only the person themselves sees their whole ID number (PIPL Art. 28)."""
    for field in ("candidates.id_number", "employees.id_number"):
        whole = {r for r in ROLES if POLICY.rule(r, field) >= FieldRule.READ}
        assert whole <= {"candidate"}


def test_unknown_role_or_field_is_denied_and_hidden() -> None:
    assert POLICY.rule("nobody", "candidates.name") is FieldRule.HIDDEN
    assert POLICY.rule("hr", "candidates.shoe_size") is FieldRule.HIDDEN
    nobody = POLICY.role("nobody")
    assert nobody.rows is RowScope.NONE and not nobody.purposes


def test_write_implies_read() -> None:
    assert FieldRule.WRITE > FieldRule.READ > FieldRule.MASKED > FieldRule.HIDDEN


def test_the_file_loads_the_same_as_the_cached_policy() -> None:
    assert load_policy() == POLICY


MINIMAL = """\
version: 1
purposes:
  screening: Reviewing applications
roles:
  hr:
    rows: org_subtree
    actions: [view]
    purposes: [screening]
fields:
  candidates.phone:
    mask: phone
    roles:
      hr: masked
"""


def test_a_minimal_policy_parses() -> None:
    policy = parse_policy(MINIMAL)
    assert policy.rule("hr", "candidates.phone") is FieldRule.MASKED
    assert policy.role("hr").default_purpose == "screening"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("      hr: masked\n", "      hr: masked\n      hr: read\n"),
            "policy.yaml line 14: key 'hr' appears twice",
        ),
        (("  hr:\n    rows", "  hrr:\n    rows"), "line 5: roles.hrr: unknown role"),
        (("      hr: masked", "      hr: visible"), "line 13: fields.candidates.phone.roles.hr"),
        (("    mask: phone\n", ""), "a masked rule needs the field's `mask`"),
        (("    mask: phone", "    mask: stars"), "line 11: fields.candidates.phone.mask"),
        (("rows: org_subtree", "rows: subtree"), "line 6: roles.hr.rows: 'subtree'"),
        (("purposes: [screening]", "purposes: [curiosity]"), "roles.hr.purposes"),
        (("actions: [view]", "actions: [view, delete]"), "roles.hr.actions"),
        (("  candidates.phone:", "  phone:"), "fields.phone: a field is named table.field"),
        (("version: 1\n", "version: 1\nextra: 1\n"), "line 2: extra: unknown key"),
        (("version: 1", "version: 2"), "only version 1"),
    ],
)
def test_policy_errors_name_the_line_and_key(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in MINIMAL
    with pytest.raises(PolicyError) as caught:
        parse_policy(MINIMAL.replace(old, new, 1), source="policy.yaml")
    assert message in str(caught.value)


def test_masks_keep_only_their_parts() -> None:
    assert mask_id_number("110101199003071234") == "1101**********1234"
    assert mask_phone("13800000000") == "138****0000"
    assert mask_phone("+86 138-0000-0000") == "138****0000"
    assert mask_email("wuzihan@example.com") == "w***@example.com"
    assert mask_name("吴子涵") == "吴**"
    assert apply_mask("text", "a private note") == "[masked]"
    assert apply_mask("phone", None) is None


@pytest.mark.parametrize("value", ["", "1", "1234", "1380000", "1101990012"])
def test_a_short_value_never_comes_back_unmasked(value: str) -> None:
    """A value too short to keep a head and a tail is starred out whole (ID number, phone)."""
    for mask in ("id_number", "phone", "name", "email"):
        masked = apply_mask(mask, value)
        assert masked is not None and masked != value
    if len(value) <= 7:
        assert set(str(apply_mask("phone", value))) == {"*"}
    if len(value) <= 8:
        assert set(str(apply_mask("id_number", value))) == {"*"}
