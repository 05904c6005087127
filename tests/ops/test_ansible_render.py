"""The playbook's templates, rendered by Ansible itself with the role defaults and each
shipped inventory's variables, without a converge (issue 9: scale-out, metrics, models
from the bundle, upgrade rollback).

The render runs `ansible-playbook` on this machine with the local connection and writes
only into a temporary folder: the role defaults go in as the lowest-precedence inventory
variables (as roles' defaults are), the roles' vars/ as play variables, then the shipped
inventory and its group_vars on top, as in a real run. Nothing is installed or started.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.settings import Settings
from appliance.store import Store

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ANSIBLE / "roles"
BIN = Path(sys.executable).parent
WORKERS = {"enclave-worker-1": "192.0.2.21", "enclave-worker-2": "192.0.2.22"}
BOX_IP = "192.0.2.10"

BOX_TEMPLATES = {
    "nftables.conf": "firewall/templates/nftables.conf.j2",
    "enclave-redis-config": "redis/templates/enclave-redis-config.j2",
    "enclave-redis.service": "redis/templates/enclave-redis.service.j2",
    "enclave-internal-api.service": "appliance/templates/enclave-internal-api.service.j2",
    "enclave-metrics.service": "appliance/templates/enclave-metrics.service.j2",
    "appliance.toml": "appliance/templates/appliance.toml.j2",
}
WORKER_TEMPLATES = {
    "nftables.conf": "firewall/templates/nftables.conf.j2",
    "enclave-remote-worker.service": "workers/templates/enclave-remote-worker.service.j2",
    "appliance.toml": "appliance/templates/appliance.toml.j2",
}
DERIVED = [
    "appliance_units",
    "appliance_units_absent",
    "appliance_internal_api_enabled",
    "redis_tls_enabled",
    "redis_tls_workers",
    "tls_worker_names",
    "firewall_worker_sources",
    "firewall_worker_tcp_ports",
    "workers_local_queues",
    "workers_remote",
    "workers_remote_box_address",
]


def _render(inventory: str, out: Path) -> dict[str, dict[str, str]]:
    """{host: {file name: text}} for every host of the inventory; `derived.json` holds the
    derived variables of DERIVED as the host sees them."""
    defaults: dict[str, object] = {}
    for role in sorted(p.name for p in ROLES.iterdir()):
        defaults.update(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))
    (out / "defaults.yml").write_text(yaml.safe_dump({"all": {"vars": defaults}}))
    role_vars = [str(p) for p in sorted(ROLES.glob("*/vars/main.yml"))]
    play = [
        {
            "name": "Render the templates",
            "hosts": "all",
            "gather_facts": False,
            "vars_files": role_vars,
            "vars": {
                "render_out": str(out / "hosts"),
                "render_box": {k: str(ROLES / v) for k, v in BOX_TEMPLATES.items()},
                "render_worker": {k: str(ROLES / v) for k, v in WORKER_TEMPLATES.items()},
            },
            "tasks": [
                {
                    "name": "Make the host's folder",
                    "ansible.builtin.file": {
                        "path": "{{ render_out }}/{{ inventory_hostname }}",
                        "state": "directory",
                        "mode": "0755",
                    },
                },
                {
                    "name": "Render",
                    "ansible.builtin.template": {
                        "src": "{{ item.value }}",
                        "dest": "{{ render_out }}/{{ inventory_hostname }}/{{ item.key }}",
                        "mode": "0644",
                    },
                    "loop": "{{ (render_box if 'box' in group_names else render_worker)"
                    " | dict2items }}",
                },
                {
                    "name": "Write the derived variables",
                    "ansible.builtin.copy": {
                        "content": "{{ {"
                        + ", ".join(f"'{name}': {name}" for name in DERIVED)
                        + "} | to_json }}",
                        "dest": "{{ render_out }}/{{ inventory_hostname }}/derived.json",
                        "mode": "0644",
                    },
                },
            ],
        }
    ]
    (out / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(out / "tmp"),
    )
    result = subprocess.run(
        [
            BIN / "ansible-playbook",
            "-i",
            str(out / "defaults.yml"),
            "-i",
            f"inventories/{inventory}/hosts.yml",
            str(out / "render.yml"),
            "-e",
            "ansible_connection=local",
            "-e",
            "ansible_become=false",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=ANSIBLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    rendered: dict[str, dict[str, str]] = {}
    for host in sorted((out / "hosts").iterdir()):
        rendered[host.name] = {f.name: f.read_text() for f in host.iterdir()}
    return rendered


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return _render("scaleout", tmp_path_factory.mktemp("scaleout"))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return _render("single", tmp_path_factory.mktemp("single"))


def _derived(files: dict[str, str]) -> dict[str, Any]:
    derived: dict[str, Any] = json.loads(files["derived.json"])
    return derived


def _unit(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _accepts(nft: str, port: int) -> list[str]:
    return [line.strip() for line in nft.splitlines() if re.search(rf"\b{port}\b", line)]


# --- scale-out: the box ----------------------------------------------------------------


def test_box_firewall_opens_redis_tls_and_internal_api_to_worker_hosts_only(
    scaleout: dict[str, dict[str, str]],
) -> None:
    nft = scaleout["enclave-box"]["nftables.conf"]
    expected = [f"ip saddr {ip} tcp dport {{ 6380, 8444 }} accept" for ip in WORKERS.values()]
    for port in (6380, 8444):
        assert _accepts(nft, port) == expected, nft
    assert f"saddr {BOX_IP}" not in nft
    # The portal stays open to the hospital network as before; metrics never.
    assert "tcp dport { 443 } accept" in nft and "9464" not in nft


def test_worker_hosts_firewall_opens_nothing_for_scale_out(
    scaleout: dict[str, dict[str, str]],
) -> None:
    for host in WORKERS:
        nft = scaleout[host]["nftables.conf"]
        assert not _accepts(nft, 6380) and not _accepts(nft, 8444), nft
        assert "tcp dport 22 accept" in nft and "443" not in nft


def test_box_redis_config_helper_adds_the_tls_port_for_the_worker_hosts(
    scaleout: dict[str, dict[str, str]],
) -> None:
    helper = scaleout["enclave-box"]["enclave-redis-config"]
    compile(helper, "enclave-redis-config", "exec")
    assert re.search(
        r"queue\.redis_tls_config\(\s*keys,\s*settings\.data_dir / \"certs\",\s*\"0\.0\.0\.0\","
        r"\s*6380,\s*tuple\(\[\"enclave-worker-1\", \"enclave-worker-2\"\]\),",
        helper,
    ), helper
    unit = _unit(scaleout["enclave-box"]["enclave-redis.service"])
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert unit["ExecStartPre"] == ["/opt/enclave/bin/enclave-redis-config"]


def test_rendered_redis_helper_writes_a_tls_config_from_the_box_keys(
    scaleout: dict[str, dict[str, str]], store: Store, settings: Settings, tmp_path: Path
) -> None:
    """The helper as rendered for the box, run against a real data dir: redis.conf gets the
    unix socket, the TLS port with client certificates required, and one ACL user per
    worker host (appliance.queue.redis_tls_config)."""
    helper = tmp_path / "enclave-redis-config"
    helper.write_text(scaleout["enclave-box"]["enclave-redis-config"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        ENCLAVE_CONFIG="",
        ENCLAVE_SECRETS="/nonexistent/secrets.toml",
        ENCLAVE_DATA_DIR=str(settings.data_dir),
        PYTHONPATH=str(REPO),
    )
    result = subprocess.run(
        [sys.executable, str(helper)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    conf = (settings.data_dir / "redis" / "redis.conf").read_text().splitlines()
    assert "port 0" in conf and "tls-port 6380" in conf and "bind 0.0.0.0" in conf
    assert "tls-auth-clients yes" in conf
    assert f"tls-ca-cert-file {settings.data_dir / 'certs' / 'ca.pem'}" in conf
    users = [line.split()[1] for line in conf if line.startswith("user ")]
    assert users == list(WORKERS)


def test_box_runs_the_internal_api_over_mtls(scaleout: dict[str, dict[str, str]]) -> None:
    unit = _unit(scaleout["enclave-box"]["enclave-internal-api.service"])
    assert unit["ExecStart"] == [
        "/opt/enclave/venv/bin/appliance internal-api --data-dir /var/lib/enclave"
        " --host 0.0.0.0 --port 8444"
    ]
    assert unit["User"] == ["enclave"] and unit["WantedBy"] == ["enclave.target"]
    assert unit["CapabilityBoundingSet"] == [""] and "NoNewPrivileges" in unit
    derived = _derived(scaleout["enclave-box"])
    assert "enclave-internal-api" in derived["appliance_units"]
    assert derived["tls_worker_names"] == list(WORKERS)
    assert derived["redis_tls_workers"] == list(WORKERS)
    assert derived["workers_local_queues"] == [
        "realtime",
        "analysis",
        "documents",
        "outbox",
        "maintenance",
    ]


# --- scale-out: the worker hosts -------------------------------------------------------


@pytest.mark.parametrize("host", list(WORKERS))
def test_worker_host_runs_the_remote_worker_as_its_own_user_with_its_certificate(
    scaleout: dict[str, dict[str, str]], host: str
) -> None:
    files = scaleout[host]
    unit = _unit(files["enclave-remote-worker.service"])
    creds = "/etc/enclave-worker"
    device = "cuda" if host == "enclave-worker-2" else "cpu"
    assert unit["ExecStart"] == [
        "/opt/enclave/venv/bin/python -m workers.remote"
        " --box https://enclave.hospital.local:8444"
        f" --cert {creds}/{host}.pem --key {creds}/{host}.key --ca {creds}/ca.pem"
        f" --redis enclave.hospital.local:6380 --redis-password-file {creds}/redis-password"
        f" --device {device}"
    ]
    assert unit["User"] == ["enclave-worker"] and unit["Group"] == ["enclave-worker"]
    assert unit["InaccessiblePaths"] == ["-/var/lib/enclave -/etc/enclave"]
    if device == "cuda":
        assert "/dev/nvidia0 rw" in unit["DeviceAllow"] and "PrivateDevices" not in unit
    else:
        assert unit["PrivateDevices"] == ["yes"]
    derived = _derived(files)
    assert derived["workers_remote"] is True and derived["workers_local_queues"] == []
    assert derived["appliance_units"] == []
    assert derived["redis_tls_enabled"] is True  # (the redis role does not run here)


# --- metrics --------------------------------------------------------------------------


@pytest.mark.parametrize("inventory", ["single", "scaleout"])
def test_metrics_unit_serves_on_loopback_by_default(
    inventory: str, single: dict[str, dict[str, str]], scaleout: dict[str, dict[str, str]]
) -> None:
    box = (single if inventory == "single" else scaleout)["enclave-box"]
    unit = _unit(box["enclave-metrics.service"])
    assert unit["ExecStart"] == [
        "/opt/enclave/venv/bin/appliance metrics --data-dir /var/lib/enclave"
    ]
    assert unit["User"] == ["enclave"] and unit["WantedBy"] == ["enclave.target"]
    settings = tomllib.loads(box["appliance.toml"])
    assert settings["metrics"] == {"host": "127.0.0.1", "port": 9464}
    assert "enclave-metrics" in _derived(box)["appliance_units"]


# --- a single box: nothing of scale-out -----------------------------------------------


def test_single_box_has_no_scale_out_port_or_unit(single: dict[str, dict[str, str]]) -> None:
    box = single["enclave-box"]
    derived = _derived(box)
    assert derived["appliance_internal_api_enabled"] is False
    assert derived["redis_tls_enabled"] is False and derived["firewall_worker_sources"] == []
    assert "enclave-internal-api" in derived["appliance_units_absent"]
    assert derived["tls_worker_names"] == [] and derived["workers_remote"] is False
    assert not _accepts(box["nftables.conf"], 6380) and not _accepts(box["nftables.conf"], 8444)
    assert "redis_tls_config" not in box["enclave-redis-config"]
    compile(box["enclave-redis-config"], "enclave-redis-config", "exec")
    assert _unit(box["enclave-redis.service"])["RestrictAddressFamilies"] == ["AF_UNIX"]


# --- models from the bundle, upgrade rollback: the tasks themselves ----------------------


def _tasks(path: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = yaml.safe_load((ROLES / path).read_text())
    return tasks


def test_models_are_fetched_from_the_bundle_when_it_carries_them() -> None:
    main = _tasks("appliance/tasks/main.yml")
    step = next(t for t in main if t.get("ansible.builtin.import_tasks") == "models.yml")
    assert "appliance_bundle_dir | length > 0" in str(step["when"])
    names = [t["name"] for t in main]
    assert names.index(step["name"]) < names.index("Initialise the data dir and migrate it")
    find, fetch = _tasks("appliance/tasks/models.yml")
    assert find["ansible.builtin.find"]["paths"] == "{{ appliance_bundle_dir }}/models"
    argv = fetch["ansible.builtin.command"]["argv"]
    assert argv[1:] == ["models", "fetch", "--from", "{{ appliance_bundle_dir }}/models"]
    assert fetch["when"] == "appliance_bundle_models.matched > 0"
    assert "extracted and verified" in str(fetch["changed_when"])


def test_a_failed_upgrade_restores_the_previous_release_and_the_backup() -> None:
    (upgrade,) = _tasks("appliance/tasks/upgrade.yml")
    block = [t["name"] for t in upgrade["block"]]
    rescue = upgrade["rescue"]
    assert block.index("Back up the box with the release it runs now (encrypted)") < block.index(
        "Switch appliance_venv to the new release"
    )
    assert block[-1] == "Wait for /healthz of the new release to say ok"
    back = next(t for t in rescue if "back to the previous" in t["name"])
    assert back["ansible.builtin.file"]["src"] == "{{ appliance_previous_release }}"
    restore = next(t for t in rescue if t["name"].startswith("Restore"))
    argv = restore["ansible.builtin.command"]["argv"]
    assert argv[4:6] == ["{{ appliance_previous_release }}/bin/appliance", "restore"]
    assert "--force" in argv and "--key-file" in argv and "--keyring" in argv
    assert "ROLLED BACK" in rescue[-1]["ansible.builtin.fail"]["msg"]
    readme = (ANSIBLE / "README.md").read_text()
    assert "## Upgrades and rollback" in readme
