"""ICE inside the hospital network: host candidates only, on a fixed UDP port range.

Why: the firewall opens one UDP range to the box and nothing else (issue 7, item 5).
aioice binds every host candidate to an ephemeral port and offers no way to choose
(aiortc issue #487), and it offers every interface but loopback. `pin_ice` replaces
`aioice.ice.Connection.get_component_candidates` with one that binds each host
candidate inside `ports` and gathers on the configured addresses only. STUN and
TURN are never used (`RTCConfiguration(iceServers=[])`, no traffic leaves the
hospital), so the replacement refuses a connection that names a server.

Relies on aioice internals (`StunProtocol`, `Connection._protocols`, the candidate
helpers): pinned to aioice 0.13.0, checked by `check_versions`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import aioice.ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

log = logging.getLogger("enclave.media")

RECEIVE_BUFFER_BYTES = 4 << 20
"""SO_RCVBUF asked for each media socket: about 1,800 loopback-sized 720p packets, i.e.
seconds of one session's video while the event loop is busy elsewhere. The kernel
caps it at net.core.rmem_max (the Ansible media role sets 4 MiB); `receive_buffer_bytes`
says what a socket really gets, and `pin_ice` logs it."""
TESTED_VERSIONS = {"aioice": "0.13.0", "aiortc": "1.16.0"}


class PortRangeExhausted(OSError):
    """Every port of the media range is taken: too many simultaneous interviews."""


@dataclass(frozen=True)
class IcePolicy:
    ports: range
    host_addresses: tuple[str, ...]
    """Addresses to offer as host candidates; empty: every non-loopback interface."""


def check_versions() -> None:
    """Refuse to start on other aioice/aiortc versions: the hooks use their internals."""
    for name, wanted in TESTED_VERSIONS.items():
        found = version(name)
        if found != wanted:
            raise RuntimeError(
                f"the media service hooks {name} {wanted} internals, but {found} is installed"
            )


class PortAllocator:
    """Binds UDP sockets inside the range, round-robin, skipping ports in use."""

    def __init__(self, ports: range) -> None:
        if not ports:
            raise ValueError("the media UDP port range is empty")
        self.ports = ports
        self._next = itertools.cycle(ports)

    def bind(self, address: str) -> socket.socket:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        for _ in range(len(self.ports)):
            port = next(self._next)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.setblocking(False)
            # Room for key frame bursts while the loop or the machine is busy (the kernel
            # caps it at net.core.rmem_max: the Ansible role raises that to 4 MiB).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            return sock
        raise PortRangeExhausted(
            errno.EADDRINUSE,
            f"no free UDP port in {self.ports.start}-{self.ports.stop - 1} on {address}",
        )


def receive_buffer_bytes() -> int:
    """The receive buffer a media socket gets (Linux reports twice the usable size, its
    bookkeeping included; below 2 * RECEIVE_BUFFER_BYTES, rmem_max capped it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def pin_ice(policy: IcePolicy) -> PortAllocator:
    """Patch aioice in this process to gather host candidates inside `policy.ports`."""
    effective = receive_buffer_bytes()
    level = logging.INFO if effective >= 2 * RECEIVE_BUFFER_BYTES else logging.WARNING
    log.log(
        level,
        "UDP receive buffer per media socket: %d bytes (asked %d; net.core.rmem_max caps it)",
        effective,
        RECEIVE_BUFFER_BYTES,
    )
    allocator = PortAllocator(policy.ports)
    addresses = list(policy.host_addresses)
    original = aioice.ice.get_host_addresses

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return addresses or original(use_ipv4, use_ipv6)

    async def get_component_candidates(
        self: aioice.ice.Connection, component: int, addresses: Sequence[str], timeout: int = 5
    ) -> list[Candidate]:
        if self.stun_server or self.turn_server:
            raise ValueError("the media service uses no STUN or TURN server (iceServers=[])")
        loop = asyncio.get_running_loop()
        candidates = []
        for address in addresses:
            sock = allocator.bind(address)
            transport: Any
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(self), sock=sock
            )
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            self._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates

    aioice.ice.get_host_addresses = host_addresses
    aioice.ice.Connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]
    return allocator
