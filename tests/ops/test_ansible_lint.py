"""The Ansible tree: syntax, ansible-lint (production profile, offline) and role conventions.

These run on every CI machine without touching it: `--syntax-check` parses the
playbook with each inventory, ansible-lint reads the whole tree with the
collections vendored under ansible/collections (no Galaxy).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (ANSIBLE / "roles").iterdir() if p.is_dir())


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: `make install-test` installs ansible-core and ansible-lint"
        )
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["ANSIBLE_CONFIG"] = str(ANSIBLE / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["NO_COLOR"] = "1"
    return env


@pytest.mark.parametrize("inventory", ["single", "scaleout"])
def test_playbook_syntax_check(inventory: str) -> None:
    """site.yml parses with each shipped inventory (roles, handlers, templates' references)."""
    result = subprocess.run(
        [
            _tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            f"inventories/{inventory}/hosts.yml",
            "site.yml",
        ],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile_offline() -> None:
    """ansible-lint passes the whole tree at the production profile, with no network."""
    config = ANSIBLE / ".ansible-lint"
    settings = yaml.safe_load(config.read_text())
    assert settings["profile"] == "production" and settings["offline"] is True
    result = subprocess.run(
        [_tool("ansible-lint"), "--offline", "-c", str(config), "--nocolor"],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-8000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_prefixed_and_commented(role: str) -> None:
    """Each variable in defaults/main.yml starts with the role's name and has a comment above."""
    path = ANSIBLE / "roles" / role / "defaults" / "main.yml"
    lines = path.read_text().splitlines()
    names = list(yaml.safe_load(path.read_text()))
    assert names, f"{path} defines no variable"
    for name in names:
        assert name.startswith(f"{role}_"), f"{path}: {name} lacks the {role}_ prefix"
        index = next(i for i, line in enumerate(lines) if re.match(rf"{name}:", line))
        assert index > 0 and lines[index - 1].startswith("#"), (
            f"{path}: {name} has no comment line right above it"
        )


def test_roles_have_one_concern_each() -> None:
    """The roles the issue names exist, each with defaults, tasks and metadata."""
    assert set(ROLES) >= {"base", "redis", "appliance", "workers", "tls", "backup", "firewall"}
    for role in ROLES:
        for part in ("defaults/main.yml", "tasks/main.yml", "meta/main.yml"):
            assert (ANSIBLE / "roles" / role / part).is_file(), f"{role} has no {part}"


def test_chroot_connection_plugin_is_vendored() -> None:
    """The one collection plugin we use is in the tree (no Galaxy here), with its licence."""
    general = ANSIBLE / "collections/ansible_collections/community/general"
    assert (general / "plugins/connection/chroot.py").is_file()
    assert (general / "LICENSES/GPL-3.0-or-later.txt").is_file()
    result = subprocess.run(
        [_tool("ansible-doc"), "-t", "connection", "community.general.chroot"],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
