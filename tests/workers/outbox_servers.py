"""Real servers for the outbox tests: an SMTP relay (aiosmtpd) and an SMS gateway (http.server).

The gateway behaves like the real ones the outbox is built for: it takes the message's
`Idempotency-Key` header, delivers a key once, and answers a repeat with 200 without
delivering again. `script` makes its first answers fail: "503" answers 503, "drop"
DELIVERS the message and then closes the connection without answering (the answer is
lost, so the sender must retry, and the key keeps that retry from delivering twice).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SmtpSink:
    """What the relay received; `tempfail` first DATA commands answer 451."""

    tempfail: int = 0
    messages: list[bytes] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refused < self.tempfail:
            self.refused += 1
            return "451 4.3.0 try again later"
        self.messages.append(bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def parsed(self) -> list[Message]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.messages]


@contextmanager
def smtp_relay(tempfail: int = 0) -> Iterator[tuple[SmtpSink, int]]:
    """A real SMTP server on 127.0.0.1, a free port."""
    sink = SmtpSink(tempfail=tempfail)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@dataclass
class SmsGateway:
    script: list[str] = field(default_factory=list)
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliveries(self) -> Counter[str]:
        return Counter({key: len(items) for key, items in self.delivered.items()})


def _handler(gateway: SmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key") or ""
            with gateway.lock:
                gateway.requests.append(key)
                gateway.auth.append(self.headers.get("Authorization"))
                step = gateway.script.pop(0) if gateway.script else "ok"
                if step == "503":
                    self.send_error(503, "busy")
                    return
                if key not in gateway.delivered:
                    gateway.delivered[key] = []
                    gateway.delivered[key].append(body)
                    duplicate = False
                else:
                    duplicate = True
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            answer = json.dumps({"ok": True, "duplicate": duplicate}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@contextmanager
def sms_gateway(script: list[str] | None = None) -> Iterator[tuple[SmsGateway, str]]:
    """A real HTTP server on 127.0.0.1 playing the hospital's SMS gateway; yields its URL."""
    gateway = SmsGateway(script=list(script or []))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gateway))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway, f"http://127.0.0.1:{server.server_address[1]}/send"
    finally:
        server.shutdown()
        server.server_close()


def parts(message: Message) -> dict[str, Message]:
    """The text, HTML and calendar parts of an invitation e-mail, by content type."""
    return {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}


def outbox_environ(smtp_port: int, sms_url: str) -> dict[str, str]:
    """ENCLAVE_* for a worker that sends through the test servers (fast retries)."""
    return {
        "ENCLAVE_CONFIG": "",
        "ENCLAVE_SECRETS": "/nonexistent/secrets.toml",
        "ENCLAVE_SMTP__HOST": "127.0.0.1",
        "ENCLAVE_SMTP__PORT": str(smtp_port),
        "ENCLAVE_SMTP__STARTTLS": "false",
        "ENCLAVE_SMTP__SENDER": "zhaopin@hospital.test",
        "ENCLAVE_SMS__URL": sms_url,
        "ENCLAVE_SMS__TOKEN": "gateway-secret",
        "ENCLAVE_INVITATIONS__BASE_URL": "https://hr.hospital.test",
        "ENCLAVE_INVITATIONS__RETRY_BASE_SECONDS": "0.01",
    }
