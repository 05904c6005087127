"""`python -m webapp.media --socket PATH`: run the media service on a unix socket."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from appliance import egress, logs
from appliance.settings import Settings, load_settings
from appliance.store import Store
from webapp.media.ice import IcePolicy, check_versions, pin_ice
from webapp.media.service import make_app

log = logging.getLogger("enclave.media")


def _port_range(text: str) -> range:
    low, _, high = text.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port range: {text!r} (use 40000-40199)") from None
    if not 1024 <= first <= last <= 65535:
        raise argparse.ArgumentTypeError(f"port range {text!r} must lie within 1024-65535")
    return range(first, last + 1)


def ice_policy(settings: Settings, args: argparse.Namespace) -> IcePolicy:
    """The command line beats `settings.media`."""
    media = settings.media
    ports = args.udp_ports or range(media.udp_port_min, media.udp_port_max + 1)
    hosts = args.host_address or list(media.host_addresses)
    return IcePolicy(ports=ports, host_addresses=tuple(hosts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--udp-ports", type=_port_range, help="e.g. 40000-40199")
    parser.add_argument("--host-address", action="append", help="host ICE candidate address")
    args = parser.parse_args()
    if not logs.configure("media"):
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s media %(levelname)s %(message)s"
        )
    settings = load_settings()
    # WebRTC peers are on the hospital network: list its ranges in egress.allow_hosts (issue 9).
    egress.install(settings, "media")
    check_versions()
    policy = ice_policy(settings, args)
    pin_ice(policy)
    store = Store.open(settings)
    if args.socket.exists():
        args.socket.unlink()
    os.umask(0o077)  # the socket is for the web app (same service user) only
    log.info(
        "media service listening on %s, UDP %d-%d",
        args.socket,
        policy.ports.start,
        policy.ports.stop - 1,
    )
    try:
        app = make_app(store, settings)  # settings: live captions' Whisper
        web.run_app(app, path=str(args.socket), print=None, handle_signals=True)
    finally:
        store.close()


if __name__ == "__main__":
    main()
