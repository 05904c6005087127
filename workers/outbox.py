"""The outbox queue (issue 6, item 5): invitations, reminders and changes, by e-mail and SMS.

`send_messages(ctx, *message_ids)` sends a batch:

1. claim: in one short write transaction, every message of the batch not yet sent
   becomes `sending` (attempts + 1). A message already `sent` is never claimed again,
   so a rerun, a duplicated job or the portal's retry button cannot send it twice;
2. compose at send time: the candidates' name, e-mail and phone are read through the
   gate as the box's own job (`Actor.system`, purpose `processing`): one audit event
   for the batch, and no personal data in Redis, in the outbox rows or on disk;
3. deliver: all e-mails of the batch over ONE SMTP session (STARTTLS and login per
   `smtp` settings), each SMS as an HTTP POST to the gateway with the message's
   `Idempotency-Key` header, the same on every try: a gateway that took a try whose
   answer was lost (connection dropped) answers the retry without delivering again.
   `invitations.connections` sessions run side by side (threads), each its share.
   Transient failures (SMTP 4xx, a dropped connection, HTTP 5xx/429, timeouts) are
   retried in rounds, `retry_base_seconds` x 1, 2, 4 ... apart, up to `send_attempts`
   tries; permanent ones (SMTP 5xx, HTTP 4xx, no address on file) are not;
4. record each message's state: `sent`, or `failed` with an error naming codes only.
   If transient failures remain the job raises, and rq retries it later (backoff
   60 s, 5 min, 15 min); whatever still fails waits for the portal's retry button.

E-mail has no idempotency key on the wire; its Message-ID is the message's key, so a
duplicate caused by a lost SMTP answer after DATA can at least be recognised.
"""

from __future__ import annotations

import functools
import html
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from base64 import b64encode, encodebytes
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formataddr
from http.client import HTTPException
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload

from appliance.records import (
    Application,
    Candidate,
    CandidateToken,
    Channel,
    Invitation,
    Job,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    utcnow,
)
from appliance.settings import Settings
from appliance.store import Store
from compliance.actors import Actor
from compliance.gate import Gate, Shown
from workers.invitations import invitation_settings, link_token, link_url
from workers.jobs import JobContext, job

PURPOSE = "processing"
STALE_SENDING = timedelta(minutes=30)
"""A message left `sending` this long ago belongs to a worker that died: claim it again."""
ERROR_LIMIT = 300

SUBJECTS = {
    MessageKind.INVITATION: ("面试邀请", "Interview invitation"),
    MessageKind.REMINDER: ("面试提醒", "Interview reminder"),
    MessageKind.RESCHEDULED: ("面试时间已更改", "Interview time changed"),
}
SMS_PREFIX = {
    MessageKind.INVITATION: "",
    MessageKind.REMINDER: "【提醒】",
    MessageKind.RESCHEDULED: "【改期】",
}
REQUIREMENT_LABELS = {
    "education": ("学历", "Education"),
    "licences": ("执业证书", "Licences"),
    "title": ("职称", "Title"),
    "years": ("工作年限", "Years of experience"),
}
DEVICE_CHECK = (
    (
        "使用电脑（Chrome 或 Edge 最新版）或手机，并允许浏览器使用摄像头和麦克风。",
        "Use a computer (latest Chrome or Edge) or a phone and let the browser use the camera "
        "and microphone.",
    ),
    (
        "选择安静、光线充足的环境，保持网络稳定（建议连接医院 VPN 或有线网络）。",
        "Choose a quiet, well-lit place with a stable network (the hospital VPN or a cable).",
    ),
    (
        "打开链接后先完成设备检测：摄像头画面、麦克风音量和网络均显示正常后再开始。",
        "Open the link and run the device check first: start once camera, microphone and "
        "network show as working.",
    ),
)


class OutboxIncomplete(RuntimeError):
    """Some messages of the batch failed transiently; rq retries the job (ids and counts only)."""


class Transient(Exception):
    """A try that may work later (SMTP 4xx, dropped connection, HTTP 5xx, timeout)."""


class Permanent(Exception):
    """A try that will not work by trying again (SMTP 5xx, HTTP 4xx, no address)."""


@dataclass
class Letter:
    """One message composed for sending (in memory only, for the length of the job)."""

    message_id: int
    channel: Channel
    key: str
    email: bytes | None = None
    """The whole e-mail, ready for DATA."""
    rcpt: str | None = None
    sms: dict[str, str] | None = None
    error: str | None = None
    permanent: bool = False
    sent: bool = False
    tries: int = 0


