"""One answer's WebRTC capture: received RTP packets go straight into an encrypted recording.

Why at the RTP level: aiortc's receiver reassembles frames in a jitter buffer and
hands them to a decoder thread; the stock `MediaRecorder` then re-encodes them on
the event loop and falls behind (aiortc issue #984). `hook_receiver` puts a
`RecordingBuffer` in place of the receiver's jitter buffer: every packet that
survived SRTP, retransmission (RTX unwrapped, NACKs still sent upstream of it) and
depayloading is written with its sequence number and timestamps, and nothing is
ever passed to the decoder, so a session costs a little AES and no codec work.

Relies on aiortc 1.16.0 internals (`_RTCRtpReceiver__jitter_buffer`,
`_RTCRtpReceiver__codecs`, the `_data` a depayloaded packet carries); `ice.check_versions`
refuses other versions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.codecs.vpx import VpxPayloadDescriptor

from appliance.recordings import CODECS, RecordingWriter

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
    first_arrival: float = 0.0
    cutoff: int | None = None
    """Set on stop: the RTP timestamp of the stop instant; later media is not the answer's."""
    drained: bool = False

    def add(self, timestamp: int) -> None:
        if self.first_timestamp is None:
            self.first_arrival = time.monotonic()
        self.packets += 1
        if timestamp != self.last_timestamp:
            self.frames += 1
        if self.first_timestamp is None:
            self.first_timestamp = timestamp
        self.last_timestamp = timestamp

    def set_cutoff(self, now: float) -> None:
        if self.first_timestamp is None:
            self.drained = True
            return
        ticks = int((now - self.first_arrival) * self.clock_rate)
        self.cutoff = (self.first_timestamp + ticks) % (1 << 32)

    def after_cutoff(self, timestamp: int) -> bool:
        if self.cutoff is None:
            return False
        if 0 < (timestamp - self.cutoff) % (1 << 32) < (1 << 31):
            self.drained = True
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
    key_frame_seen: bool = False
    last_packet: float = 0.0
    last_pli: float = 0.0

    def arrival_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def track_for(self, kind: str, codec: Any) -> int:
        key = (kind, codec.name.upper())
        if key not in self.tracks:
            self.tracks[key] = self.writer.add_track(
                kind, codec.name, codec.clockRate, getattr(codec, "channels", None)
            )
            self.counts.setdefault(kind, TrackCounts(clock_rate=codec.clockRate))
        return self.tracks[key]

    def record(self, kind: str, codec: Any, packet: Any) -> None:
        if self.writer.blob.closed or codec.name.upper() not in CODECS:
            return
        track = self.track_for(kind, codec)
        if self.counts[kind].after_cutoff(packet.timestamp):
            return
        payload = getattr(packet, "_data", b"")
        self.writer.packet(
            track,
            packet.sequence_number,
            packet.timestamp,
            bool(packet.marker),
            self.arrival_ms(),
            payload,
        )
        self.counts[kind].add(packet.timestamp)
        self.last_packet = time.monotonic()

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
            "size_bytes": self.writer.size_bytes,
        }


class RecordingBuffer:
    """Stands where the receiver's jitter buffer was: records, and never yields a frame."""

    def __init__(self, capture: Capture, receiver: RTCRtpReceiver, kind: str) -> None:
        self.capture = capture
        self.receiver = receiver
        self.kind = kind

    @property
    def capacity(self) -> int:
        return 512

    def add(self, packet: Any) -> tuple[bool, None]:
        """Record the packet; the flag asks the receiver to send a PLI (key frame request)."""
        codec = getattr(self.receiver, _CODECS_ATTR).get(packet.payload_type)
        if codec is None:
            return False, None
        try:
            self.capture.record(self.kind, codec, packet)
        except OSError as exc:  # disk full: say so once, stop writing, keep what is there
            self.capture.failed = f"writing the recording failed: {exc.strerror}"
        if self.kind != "video":
            return False, None
        return self.capture.wants_key_frame(codec.name.upper(), packet), None


def hook_receiver(capture: Capture, receiver: RTCRtpReceiver, kind: str) -> None:
    """Replace the receiver's jitter buffer before its first packet arrives."""
    if not hasattr(receiver, _BUFFER_ATTR) or not hasattr(receiver, _CODECS_ATTR):
        raise RuntimeError("aiortc's receiver has changed: the recording hook does not fit")
    setattr(receiver, _BUFFER_ATTR, RecordingBuffer(capture, receiver, kind))
