"""The Vagrantfile: a single-box VM and a box + worker pair, provisioned by the same playbook."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_vagrant_validate_passes(tmp_path: Path) -> None:
    """`vagrant validate` (Debian's vagrant, with vagrant-libvirt as the provider) accepts it."""
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.fail(
            "vagrant is not installed: `make install-test` installs vagrant vagrant-libvirt"
        )
    env = dict(os.environ)
    # Keep Vagrant's per-project state out of the checkout.
    env["VAGRANT_DOTFILE_PATH"] = str(tmp_path / "dotfile")
    env["VAGRANT_HOME"] = str(tmp_path / "home")
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    result = subprocess.run(
        [vagrant, "validate", "--no-color"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout


def test_vms_are_provisioned_by_the_playbook_alone() -> None:
    """Both set-ups run ansible/site.yml; there is no shell provisioner."""
    text = (REPO / "Vagrantfile").read_text()
    for name in ("single", "pair-box", "pair-worker"):
        assert f'config.vm.define "{name}"' in text
    assert 'ansible.playbook = "ansible/site.yml"' in text
    assert not re.search(r'provision\s+"shell"|provision\s+:shell', text)
    assert (REPO / "ansible" / "site.yml").is_file()
