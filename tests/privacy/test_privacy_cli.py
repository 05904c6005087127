"""The DPO's commands (`appliance privacy|dsr|retention|bias`), run as IT runs them: a
request received, refused without a reason (refused), deleted with a certificate that
verifies offline; the record of processing, a retention dry run and a bias audit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from appliance.store import Store
from tests.privacy.privacy_helpers import add_person

APPLIANCE = Path(sys.executable).parent / "appliance"
VERIFIER = Path(__file__).resolve().parents[2] / "compliance" / "verify_privacy.py"


def appliance(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENCLAVE_CONFIG": "",
        "ENCLAVE_SECRETS": "/nonexistent/secrets.toml",
        "ENCLAVE_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [str(APPLIANCE), *args], capture_output=True, text=True, check=False, env=env
    )


def test_the_dpo_commands(demo: Store, short_tmp: Path) -> None:
    person = add_person(demo, "Cli")
    data_dir = demo.data_dir
    demo.close()

    received = appliance(
        data_dir, "dsr", "receive", "--subject", person.subject_id, "--kind", "delete"
    )
    assert received.returncode == 0, received.stderr
    match = re.search(r"Request (\d+) received; due (\S+)", received.stdout)
    assert match is not None
    request_id = match.group(1)

    refused = appliance(data_dir, "dsr", "refuse", request_id)
    assert refused.returncode == 2 and "written reason" in refused.stderr
    checked = appliance(data_dir, "dsr", "verify-identity", request_id, "--method", "id_document")
    assert checked.returncode == 0, checked.stderr

    done = appliance(data_dir, "dsr", "complete", request_id)
    assert done.returncode == 0, done.stderr
    certificate_id = re.search(r"certificate ([0-9a-f]{32})", done.stdout)
    assert certificate_id is not None
    folder = short_tmp / "certificate"
    exported = appliance(
        data_dir, "privacy", "certificate", certificate_id.group(1), "--out", str(folder)
    )
    assert exported.returncode == 0, exported.stderr
    verified = subprocess.run(
        [sys.executable, str(VERIFIER), str(folder)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout

    record = appliance(data_dir, "privacy", "record", "--markdown")
    assert record.returncode == 0 and "## Retention" in record.stdout
    dry = appliance(data_dir, "retention", "run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    out = short_tmp / "bias.csv"
    audited = appliance(data_dir, "bias", "audit", "--out", str(out))
    assert audited.returncode == 0, audited.stderr
    assert out.read_text().startswith("category,measure,group,n,hits,rate")
