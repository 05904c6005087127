"""`python -m webapp.media --socket PATH`: run the media service on a unix socket."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from appliance import egress, logs
from appliance.settings import load_settings

log = logging.getLogger("enclave.media")


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "media", "placeholder": True})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args()
    if not logs.configure("media"):
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s media %(levelname)s %(message)s"
        )
    # WebRTC peers are on the hospital network: list its ranges in egress.allow_hosts (issue 9).
    egress.install(load_settings(), "media")
    if args.socket.exists():
        args.socket.unlink()
    os.umask(0o077)  # the socket is for the web app (same service user) only
    log.info("media service (placeholder) listening on %s", args.socket)
    web.run_app(make_app(), path=str(args.socket), print=None, handle_signals=True)


if __name__ == "__main__":
    main()
