"""`python tests/ops/egress_witness.py ARGS...`: run `appliance ARGS...` under a witness.

The witness is a second audit hook, added before anything else, that writes every
socket event the process raises (connect, send-to, name lookups) to the JSON Lines
file named by EGRESS_WITNESS_FILE. It only watches: the guard under test
(`appliance.egress`, installed by the command itself) decides. Hooks run in the
order they were added, so the witness also records the attempts the guard refuses.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

WATCHED = frozenset(
    {
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)
RECORD = os.environ["EGRESS_WITNESS_FILE"]


def destination(event: str, args: tuple[Any, ...]) -> Any:
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, str | bytes):
            return {"unix": True}
        return list(address) if isinstance(address, tuple) else address
    return args[0] if not isinstance(args[0], bytes) else args[0].decode()


def witness(event: str, args: tuple[Any, ...]) -> None:
    if event in WATCHED:
        line = {"event": event, "to": destination(event, args)}
        with open(RECORD, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")


if __name__ == "__main__":
    sys.addaudithook(witness)
    from appliance.cli import main

    sys.argv = ["appliance", *sys.argv[1:]]
    main()