@dataclass
class Batch:
    letters: list[Letter] = field(default_factory=list)

    def pending(self, channel: Channel) -> list[Letter]:
        return [
            item
            for item in self.letters
            if item.channel is channel and not item.sent and not item.permanent
        ]


# --- 1. claim ---------------------------------------------------------------------------


def claim(store: Store, message_ids: Sequence[int]) -> list[int]:
    """Mark the batch's unsent messages `sending` (one more attempt); return their ids."""
    now = utcnow()
    with store.write_transaction() as db:
        rows = db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.id.in_(message_ids),
                or_(
                    OutboxMessage.status.in_((MessageStatus.QUEUED, MessageStatus.FAILED)),
                    (OutboxMessage.status == MessageStatus.SENDING)
                    & (OutboxMessage.last_attempt_at < now - STALE_SENDING),
                ),
            )
        ).all()
        for row in rows:
            row.status = MessageStatus.SENDING
            row.attempts += 1
            row.last_attempt_at = now
        return sorted(r.id for r in rows)


# --- 2. compose -------------------------------------------------------------------------


def _local(settings: Settings, moment: datetime) -> str:
    local = moment.astimezone(settings.zone)
    return f"{local:%Y-%m-%d %H:%M} ({settings.timezone})"


def requirement_lines(requirements: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(Chinese label, English label, value) for each of the job's hard requirements."""
    lines = []
    for key, value in requirements.items():
        zh, en = REQUIREMENT_LABELS.get(key, (key, key))
        shown = "、".join(map(str, value)) if isinstance(value, list) else str(value)
        if shown:
            lines.append((zh, en, shown))
    return lines


@dataclass(frozen=True)
class Context:
    """What a message says about one invitation (no personal data but what the gate gave)."""

    kind: MessageKind
    invitation: Invitation
    job: Job
    link: str
    person: Shown


def _text(settings: Settings, c: Context) -> str:
    zh, en = SUBJECTS[c.kind]
    name = c.person.get("name") or ""
    inv = c.invitation
    lines = [
        f"{name}，您好：",
        "",
        f"{zh}：{c.job.title}",
        f"时间：{_local(settings, inv.slot_start)} 至 {_local(settings, inv.slot_end)}",
        f"可在 {_local(settings, inv.window_start)} 至 {_local(settings, inv.window_end)} "
        "之间自行改期。",
        f"面试链接（仅限本人使用，请勿转发）：{c.link}",
        "",
        "岗位要求：",
        *[f"  - {lzh}：{value}" for lzh, _len, value in requirement_lines(c.job.requirements)],
        "",
        "设备检测指南：",
        *[f"  {i}. {zh_line}" for i, (zh_line, _e) in enumerate(DEVICE_CHECK, 1)],
        "",
        f"—— {settings.invitations.hospital}",
        "",
        "----",
        f"Dear {name},",
        "",
        f"{en}: {c.job.title}",
        f"Time: {_local(settings, inv.slot_start)} to {_local(settings, inv.slot_end)}",
        f"You may move it within {_local(settings, inv.window_start)} to "
        f"{_local(settings, inv.window_end)}.",
        f"Your link (personal, do not forward): {c.link}",
        "",
        "Requirements:",
        *[f"  - {len_}: {value}" for _z, len_, value in requirement_lines(c.job.requirements)],
        "",
        "Device check:",
        *[f"  {i}. {en_line}" for i, (_z, en_line) in enumerate(DEVICE_CHECK, 1)],
    ]
    return "\n".join(lines) + "\n"


def _html(settings: Settings, c: Context) -> str:
    e = html.escape
    zh, en = SUBJECTS[c.kind]
    inv = c.invitation
    name = e(c.person.get("name") or "")
    when = f"{e(_local(settings, inv.slot_start))} – {e(_local(settings, inv.slot_end))}"
    window = f"{e(_local(settings, inv.window_start))} – {e(_local(settings, inv.window_end))}"
    reqs = "".join(
        f"<li>{e(lzh)} / {e(len_)}: {e(value)}</li>"
        for lzh, len_, value in requirement_lines(c.job.requirements)
    )
    guide = "".join(f"<li>{e(zh_line)}<br>{e(en_line)}</li>" for zh_line, en_line in DEVICE_CHECK)
    link = e(c.link, quote=True)
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{e(zh)} / {e(en)}</title></head><body>"
        f"<p>{name}，您好 / Dear {name},</p>"
        f"<h1>{e(zh)} / {e(en)}: {e(c.job.title)}</h1>"
        f'<p>时间 / Time: <strong class="slot">{when}</strong></p>'
        f"<p>可改期范围 / You may move it within: {window}</p>"
        f'<p><a href="{link}">进入面试 / Open your interview</a></p>'
        f"<h2>岗位要求 / Requirements</h2><ul>{reqs}</ul>"
        f"<h2>设备检测指南 / Device check</h2><ol>{guide}</ol>"
        f"<p>{e(settings.invitations.hospital)}</p></body></html>"
    )


