"""The media service's network as the playbook writes it (issue 7, item 5; issue 9): one
pair of variables sets both the UDP range the media service binds (appliance.toml
`[media]`) and the range the firewall opens; the client networks reach the firewall's
sources and the media service's egress allow-list; where the data is, a sysctl drop-in
lets the media sockets have the 4 MiB receive buffer they ask for.

Rendered by Ansible itself, without a converge: the roles' defaults as the lowest inventory
variables, their vars/ as play variables, an inventory on top, and the roles' OWN template
and assert tasks (their `when` and `validate` kept) re-pointed into a temporary folder, so
a task's condition is tested as the role has it. Nothing is installed, applied or loaded.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
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

from appliance import egress
from appliance.settings import MediaSettings, Settings

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ANSIBLE / "roles"
BIN = Path(sys.executable).parent
SYSCTL = "60-enclave-media.conf"
MiB = 1 << 20

CLIENT_NETWORKS = ["10.20.0.0/16", "172.16.8.0/22", "fd00:20::/48"]
CUSTOM_BOX = {
    "appliance_media_udp_port_min": 41000,
    "appliance_media_udp_port_max": 41049,
    "appliance_media_host_addresses": ["10.20.0.15"],
    "appliance_client_networks": CLIENT_NETWORKS,
    "appliance_egress_allow_hosts": ["10.30.0.5"],
    "appliance_extra_settings": {
        "smtp": {"host": "relay.hospital.local"},
        # Listed here too: both lists end up in [egress] allow_hosts, each entry once.
        "egress": {"allow_hosts": ["sms.hospital.local", "10.30.0.5"]},
    },
}
DERIVED = ["firewall_webrtc_udp_range", "firewall_client_sources", "appliance_holds_data"]


def _role_tasks(role: str, name: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = yaml.safe_load((ROLES / role / "tasks" / name).read_text())
    return tasks


def _into_folder(task: dict[str, Any], role: str) -> dict[str, Any] | None:
    """The role's task writing into the render folder instead of its real place; None for
    tasks that would touch this machine (packages, services, file removals)."""
    task = copy.deepcopy(task)
    task.pop("notify", None)
    if "ansible.builtin.assert" in task:
        return task
    template = task.get("ansible.builtin.template")
    if template is None or task.get("no_log"):
        return None
    template["src"] = str(ROLES / role / "templates" / template["src"])
    template["dest"] = "{{ render_out }}/{{ inventory_hostname }}/" + Path(template["dest"]).name
    template.pop("owner", None)
    template.pop("group", None)
    if "nft --check" in str(template.get("validate", "")):
        template.pop("validate")  # nft is not on the test machine; the converge runs it
    return task


def _render(
    inventories: list[Path], out: Path, extra_vars: dict[str, Any] | None = None
) -> dict[str, dict[str, str]]:
    """{host: {file name: text}}: what the appliance role's config tasks and the firewall
    role write on each host, plus `derived.json` (the DERIVED variables as the host sees
    them)."""
    defaults: dict[str, object] = {}
    for role in sorted(p.name for p in ROLES.iterdir()):
        defaults.update(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))
    (out / "defaults.yml").write_text(yaml.safe_dump({"all": {"vars": defaults}}))
    tasks: list[dict[str, Any]] = [
        {
            "name": "Make the host's folder",
            "ansible.builtin.file": {
                "path": "{{ render_out }}/{{ inventory_hostname }}",
                "state": "directory",
                "mode": "0755",
            },
        }
    ]
    for role, name in (("appliance", "config.yml"), ("firewall", "main.yml")):
        tasks += [t for t in (_into_folder(t, role) for t in _role_tasks(role, name)) if t]
    tasks.append(
        {
            "name": "Write the derived variables",
            "ansible.builtin.copy": {
                "content": "{{ {"
                + ", ".join(f"'{name}': {name}" for name in DERIVED)
                + "} | to_json }}",
                "dest": "{{ render_out }}/{{ inventory_hostname }}/derived.json",
                "mode": "0644",
            },
        }
    )
    play = [
        {
            "name": "Render the media network files",
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [str(p) for p in sorted(ROLES.glob("*/vars/main.yml"))],
            "vars": {"render_out": str(out / "hosts")},
            "tasks": tasks,
        }
    ]
    (out / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    arguments = ["-i", str(out / "defaults.yml")]
    for inventory in inventories:
        arguments += ["-i", str(inventory)]
    if extra_vars:
        (out / "extra.json").write_text(json.dumps(extra_vars))
        arguments += ["-e", f"@{out / 'extra.json'}"]
    result = _ansible_playbook(arguments, out)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return {
        host.name: {f.name: f.read_text() for f in host.iterdir()}
        for host in sorted((out / "hosts").iterdir())
    }


def _ansible_playbook(arguments: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(out / "tmp"),
    )
    return subprocess.run(
        [
            BIN / "ansible-playbook",
            *arguments,
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


def _inventory(path: Path, boxes: dict[str, dict[str, Any]]) -> Path:
    """A single-box style inventory: these hosts in `box`, no worker hosts."""
    hosts = {
        name: {"ansible_host": f"192.0.2.{10 + i}", **v}
        for i, (name, v) in enumerate(boxes.items())
    }
    tree = {"all": {"children": {"box": {"hosts": hosts}, "workers": {"hosts": {}}}}}
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Two single boxes: one with the hospital's own range and networks, one on defaults
    (the shipped single inventory's group_vars on top of both)."""
    out = tmp_path_factory.mktemp("media-boxes")
    shipped = ANSIBLE / "inventories" / "single" / "group_vars" / "all.yml"
    group_vars = {"all": {"vars": yaml.safe_load(shipped.read_text())}}
    (out / "shipped.yml").write_text(yaml.safe_dump(group_vars))
    inventory = _inventory(out / "hosts.yml", {"custom-box": CUSTOM_BOX, "plain-box": {}})
    # The shipped group_vars first, the hosts (with their own variables) over them.
    return _render([out / "shipped.yml", inventory], out)


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The shipped scale-out inventory, with client networks set for every host (extra
    variables: the shipped group_vars/all.yml would win over an inventory file's)."""
    out = tmp_path_factory.mktemp("media-scaleout")
    inventory = ANSIBLE / "inventories" / "scaleout" / "hosts.yml"
    return _render([inventory], out, {"appliance_client_networks": CLIENT_NETWORKS})


def _udp_rules(nft: str) -> list[str]:
    return [line.strip() for line in nft.splitlines() if "udp dport" in line]


def _sysctl(text: str) -> dict[str, int]:
    pairs = (
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    return {key.strip(): int(value) for key, value in pairs}


def _settings(files: dict[str, str]) -> Settings:
    """appliance.toml as the appliance reads it (its own validation included)."""
    return Settings.model_validate(tomllib.loads(files["appliance.toml"]))


# --- (a) a single box with the hospital's own range and client networks ---------------


def test_one_port_range_drives_the_media_settings_and_the_firewall(
    boxes: dict[str, dict[str, str]],
) -> None:
    files = boxes["custom-box"]
    media = tomllib.loads(files["appliance.toml"])["media"]
    assert media == {"udp_port_min": 41000, "udp_port_max": 41049, "host_addresses": ["10.20.0.15"]}
    assert json.loads(files["derived.json"])["firewall_webrtc_udp_range"] == "41000-41049"
    assert _udp_rules(files["nftables.conf"]) == [
        "ip saddr 10.20.0.0/16 udp dport 41000-41049 accept",
        "ip saddr 172.16.8.0/22 udp dport 41000-41049 accept",
        "ip6 saddr fd00:20::/48 udp dport 41000-41049 accept",
    ]
    assert "40000" not in files["nftables.conf"] and "40999" not in files["nftables.conf"]


def test_the_media_service_binds_what_the_firewall_opens(boxes: dict[str, dict[str, str]]) -> None:
    """The media service's own reading of the rendered file (`webapp.media.__main__`)."""
    from webapp.media.__main__ import ice_policy

    policy = ice_policy(
        _settings(boxes["custom-box"]), argparse.Namespace(udp_ports=None, host_address=None)
    )
    assert policy.ports == range(41000, 41050) and policy.host_addresses == ("10.20.0.15",)


def test_client_networks_open_the_portal_to_them_only(boxes: dict[str, dict[str, str]]) -> None:
    files = boxes["custom-box"]
    assert json.loads(files["derived.json"])["firewall_client_sources"] == CLIENT_NETWORKS
    https = [
        line.strip() for line in files["nftables.conf"].splitlines() if "tcp dport { 443 }" in line
    ]
    assert https == [
        "ip saddr 10.20.0.0/16 tcp dport { 443 } accept",
        "ip saddr 172.16.8.0/22 tcp dport { 443 } accept",
        "ip6 saddr fd00:20::/48 tcp dport { 443 } accept",
    ]


def test_client_networks_join_the_egress_allow_list_without_dropping_others(
    boxes: dict[str, dict[str, str]],
) -> None:
    settings = _settings(boxes["custom-box"])
    assert settings.egress.allow_hosts == (*CLIENT_NETWORKS, "10.30.0.5", "sms.hospital.local")
    assert settings.smtp.host == "relay.hospital.local"
    # The guard of the media process, built from this file: a kiosk's and a VPN
    # browser's addresses may be sent media; an address outside is not.
    policy = egress.policy_for(settings, "media")
    for browser in ("10.20.3.4", "172.16.9.200", "fd00:20::17"):
        assert policy.allows_address(ipaddress.ip_address(browser)), browser
    assert not policy.allows_address(ipaddress.ip_address("192.0.2.99"))
    assert not policy.allows_address(ipaddress.ip_address("172.16.12.1"))


def test_the_box_gets_udp_buffers_for_the_media_service(boxes: dict[str, dict[str, str]]) -> None:
    from webapp.media.ice import RECEIVE_BUFFER_BYTES

    values = _sysctl(boxes["custom-box"][SYSCTL])
    assert values["net.core.rmem_max"] >= max(4 * MiB, RECEIVE_BUFFER_BYTES)
    assert values["net.core.rmem_default"] >= 4 * MiB
    assert values["net.core.wmem_max"] >= 4 * MiB
    for key in values:  # each one a real kernel setting, as sysctl --load needs
        assert (Path("/proc/sys") / key.replace(".", "/")).exists(), key


def test_media_kernel_settings_are_applied_on_a_live_host_only() -> None:
    handlers = yaml.safe_load((ROLES / "appliance" / "handlers" / "main.yml").read_text())
    names = [h["name"] for h in handlers]
    apply = handlers[names.index("Apply the media kernel settings")]
    assert apply["ansible.builtin.command"] == f"sysctl --load /etc/sysctl.d/{SYSCTL}"
    assert apply["when"] == "base_live_system | bool"
    # Before the restart, so the media service's new sockets get the new limits.
    assert names.index("Apply the media kernel settings") < names.index("Restart the appliance")
    write = next(
        t for t in _role_tasks("appliance", "config.yml") if "kernel settings (UDP" in t["name"]
    )
    assert write["notify"] == "Apply the media kernel settings"
    assert write["ansible.builtin.template"]["dest"] == f"/etc/sysctl.d/{SYSCTL}"


def test_a_box_on_defaults_opens_the_range_the_media_service_binds(
    boxes: dict[str, dict[str, str]],
) -> None:
    files = boxes["plain-box"]
    default = MediaSettings()
    settings = _settings(files)
    assert (settings.media.udp_port_min, settings.media.udp_port_max) == (
        default.udp_port_min,
        default.udp_port_max,
    )
    assert settings.media.host_addresses == ()
    assert _udp_rules(files["nftables.conf"]) == [
        f"udp dport {default.udp_port_min}-{default.udp_port_max} accept"
    ]
    assert settings.egress.allow_hosts == ()
    assert SYSCTL in files


def test_a_reversed_port_range_stops_the_play(tmp_path: Path) -> None:
    inventory = _inventory(
        tmp_path / "hosts.yml",
        {"bad-box": {"appliance_media_udp_port_min": 40199, "appliance_media_udp_port_max": 40000}},
    )
    with pytest.raises(AssertionError, match="must be a range within 1024-65535"):
        _render([inventory], tmp_path)


# --- (b) scale-out: a worker host gets none of it ---------------------------------------


@pytest.mark.parametrize("host", ["enclave-worker-1", "enclave-worker-2"])
def test_a_worker_host_opens_no_udp_and_gets_no_media_settings(
    scaleout: dict[str, dict[str, str]], host: str
) -> None:
    files = scaleout[host]
    derived = json.loads(files["derived.json"])
    assert derived["appliance_holds_data"] is False
    assert derived["firewall_webrtc_udp_range"] == ""
    assert _udp_rules(files["nftables.conf"]) == []
    assert not re.search(r"dport \{ 443 \}", files["nftables.conf"])
    assert SYSCTL not in files
    written = tomllib.loads(files["appliance.toml"])
    assert "media" not in written
    assert written["egress"]["allow_hosts"] == []
    removal = next(
        t
        for t in _role_tasks("appliance", "config.yml")
        if t["name"].startswith("Remove the media kernel")
    )
    assert removal["ansible.builtin.file"] == {"path": f"/etc/sysctl.d/{SYSCTL}", "state": "absent"}
    assert removal["when"] == "not appliance_holds_data | bool"


def test_the_scale_out_box_keeps_the_media_network(scaleout: dict[str, dict[str, str]]) -> None:
    files = scaleout["enclave-box"]
    assert (
        _udp_rules(files["nftables.conf"])[0]
        == "ip saddr 10.20.0.0/16 udp dport 40000-40199 accept"
    )
    assert _settings(files).egress.allow_hosts == tuple(CLIENT_NETWORKS)
    assert SYSCTL in files
