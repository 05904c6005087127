"""Settings: TOML < secrets file < ENCLAVE_* < --data-dir, with errors that say where."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.clock import to_local
from appliance.errors import SettingsError
from appliance.settings import DEFAULT_DATA_DIR, load_settings


def _write(path: Path, text: str, mode: int = 0o640) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_precedence_config_then_secrets_then_environment(tmp_path: Path) -> None:
    """Each later source overrides the earlier one key by key; untouched keys keep defaults."""
    config = _write(
        tmp_path / "a.toml",
        'timezone = "Asia/Urumqi"\n[web]\nport = 9001\n'
        '[smtp]\nhost = "relay.hospital.local"\nusername = "hr"\n',
    )
    secrets = _write(tmp_path / "s.toml", '[smtp]\npassword = "from-secrets"\n[web]\nport = 9002\n')
    settings = load_settings(config=config, secrets=secrets, environ={"ENCLAVE_WEB__PORT": "9003"})
    assert settings.web.port == 9003
    assert settings.smtp.password == "from-secrets"
    assert settings.smtp.host == "relay.hospital.local"
    assert settings.timezone == "Asia/Urumqi"
    assert settings.web.host == "127.0.0.1"


def test_data_dir_default_environment_and_flag(tmp_path: Path) -> None:
    """--data-dir beats ENCLAVE_DATA_DIR, which beats the config file; default /var/lib/enclave."""
    none = tmp_path / "none.toml"
    config = _write(tmp_path / "c.toml", 'data_dir = "/srv/from-config"\n')
    assert load_settings(secrets=none, environ={"ENCLAVE_CONFIG": ""}).data_dir == DEFAULT_DATA_DIR
    assert load_settings(config=config, secrets=none, environ={}).data_dir == Path(
        "/srv/from-config"
    )
    env = {"ENCLAVE_DATA_DIR": "/srv/from-env"}
    assert load_settings(config=config, secrets=none, environ=env).data_dir == Path("/srv/from-env")
    flag = load_settings(config=config, secrets=none, environ=env, data_dir=tmp_path / "flag")
    assert flag.data_dir == tmp_path / "flag"


def test_settings_object_is_frozen(tmp_path: Path) -> None:
    """Nobody changes settings at run time by accident."""
    settings = load_settings(secrets=tmp_path / "none", environ={"ENCLAVE_CONFIG": ""})
    with pytest.raises(Exception, match="frozen"):
        settings.timezone = "UTC"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("source", "text", "message"),
    [
        (
            "config",
            "[web]\nport = 99999\n",
            r"web\.port: .*less than or equal to 65535 .*config file",
        ),
        ("config", 'timezone = "Mars/Olympus"\n', r"timezone: .*unknown time zone.*config file"),
        ("config", "[web\nport = 1\n", r"config file .* is not valid TOML"),
        ("config", "colour = 'blue'\n", r"colour: unknown setting \(from config file"),
        ("env", "ENCLAVE_WEB__PORT=eighty", r"web\.port: .*integer.*environment"),
        (
            "config",
            '[smtp]\nhost = "relay"\nusername = "hr"\n',
            r"smtp\.password is required.*secrets file",
        ),
    ],
)
def test_bad_values_name_the_key_and_where_it_came_from(
    tmp_path: Path, source: str, text: str, message: str
) -> None:
    """A malformed or missing value stops loading with the key's name and its source."""
    environ: dict[str, str] = {}
    config = None
    if source == "config":
        config = _write(tmp_path / "bad.toml", text)
    else:
        name, value = text.split("=", 1)
        environ = {name: value, "ENCLAVE_CONFIG": ""}
    with pytest.raises(SettingsError, match=message):
        load_settings(config=config, secrets=tmp_path / "none.toml", environ=environ)


def test_missing_named_config_file_and_loose_secrets_file(tmp_path: Path) -> None:
    """--config naming a missing file fails; a world-readable secrets file is refused."""
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config=tmp_path / "missing.toml", environ={})
    loose = _write(tmp_path / "secrets.toml", '[smtp]\npassword = "x"\n', mode=0o644)
    with pytest.raises(SettingsError, match="mode 0644.*0640"):
        load_settings(secrets=loose, environ={"ENCLAVE_CONFIG": ""})


def test_times_are_utc_at_rest_and_shown_in_the_hospital_zone(tmp_path: Path) -> None:
    """A UTC instant displays in Asia/Shanghai by default (UTC+8, no DST)."""
    settings = load_settings(secrets=tmp_path / "none", environ={"ENCLAVE_CONFIG": ""})
    local = to_local(datetime(2026, 11, 25, 16, 30, tzinfo=UTC), settings)
    assert (local.day, local.hour, local.minute) == (26, 0, 30)
    assert local.utcoffset() is not None and local.utcoffset().total_seconds() == 8 * 3600