def _ics_text(value: str) -> str:
    """RFC 5545 3.3.11 TEXT escaping."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _ics_fold(line: str) -> str:
    """RFC 5545 3.1: lines of at most 75 octets, continued with CRLF + space (never inside
    a UTF-8 sequence)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    pieces, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        pieces.append(data[start:end])
        start, limit = end, 74  # the leading space takes one octet
    return b"\r\n ".join(pieces).decode("utf-8")


def _ics_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def ics(settings: Settings, c: Context, uid_domain: str) -> bytes:
    """RFC 5545 VEVENT with METHOD:REQUEST: same UID for the invitation and its changes,
    SEQUENCE counts the moves, so calendars update the event instead of adding one.
    Written by hand: the icalendar package costs ~10 ms a message (the tests parse the
    result with it)."""
    inv = c.invitation
    email = c.person.get("email")
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID:-//Enclave HR//Interview invitations//ZH",
        "VERSION:2.0",
        "METHOD:REQUEST",
        "BEGIN:VEVENT",
        f"UID:invitation-{inv.id}@{uid_domain}",
        f"DTSTAMP:{_ics_time(utcnow())}",
        f"DTSTART:{_ics_time(inv.slot_start)}",
        f"DTEND:{_ics_time(inv.slot_end)}",
        f"SEQUENCE:{inv.sequence}",
        f"SUMMARY:{_ics_text(SUBJECTS[MessageKind.INVITATION][0] + '：' + c.job.title)}",
        f"DESCRIPTION:{_ics_text(chr(10).join((c.link, *DEVICE_CHECK[2])))}",
        f"URL:{c.link}",
        f"LOCATION:{_ics_text(c.link)}",
        f'ORGANIZER;CN="{settings.invitations.hospital}":mailto:{settings.smtp.sender}',
        *([f"ATTENDEE;RSVP=FALSE:mailto:{email}"] if email else []),
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(_ics_fold(line) for line in lines) + "\r\n").encode("utf-8")


def _mime_words(text: str) -> str:
    """RFC 2047 encoded-words (UTF-8, base64) for a header value, folded at word ends."""
    if text.isascii():
        return text
    words, chunk = [], ""
    for char in text:
        if len((chunk + char).encode("utf-8")) > 45:  # 45 bytes: a 75-character word
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(
        f"=?utf-8?b?{b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words
    )


def _part(content_type: str, body: str, extra: str = "") -> str:
    encoded = encodebytes(body.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f"{extra}\r\n{encoded}"
    )


def compose_email(settings: Settings, c: Context, key: str) -> bytes:
    """The whole e-mail for DATA: multipart/mixed of multipart/alternative (text, HTML)
    and the ICS (text/calendar; method=REQUEST), every body base64, CRLF line ends.

    Written out directly: the `email` package's generators take 15-40 ms a message
    (which alone would make 10,000 invitations miss the 60 s goal); the tests parse what
    this writes with the `email` package, text, HTML and calendar part each."""
    zh, en = SUBJECTS[c.kind]
    domain = settings.smtp.sender.rpartition("@")[2] or "enclave.invalid"
    mixed, alternative = f"mixed-{key}", f"alt-{key}"
    calendar = ics(settings, c, domain).decode("utf-8")
    headers = "\r\n".join(
        [
            f"From: {formataddr((settings.invitations.hospital, settings.smtp.sender), 'utf-8')}",
            f"To: {formataddr((c.person.get('name') or '', c.person.get('email') or ''), 'utf-8')}",
            f"Subject: {_mime_words(f'{zh}：{c.job.title} / {en}')}",
            f"Date: {format_datetime(utcnow())}",
            f"Message-ID: <{key}@{domain}>",
            "Auto-Submitted: auto-generated",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{mixed}"',
        ]
    )
    message = (
        f"{headers}\r\n\r\n"
        f"--{mixed}\r\n"
        f'Content-Type: multipart/alternative; boundary="{alternative}"\r\n\r\n'
        f"--{alternative}\r\n{_part('text/plain', _text(settings, c))}"
        f"--{alternative}\r\n{_part('text/html', _html(settings, c))}"
        f"--{alternative}--\r\n"
        f"--{mixed}\r\n"
        + _part(
            "text/calendar; method=REQUEST",
            calendar,
            'Content-Disposition: attachment; filename="interview.ics"\r\n',
        )
        + f"--{mixed}--\r\n"
    )
    return message.encode("ascii")


