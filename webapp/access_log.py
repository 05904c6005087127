"""gunicorn's access log without the candidates' link tokens (issues 6 and 7).

A candidate arrives through `/c/<token>` and `/c/<token>/start`: the token is a bearer
credential for that person's interview, so it must not sit in `logs/access.log` on
disk. gunicorn formats its access line from "atoms" (request line, path, referer,
environ); `AccessLogger` replaces the token in every one of them with `<token>`.
`appliance run` and the `enclave-web` unit start gunicorn with
`--logger-class webapp.access_log.AccessLogger`.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_CANDIDATE_LINK = re.compile(r"((?:^|[\s\"]|://[^/\s\"]+)/c/)[^/?#\s\"]+")
"""`/c/` at the start of a path (a request line, PATH_INFO, a Referer URL), then the token."""
LOGGER_CLASS = "webapp.access_log.AccessLogger"


def redact(text: str) -> str:
    """A path `/c/<anything>` -> `/c/<token>`; everything else unchanged."""
    return _CANDIDATE_LINK.sub(r"\1<token>", text)


class AccessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {k: redact(v) if isinstance(v, str) else v for k, v in atoms.items()}
