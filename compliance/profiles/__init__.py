"""Jurisdiction profiles as code: which features the law the box answers to allows.

One YAML file per profile in this folder; `Settings.jurisdiction` names the one in
force. Issue #5 needs only the expression switch; issue #8 fills the profiles out
(notices, deadlines, bias audits). A profile only ever narrows what the box does:
a feature a profile does not mention is off.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

PROFILES = Path(__file__).parent
NAMES = ("pipl", "eu", "illinois", "nyc")


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    law: list[str]
    """The provisions this profile implements, cited in notices and the audit pack."""
    expression_analysis: bool = False
    """Facial expression estimates may be produced at all (with face consent)."""
    face_analysis: bool = False
    """Face presence, gaze and identity signals may be produced (with face consent)."""


@cache
def load_profile(name: str) -> Profile:
    """The profile `name`; ValueError for one this box does not know."""
    if name not in NAMES:
        raise ValueError(f"unknown jurisdiction profile {name!r}; known: {', '.join(NAMES)}")
    data = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    return Profile(name=name, **data)