def compose_sms(settings: Settings, c: Context, key: str) -> dict[str, str]:
    text = SMS_PREFIX[c.kind] + settings.sms.template.format(
        name=c.person.get("name") or "",
        job=c.job.title,
        time=_local(settings, c.invitation.slot_start),
        link=c.link,
        hospital=settings.invitations.hospital,
    )
    return {"to": c.person.get("phone") or "", "text": text, "message_id": key}


def _load(db: Session, ids: Sequence[int]) -> list[OutboxMessage]:
    return list(
        db.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .options(
                joinedload(OutboxMessage.invitation)
                .joinedload(Invitation.application)
                .joinedload(Application.job)
            )
            .order_by(OutboxMessage.id)
        ).unique()
    )


def compose(store: Store, settings: Settings, actor: Actor, ids: Sequence[int]) -> Batch:
    """The batch's letters; the people's contact data read through the gate in one call."""
    batch = Batch()
    with store.session() as db:
        rows = _load(db, ids)
        candidate_ids = sorted({r.invitation.application.candidate_id for r in rows})
        candidates = list(
            db.scalars(
                select(Candidate).where(Candidate.id.in_(candidate_ids)).order_by(Candidate.id)
            )
        )
        needed = {"candidates.name"}
        needed |= {"candidates.email"} if any(r.channel is Channel.EMAIL for r in rows) else set()
        needed |= {"candidates.phone"} if any(r.channel is Channel.SMS for r in rows) else set()
        shown = Gate(store).view_many(actor, candidates, PURPOSE, needed, action="send")
        people = {s.id: s for s in shown}
        token_rows = {
            t.id: t
            for t in db.scalars(
                select(CandidateToken).where(
                    CandidateToken.id.in_({r.invitation.token_id for r in rows})
                )
            )
        }
        for row in rows:
            inv = row.invitation
            link = link_url(settings, link_token(store, token_rows[inv.token_id]))
            person = people[inv.application.candidate_id]
            c = Context(row.kind, inv, inv.application.job, link, person)
            letter = Letter(row.id, row.channel, row.idempotency_key)
            address = person.get("email" if row.channel is Channel.EMAIL else "phone")
            if not address or address.startswith("["):  # none on file, or shredded
                letter.error = (
                    f"candidate {inv.application.candidate_id} has no {row.channel} on file"
                )
                letter.permanent = True
            elif row.channel is Channel.EMAIL:
                letter.rcpt = address
                letter.email = compose_email(settings, c, row.idempotency_key)
            else:
                letter.sms = compose_sms(settings, c, row.idempotency_key)
            batch.letters.append(letter)
    return batch


# --- 3. deliver -------------------------------------------------------------------------


def _smtp_error(exc: smtplib.SMTPResponseException) -> Exception:
    text = f"SMTP {exc.smtp_code}"
    return Transient(text) if 400 <= exc.smtp_code < 500 else Permanent(text)


