"""One answer's WebRTC capture: received RTP packets go straight into an encrypted recording.

Why at the RTP level: aiortc's receiver reassembles frames in a jitter buffer and
hands them to a decoder thread; the stock `MediaRecorder` then re-encodes them on
the event loop and falls behind (aiortc issue #984). `hook_receiver` puts a
`RecordingBuffer` in place of the receiver's jitter buffer: every packet that
survived SRTP, retransmission (RTX unwrapped, NACKs still sent upstream of it) and
depayloading is written with its sequence number and timestamps, and nothing is
ever passed to the decoder, so a session costs a little AES and no codec work.

Per packet the record path is one dict lookup (the payload type's `TrackSink`, set up
at its first packet), one clock read and one append to the blob writer: at 25
sessions the service handles about 5,000 packets a second on one event loop
(bench/media_bench.py), so every Python call per packet counts.

Relies on aiortc 1.16.0 internals (`_RTCRtpReceiver__jitter_buffer`,
`_RTCRtpReceiver__codecs`, the `_data` a depayloaded packet carries, the ICE
transport's aioice connection) and aioice 0.13.0's (`Connection._queue`,
`_protocols`); `ice.check_versions` refuses other versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import struct
import termios
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.codecs.vpx import VpxPayloadDescriptor

from appliance.recordings import CODECS, RecordingWriter
from webapp.media.captions import CaptionTap

_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CODECS_ATTR = "_RTCRtpReceiver__codecs"
PLI_INTERVAL_S = 0.5
"""How often to ask the browser for a key frame until the recording has one."""


def is_key_frame_start(codec_name: str, packet: Any) -> bool:
    """Whether the packet starts a key frame: a recording must begin with one to decode."""
    if codec_name == "VP8":
        try:
            descriptor, rest = VpxPayloadDescriptor.parse(packet.payload)
        except ValueError:
            return False
        first = descriptor.partition_start and descriptor.partition_id == 0
        return bool(first and rest and rest[0] & 0x01 == 0)  # P bit 0: key frame (RFC 6386)
    if codec_name == "H264":
        data: bytes = getattr(packet, "_data", b"")
        return any(data[i + 3] & 0x1F in (5, 7) for i in _start_codes(data))
    return True


def _start_codes(data: bytes) -> list[int]:
    found, at = [], data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        found.append(at)
        at = data.find(b"\x00\x00\x01", at + 3)
    return found


@dataclass
class TrackCounts:
    """Running figures of one kind (video or audio), for the stop answer and the bench."""

    packets: int = 0
    frames: int = 0
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    clock_rate: int = 90000
    origin: float = 0.0
    """Monotonic time at which the sender captured `first_timestamp`, as best seen: the
    earliest `arrival - media time` over the frames. Taking the first packet's arrival
    instead would put the stop instant early by however far the event loop lagged then
    (30 DTLS handshakes at once, a loaded machine) and cut the answer's last seconds."""
    cutoff: int | None = None
    """Set on stop: the RTP timestamp of the stop instant; later media is not the answer's."""
    dropped_after_stop: int = 0
    drained: bool = False

    def add(self, timestamp: int, now: float) -> None:
        self.packets += 1
        if timestamp == self.last_timestamp:
            return
        self.frames += 1
        self.last_timestamp = timestamp
        if self.first_timestamp is None:
            self.first_timestamp, self.origin = timestamp, now
            return
        ticks = (timestamp - self.first_timestamp) % (1 << 32)
        if ticks < (1 << 31):  # not a frame from before the first one, reordered
            self.origin = min(self.origin, now - ticks / self.clock_rate)

    def set_cutoff(self, now: float) -> None:
        if self.first_timestamp is None:
            self.drained = True
            return
        ticks = int((now - self.origin) * self.clock_rate)
        self.cutoff = (self.first_timestamp + ticks) % (1 << 32)

    def after_cutoff(self, timestamp: int) -> bool:
        if self.cutoff is None:
            return False
        if 0 < (timestamp - self.cutoff) % (1 << 32) < (1 << 31):
            self.drained = True
            self.dropped_after_stop += 1
            return True
        return False

    @property
    def duration_ms(self) -> int:
        if self.first_timestamp is None or self.last_timestamp is None:
            return 0
        ticks = (self.last_timestamp - self.first_timestamp) % (1 << 32)
        return round(ticks * 1000 / self.clock_rate)


