"""No egress, enforced inside every process of the box (issue 9, item 6).

`install(settings, process)` adds a Python audit hook (PEP 578) that sees every
connect, send-to-address and name lookup made through Python's `socket` module,
whoever calls it: the standard library (`smtplib`, `urllib.request`), requests and
urllib3, `huggingface_hub`, asyncio, ldap3, redis-py. It allows

- loopback addresses and unix sockets (redis, the media socket, syslog),
- the hosts the settings name: `smtp.host`, the host of `sms.url` (the SMS gateway),
  the host of `auth.ldap.url`, the box's
  own names (`web.hostnames`) and `egress.allow_hosts` (names, IPs, CIDR networks:
  an SMS gateway, the box seen from a scale-out worker host),

and refuses anything else by raising `EgressRefused` (a `PermissionError`, so
libraries treat it as a failed connection) before a packet leaves, logging one
line with the destination, the process and the calling modules: never a payload.

Out of reach: native code that calls libc `connect()` itself (a C library's own
HTTP client, a subprocess). The firewall role's output policy covers those; this
hook is the second wall and the one that names the culprit.

The hook cannot be removed once added (audit hooks are permanent), which is why
the test suite runs guarded code in subprocesses. It is not a boundary against
hostile code in the process (that code could use ctypes); it stops libraries
that phone home (telemetry, model downloads) and mistakes in our own code.
`egress.guard = false` turns it off for development only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from appliance.settings import Settings

log = logging.getLogger("enclave.egress")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_CHECKED_ADDRESS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_CHECKED_NAME = frozenset({"socket.getaddrinfo", "socket.gethostbyname"})
_CHECKED_REVERSE = frozenset({"socket.gethostbyaddr", "socket.getnameinfo"})
_SKIP_MODULES = frozenset({"socket", __name__, "selectors", "ssl", "asyncio.selector_events"})


class EgressRefused(PermissionError):
    """A connection or lookup outside loopback and the configured hosts (issue 9, item 6)."""


@dataclass
class EgressPolicy:
    """What one process may reach; `learned` grows with the addresses allowed names resolve to."""

    process: str
    names: frozenset[str]
    networks: tuple[IpNetwork, ...]
    learned: set[IpAddress] = field(default_factory=set)

    def allows_name(self, host: str) -> bool:
        name = host.rstrip(".").lower()
        if not name or name in LOCAL_NAMES or name in self.names:
            return True
        address = _ip(name)
        return address is not None and self.allows_address(address)

    def allows_address(self, address: IpAddress) -> bool:
        mapped = getattr(address, "ipv4_mapped", None) or address
        if mapped.is_loopback or mapped.is_unspecified or mapped in self.learned:
            return True
        return any(mapped in net for net in self.networks if net.version == mapped.version)


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def configured_hosts(settings: Settings) -> list[str]:
    """Every destination the settings name, as written there."""
    hosts = [settings.smtp.host] if settings.smtp.host else []
    if settings.sms.url:
        sms_host = urlsplit(settings.sms.url).hostname
        hosts += [sms_host] if sms_host else []
    if settings.auth.ldap.url:
        ldap_host = urlsplit(settings.auth.ldap.url).hostname
        hosts += [ldap_host] if ldap_host else []
    return [*hosts, *settings.web.hostnames, *settings.egress.allow_hosts]


def policy_for(settings: Settings, process: str) -> EgressPolicy:
    # The box's own name: smtplib's EHLO looks it up (socket.getfqdn), no DNS server needed.
    names: set[str] = {socket.gethostname().lower()}
    networks: list[IpNetwork] = []
    for host in configured_hosts(settings):
        try:
            networks.append(ipaddress.ip_network(host, strict=False))
        except ValueError:
            names.add(host.rstrip(".").lower())
    return EgressPolicy(process, frozenset(names), tuple(networks))


# --- the hook -----------------------------------------------------------------------------

_policy: EgressPolicy | None = None
_hooked = False
_inside = threading.local()


def install(settings: Settings, process: str) -> EgressPolicy | None:
    """Guard this process from now on (idempotent: a second call replaces the policy)."""
    global _policy, _hooked
    if not settings.egress.guard:
        log.warning("egress guard is OFF in %s (egress.guard = false): development only", process)
        return None
    _policy = policy_for(settings, process)
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    log.info("egress guard on in %s: allowed %s", process, sorted(_policy.names) or "-")
    return _policy


def active_policy() -> EgressPolicy | None:
    return _policy


def _audit(event: str, args: tuple[Any, ...]) -> None:
    policy = _policy
    if policy is None or not event.startswith("socket.") or getattr(_inside, "busy", False):
        return
    _inside.busy = True
    try:
        _check(policy, event, args)
    finally:
        _inside.busy = False


def _check(policy: EgressPolicy, event: str, args: tuple[Any, ...]) -> None:
    if event in _CHECKED_ADDRESS:
        address = args[1] if len(args) > 1 else None
        if address is not None and not _address_allowed(policy, address):
            _refuse(policy, event, _describe(address))
    elif event in _CHECKED_NAME:
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode("idna", "replace")
        if host is not None and not policy.allows_name(str(host)):
            port = args[1] if event == "socket.getaddrinfo" else None
            _refuse(policy, event, f"{host}:{port}" if port else str(host))
        if host and str(host).lower() in policy.names:
            _learn(policy, str(host))
    elif event in _CHECKED_REVERSE:
        target = args[0][0] if isinstance(args[0], tuple) else args[0]
        if not policy.allows_name(str(target)):
            _refuse(policy, event, str(target))


def _address_allowed(policy: EgressPolicy, address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX path (str or bytes): a local socket
    if not address or not isinstance(address[0], str):
        return True  # AF_NETLINK (pid, groups) and the like: the local kernel
    ip = _ip(address[0])
    return policy.allows_address(ip) if ip is not None else policy.allows_name(address[0])


def _learn(policy: EgressPolicy, host: str) -> None:
    """An allowed name may resolve to any address; allow what it resolves to (this lookup
    runs inside the hook, which lets it through: `_inside.busy`)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return
    for info in infos:
        ip = _ip(str(info[4][0]))
        if ip is not None:
            policy.learned.add(ip)


def _describe(address: tuple[Any, ...]) -> str:
    port = address[1] if len(address) > 1 else "?"
    return f"{address[0]}:{port}"


def _refuse(policy: EgressPolicy, event: str, target: str) -> None:
    callers = calling_modules()
    log.warning(
        "egress refused: %s to %s (process %s, pid %d, from %s)",
        event,
        target,
        policy.process,
        os.getpid(),
        " < ".join(callers),
        extra={"event": event, "target": target, "process_name": policy.process},
    )
    raise EgressRefused(
        f"egress refused: {event} to {target} is outside loopback and the configured hosts "
        "(smtp.host, sms.url, auth.ldap.url, web.hostnames, egress.allow_hosts); "
        "issue 9 no-egress rule"
    )


def calling_modules(limit: int = 8) -> list[str]:
    """The distinct modules on the stack above the socket call, innermost first."""
    out: list[str] = []
    frame = sys._getframe(1)
    while frame is not None and len(out) < limit:
        name = str(frame.f_globals.get("__name__", "?"))
        if name not in _SKIP_MODULES and name not in out:
            out.append(name)
        frame = frame.f_back  # type: ignore[assignment]
    return out


def describe_policy(policy: EgressPolicy) -> dict[str, Iterable[str]]:
    return {"names": sorted(policy.names), "networks": [str(n) for n in policy.networks]}