class SmtpSession:
    """One SMTP connection reused for a whole batch (reopened if the relay drops it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        smtp = self.settings.smtp
        if not smtp.host:
            raise Permanent("smtp.host is not set")
        conn = smtplib.SMTP(smtp.host, smtp.port, timeout=30)
        conn.ehlo()
        if smtp.starttls:
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        if smtp.username:
            conn.login(smtp.username, smtp.password or "")
        return conn

    def send(self, rcpt: str, message: bytes) -> None:
        try:
            if self.conn is None:
                self.conn = self._open()
            refused = self.conn.sendmail(self.settings.smtp.sender, [rcpt], message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _msg in exc.recipients.values()})
            raise (Transient if all(400 <= c < 500 for c in codes) else Permanent)(
                f"SMTP recipient refused {codes}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise _smtp_error(exc) from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise Transient(f"SMTP connection: {type(exc).__name__}") from None
        if refused:
            raise Permanent("SMTP recipient refused")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.close()
            self.conn = None


def post_sms(settings: Settings, payload: dict[str, str]) -> None:
    """One try at the gateway; the idempotency key travels in a header and in the body."""
    sms = settings.sms
    if not sms.url:
        raise Permanent("sms.url is not set")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": payload["message_id"],
    }
    if sms.token:
        headers["Authorization"] = f"Bearer {sms.token}"
    elif sms.username:
        pair = f"{sms.username}:{sms.password or ''}".encode()
        headers["Authorization"] = "Basic " + b64encode(pair).decode("ascii")
    request = urllib.request.Request(  # noqa: S310 (an http(s) URL checked by the settings)
        sms.url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=sms.timeout_seconds) as answer:  # noqa: S310
            answer.read()
    except urllib.error.HTTPError as exc:
        text = f"SMS gateway HTTP {exc.code}"
        transient = exc.code >= 500 or exc.code in (408, 429)
        raise (Transient(text) if transient else Permanent(text)) from None
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        raise Transient(f"SMS gateway connection: {type(exc).__name__}") from None


def _try(settings: Settings, smtp: SmtpSession, letter: Letter) -> None:
    letter.tries += 1
    try:
        if letter.email is not None and letter.rcpt is not None:
            smtp.send(letter.rcpt, letter.email)
        elif letter.sms is not None:
            post_sms(settings, letter.sms)
        letter.sent, letter.error = True, None
    except Transient as exc:
        letter.error = str(exc)[:ERROR_LIMIT]
    except Permanent as exc:
        letter.error, letter.permanent = str(exc)[:ERROR_LIMIT], True


def _lane(settings: Settings, letters: list[Letter]) -> None:
    """One connection's share of a round: its own SMTP session, reused for all its e-mails."""
    smtp = SmtpSession(settings)
    try:
        for letter in letters:
            _try(settings, smtp, letter)
    finally:
        smtp.close()


def deliver(settings: Settings, batch: Batch, sleep: Callable[[float], None] = time.sleep) -> None:
    """Send every letter, in rounds: a transient failure is tried again next round.

    Each round spreads the letters over `invitations.connections` lanes (threads, each with
    one SMTP session), so one relay's round trips overlap instead of adding up.
    """
    lanes = settings.invitations.connections
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="outbox") as pool:
        for round_no in range(settings.invitations.send_attempts):
            pending = batch.pending(Channel.EMAIL) + batch.pending(Channel.SMS)
            if not pending:
                return
            if round_no:
                sleep(settings.invitations.retry_base_seconds * 2 ** (round_no - 1))
            shares = [pending[i::lanes] for i in range(lanes)]
            list(pool.map(functools.partial(_lane, settings), [s for s in shares if s]))


# --- 4. record --------------------------------------------------------------------------


def record(store: Store, batch: Batch) -> None:
    now = utcnow()
    with store.write_transaction() as db:
        rows = {
            r.id: r
            for r in db.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.id.in_([x.message_id for x in batch.letters])
                )
            )
        }
        for letter in batch.letters:
            row = rows[letter.message_id]
            row.attempts += max(letter.tries - 1, 0)  # claim counted the first try
            if letter.sent:
                row.status, row.sent_at, row.last_error = MessageStatus.SENT, now, None
            else:
                row.status, row.last_error = MessageStatus.FAILED, letter.error


@job(queue="outbox", timeout=1800, retries=3, backoff=(60, 300, 900))
def send_messages(ctx: JobContext, *message_ids: int) -> None:
    """Send a batch of outbox messages (module docstring); raise if some should be retried."""
    ids = claim(ctx.store, message_ids)
    if not ids:
        ctx.logger.info("outbox: nothing to send of %d message(s)", len(message_ids))
        return
    settings = invitation_settings(ctx.store)
    try:
        batch = compose(ctx.store, settings, Actor.system(ctx.rq_job_id), ids)
    except Exception as exc:
        unsent = Batch(
            [Letter(i, Channel.EMAIL, "", error=f"compose: {type(exc).__name__}") for i in ids]
        )
        record(ctx.store, unsent)
        raise
    try:
        deliver(settings, batch)
    finally:
        record(ctx.store, batch)
    sent = sum(x.sent for x in batch.letters)
    retry = [x.message_id for x in batch.letters if not x.sent and not x.permanent]
    ctx.logger.info("outbox: %d sent, %d to retry, of %d", sent, len(retry), len(ids))
    if retry:
        raise OutboxIncomplete(
            f"{len(retry)} of {len(ids)} messages not sent yet (ids {retry[:20]}); retrying later"
        )


def retry_failed(store: Store, message_ids: Sequence[int]) -> list[int]:
    """Put failed messages back to `queued` (the portal's retry button); returns their ids."""
    with store.write_transaction() as db:
        rows = db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.id.in_(message_ids), OutboxMessage.status == MessageStatus.FAILED
            )
        ).all()
        for row in rows:
            row.status = MessageStatus.QUEUED
        return [r.id for r in rows]