@dataclass
class Capture:
    """A live answer: its peer connection and the recording it writes."""

    answer_id: int
    subject_id: str
    recording_id: int
    pc: RTCPeerConnection
    writer: RecordingWriter
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, TrackCounts] = field(default_factory=dict)
    tracks: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: str | None = None
    closing: bool = False
    """Set when the answer ends: packets still in flight are not the recording's."""
    key_frame_seen: bool = False
    caption: CaptionTap | None = None
    """Live captions of this answer's audio, when its job shows them (issue 5)."""
    last_packet: float = 0.0
    last_pli: float = 0.0

    def sink_for(self, kind: str, codec: Any) -> TrackSink | None:
        """The sink of one received codec; None for one that cannot be recorded (RTX, RED).
        Tracks are declared in the log as their first packet comes."""
        name = codec.name.upper()
        if name not in CODECS:
            return None
        key = (kind, name)
        if key not in self.tracks:
            self.tracks[key] = self.writer.add_track(
                kind, codec.name, codec.clockRate, getattr(codec, "channels", None)
            )
            self.counts.setdefault(kind, TrackCounts(clock_rate=codec.clockRate))
        tap = self.caption if name == "OPUS" else None
        return TrackSink(self, self.tracks[key], self.counts[kind], name, kind == "video", tap)

    def wants_key_frame(self, codec_name: str, packet: Any) -> bool:
        """Until a key frame arrives, ask for one (PLI) every PLI_INTERVAL_S: browsers send
        key frames rarely, and the one at the start may precede the DTLS handshake here."""
        if self.key_frame_seen:
            return False
        if is_key_frame_start(codec_name, packet):
            self.key_frame_seen = True
            return False
        now = time.monotonic()
        if now - self.last_pli < PLI_INTERVAL_S:
            return False
        self.last_pli = now
        return True

    def backlog(self) -> int:
        """Datagrams received for this answer but not yet recorded: queued in aioice or
        still in the kernel's socket buffer. Zero means a quiet track really is quiet,
        however busy the event loop is (the stop drain relies on it)."""
        waiting = 0
        for connection in self._ice_connections():
            queue = getattr(connection, "_queue", None)
            waiting += queue.qsize() if queue is not None else 0
            for protocol in getattr(connection, "_protocols", []):
                transport = getattr(protocol, "transport", None)
                sock = transport.get_extra_info("socket") if transport else None
                waiting += _pending_bytes(sock.fileno()) if sock is not None else 0
        return waiting

    def _ice_connections(self) -> list[Any]:
        found: dict[int, Any] = {}
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            connection = getattr(getattr(dtls, "transport", None), "_connection", None)
            if connection is not None:
                found[id(connection)] = connection
        return list(found.values())

    def stop_at_now(self) -> None:
        """Keep what was captured before this instant, which may still be in flight."""
        now = time.monotonic()
        for counts in self.counts.values():
            counts.set_cutoff(now)

    @property
    def drained(self) -> bool:
        return all(counts.drained for counts in self.counts.values())

    def summary(self) -> dict[str, int]:
        video = self.counts.get("video", TrackCounts())
        audio = self.counts.get("audio", TrackCounts())
        return {
            "recording_id": self.recording_id,
            "video_frames": video.frames,
            "video_packets": video.packets,
            "audio_packets": audio.packets,
            "duration_ms": max(video.duration_ms, audio.duration_ms),
            "dropped_after_stop": video.dropped_after_stop + audio.dropped_after_stop,
            "size_bytes": self.writer.size_bytes,
        }


def _pending_bytes(fd: int) -> int:
    """Size of the next datagram waiting in a UDP socket (0: none)."""
    with contextlib.suppress(OSError):
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])
    return 0


@dataclass
class TrackSink:
    """Where one payload type's packets go: its track in the log and its counts."""

    capture: Capture
    track: int
    counts: TrackCounts
    codec_name: str
    video: bool
    tap: CaptionTap | None = None

    def record(self, packet: Any) -> None:
        capture = self.capture
        writer = capture.writer
        if capture.closing or writer.blob.closed:
            return
        timestamp = packet.timestamp
        counts = self.counts
        if counts.cutoff is not None and counts.after_cutoff(timestamp):
            return
        now = time.monotonic()
        data = getattr(packet, "_data", b"")
        writer.packet(
            self.track,
            packet.sequence_number,
            timestamp,
            bool(packet.marker),
            int((now - capture.started) * 1000),
            data,
        )
        counts.add(timestamp, now)
        capture.last_packet = now
        if self.tap is not None:
            self.tap.feed(data)


class RecordingBuffer:
    """Stands where the receiver's jitter buffer was: records, and never yields a frame."""

    def __init__(self, capture: Capture, receiver: RTCRtpReceiver, kind: str) -> None:
        self.capture = capture
        self.receiver = receiver
        self.kind = kind
        self.sinks: dict[int, TrackSink | None] = {}

    @property
    def capacity(self) -> int:
        return 512

    def add(self, packet: Any) -> tuple[bool, None]:
        """Record the packet; the flag asks the receiver to send a PLI (key frame request)."""
        sink = self.sinks.get(packet.payload_type)
        if sink is None:
            sink = self._sink(packet.payload_type)
            if sink is None:
                return False, None
        capture = self.capture
        try:
            sink.record(packet)
        except OSError as exc:  # disk full: say so once, stop writing, keep what is there
            capture.failed = f"writing the recording failed: {exc.strerror}"
        if not sink.video or capture.key_frame_seen:
            return False, None
        return capture.wants_key_frame(sink.codec_name, packet), None

    def _sink(self, payload_type: int) -> TrackSink | None:
        codec = getattr(self.receiver, _CODECS_ATTR).get(payload_type)
        if codec is None:
            return None  # not negotiated (yet): look again at the next packet
        sink = self.sinks[payload_type] = self.capture.sink_for(self.kind, codec)
        return sink


def hook_receiver(capture: Capture, receiver: RTCRtpReceiver, kind: str) -> None:
    """Replace the receiver's jitter buffer before its first packet arrives."""
    if not hasattr(receiver, _BUFFER_ATTR) or not hasattr(receiver, _CODECS_ATTR):
        raise RuntimeError("aiortc's receiver has changed: the recording hook does not fit")
    setattr(receiver, _BUFFER_ATTR, RecordingBuffer(capture, receiver, kind))
