"""A broken next release for the upgrade rollback drill (issue 9, item 2).

`broken_release` copies the enclave-hr wheel of a wheelhouse under a higher version,
with one more Alembic migration on top of the release's head that changes the schema
and the data and then raises: the realistic failure of an upgrade (a migration that
meets data it did not expect). The playbook must roll such an upgrade back
(ansible/roles/appliance/tasks/upgrade.yml). The copy is a valid wheel: its
dist-info folder, METADATA and RECORD (sha256 of every file) name the new version, so
pip installs it like any release.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

VERSIONS = "appliance/migrations/versions/"
DRILL_REVISION = "rollback_drill"
# What the failing migration leaves behind where the restore has not undone it.
DRILL_COLUMN = "rollback_drill"
DRILL_NAME = "changed by the broken release"
FAILURE = "rollback drill: this release's migration fails after changing the database"

_MIGRATION = '''"""rollback drill: a migration that fails half-way (tests/ops/rollback_release.py)

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("org_units", sa.Column("{column}", sa.String(40), nullable=True))
    op.execute("UPDATE org_units SET name = '{name}'")
    raise RuntimeError("{failure}")


def downgrade() -> None:
    op.drop_column("org_units", "{column}")
'''

_REVISION = re.compile(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def migration_head(files: dict[str, bytes]) -> str:
    """The one revision no other migration in the wheel builds on."""
    revisions, parents = set(), set()
    for name, data in files.items():
        if not (name.startswith(VERSIONS) and name.endswith(".py")):
            continue
        text = data.decode()
        found = _REVISION.search(text)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text)
        if down is not None:
            parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise AssertionError(f"the release's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def broken_release(wheelhouse: Path, version: str) -> Path:
    """Write enclave_hr-<version>-py3-none-any.whl into `wheelhouse`; returns its path."""
    (source,) = wheelhouse.glob("enclave_hr-*-py3-none-any.whl")
    old = source.name.split("-")[1]
    old_info, new_info = f"enclave_hr-{old}.dist-info/", f"enclave_hr-{version}.dist-info/"
    with zipfile.ZipFile(source) as wheel:
        files = {n: wheel.read(n) for n in wheel.namelist() if not n.endswith("/")}
    renamed: dict[str, bytes] = {}
    for name, data in files.items():
        if name == old_info + "RECORD":
            continue
        if name == old_info + "METADATA":
            data = re.sub(rb"(?m)^Version: .*$", f"Version: {version}".encode(), data, count=1)
        renamed[name.replace(old_info, new_info, 1)] = data
    renamed[f"{VERSIONS}9999_{DRILL_REVISION}.py"] = _MIGRATION.format(
        revision=DRILL_REVISION,
        down=migration_head(files),
        column=DRILL_COLUMN,
        name=DRILL_NAME,
        failure=FAILURE,
    ).encode()
    record = [_record_line(n, d) for n, d in renamed.items()] + [f"{new_info}RECORD,,"]
    renamed[new_info + "RECORD"] = ("\n".join(record) + "\n").encode()
    target = wheelhouse / f"enclave_hr-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in renamed.items():
            wheel.writestr(name, data)
    return target
