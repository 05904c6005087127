"""Masks a `masked` field rule applies: enough to recognise a person, not to use the value.

Each mask keeps a fixed part of the value (the policy names which mask a field uses):
an ID number keeps its region code and last four (`1101**********1234`), a
mobile number its carrier prefix and last four (`138****0000`), the forms staff
in Chinese hospitals are used to reading. A value too short to keep anything
safely is starred out whole: a mask must never give back the value itself.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.personal import Unavailable

STAR = "*"
TEXT_MASK = "[masked]"


def _keep(value: str, head: int, tail: int) -> str:
    if len(value) <= head + tail:
        return STAR * max(len(value), 4)
    return value[:head] + STAR * (len(value) - head - tail) + value[len(value) - tail :]


def mask_id_number(value: str) -> str:
    """`110101199003071234` -> `1101**********1234`."""
    return _keep(value.strip(), 4, 4)


def mask_phone(value: str) -> str:
    """`13800000000` -> `138****0000`; spaces and dashes are dropped first."""
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return _keep(digits, 3, 4)


def mask_email(value: str) -> str:
    """`wuzihan@example.com` -> `w***@example.com` (the domain tells the employer, not who)."""
    local, at, domain = value.strip().partition("@")
    if not at or not local:
        return STAR * 4
    return f"{local[0]}***@{domain}"


def mask_name(value: str) -> str:
    """`吴子涵` -> `吴**`, `Emily Carter` -> `E***********`: the first character only."""
    value = value.strip()
    if len(value) < 2:
        return STAR * 2
    return value[0] + STAR * (len(value) - 1)


def mask_text(value: str) -> str:
    """Free text keeps nothing: any part of a note may be what identifies someone."""
    return TEXT_MASK


MASKS: dict[str, Callable[[str], str]] = {
    "id_number": mask_id_number,
    "phone": mask_phone,
    "email": mask_email,
    "name": mask_name,
    "text": mask_text,
}


def apply_mask(kind: str, value: str | Unavailable | None) -> str | None:
    """The masked form of `value`; None stays None, a shredded value stays unavailable."""
    if value is None:
        return None
    if isinstance(value, Unavailable):
        return str(value)
    return MASKS[kind](value)
