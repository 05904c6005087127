"""Interview recordings: the received RTP media, stored as is, and its reader (issue 7, item 5).

Why this format: the media service must not decode and re-encode (the stock
`MediaRecorder` falls behind on the event loop and loses frames, aiortc issue
#984), so it writes each received RTP packet's depayloaded payload (VP8, Opus or
H.264 Annex B, exactly as the browser encoded them) with its sequence number, RTP
timestamp and arrival time. The log goes straight into an encrypted blob
(`appliance/blobs.py`) under the candidate's subject key: nothing plaintext ever
touches the disk, and a recording cut by a crash stays readable up to its last
flushed chunk (`partial_ok=True`).

The reader turns a log back into a Matroska file, in memory, by *remuxing* the
frames (no re-encoding): PyAV and the analysis workers decode that like any
upload. It also reports what the log proves: frames and packets per track,
durations, and RTP sequence gaps (packets the network lost for good).

Plaintext layout inside the blob::

    b"ENCRTP01"
    track record   b"T" | track (u8) | length (u16)
                   | JSON {"kind", "codec", "clock_rate", "channels"}
    packet record  b"P" | track (u8) | sequence (u16) | RTP timestamp (u32) | marker (u8)
                   | arrival ms since the start (u32) | length (u32) | payload

All integers big-endian. A partial log may end inside a record: the reader stops there.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import median
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.blobs import BlobStore, BlobWriter

MEDIA_TYPE = "application/x-enclave-rtp"
"""`Recording.media_type` of a recording in this format."""
PLAYABLE_MEDIA_TYPE = "video/x-matroska"
WEBM_MEDIA_TYPE = "video/webm"
"""VP8 and Opus only (what Chromium and Firefox send) fit WebM, which a browser's <video>
plays; H.264 (Safari) needs full Matroska."""
WEBM_CODECS = frozenset({"VP8", "OPUS"})
MAGIC = b"ENCRTP01"
_TRACK = struct.Struct(">cBH")
_PACKET = struct.Struct(">cBHIBII")
_MS = Fraction(1, 1000)
# The codecs a browser sends over WebRTC, by their RTP name, and PyAV's codec for each.
CODECS = {"VP8": "vp8", "H264": "h264", "OPUS": "opus"}


class RecordingFormatError(ValueError):
    """The plaintext is not a recording log (wrong magic, unknown record type or codec)."""


# --- writing ---------------------------------------------------------------------------------


class RecordingWriter:
    """Appends tracks and packets to a blob; the blob writer encrypts and flushes by chunk."""

    def __init__(self, blob: BlobWriter) -> None:
        self.blob = blob
        self.tracks: list[dict[str, Any]] = []
        self.size_bytes = len(MAGIC)
        blob.write(MAGIC)

    def add_track(self, kind: str, codec: str, clock_rate: int, channels: int | None) -> int:
        """Declare a track before its first packet; returns its number."""
        if codec.upper() not in CODECS:
            raise RecordingFormatError(f"codec {codec} cannot be recorded")
        number = len(self.tracks)
        info = {
            "kind": kind,
            "codec": codec.upper(),
            "clock_rate": clock_rate,
            "channels": channels,
        }
        self.tracks.append(info)
        body = json.dumps(info).encode()
        self._write(_TRACK.pack(b"T", number, len(body)) + body)
        return number

    def packet(
        self,
        track: int,
        sequence: int,
        timestamp: int,
        marker: bool,
        arrival_ms: int,
        payload: bytes,
    ) -> None:
        head = _PACKET.pack(b"P", track, sequence, timestamp, int(marker), arrival_ms, len(payload))
        self._write(head + payload)

    def _write(self, data: bytes) -> None:
        self.blob.write(data)
        self.size_bytes += len(data)

    def close(self) -> None:
        """Write the final chunk: a strict reader then accepts the blob as complete."""
        self.blob.close()


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    sequence: int
    timestamp: int
    marker: bool
    arrival_ms: int
    payload: bytes


@dataclass
class Track:
    kind: str
    codec: str
    clock_rate: int
    channels: int | None
    packets: list[Packet] = field(default_factory=list)


def parse_log(chunks: Iterable[bytes]) -> tuple[list[Track], bool]:
    """The tracks of a log, and whether it ended on a record boundary."""
    data = b"".join(chunks)
    if not data.startswith(MAGIC):
        raise RecordingFormatError("not an interview recording (wrong magic bytes)")
    tracks: list[Track] = []
    pos = len(MAGIC)
    while pos < len(data):
        kind = data[pos : pos + 1]
        if kind == b"T":
            if pos + _TRACK.size > len(data):
                return tracks, False
            _, number, length = _TRACK.unpack_from(data, pos)
            body = data[pos + _TRACK.size : pos + _TRACK.size + length]
            if len(body) < length:
                return tracks, False
            info = json.loads(body)
            if number != len(tracks) or info["codec"] not in CODECS:
                raise RecordingFormatError(f"track record {number} is out of place or unknown")
            tracks.append(Track(info["kind"], info["codec"], info["clock_rate"], info["channels"]))
            pos += _TRACK.size + length
        elif kind == b"P":
            if pos + _PACKET.size > len(data):
                return tracks, False
            _, number, seq, ts, marker, arrival, length = _PACKET.unpack_from(data, pos)
            start = pos + _PACKET.size
            if start + length > len(data):
                return tracks, False
            if number >= len(tracks):
                raise RecordingFormatError(f"packet of undeclared track {number}")
            tracks[number].packets.append(
                Packet(seq, ts, bool(marker), arrival, data[start : start + length])
            )
            pos = start + length
        else:
            raise RecordingFormatError(f"unknown record type {kind!r} at byte {pos}")
    return tracks, True


def _unwrap(values: Iterable[int], bits: int) -> Iterator[int]:
    """Extend wrapping counters (16-bit sequence numbers, 32-bit timestamps) monotonically."""
    span, half = 1 << bits, 1 << (bits - 1)
    extended: int | None = None
    for value in values:
        if extended is None:
            extended = value
        else:
            delta = (value - extended) % span
            extended += delta - span if delta >= half else delta
        yield extended


@dataclass(frozen=True)
class Frame:
    pts_ms: int
    data: bytes


@dataclass(frozen=True)
class TrackSummary:
    """What one track of a recording holds, as the analysis and the tests need to know."""

    kind: str
    codec: str
    packets: int
    frames: int
    duration_s: float
    sequence_gaps: int
    """RTP packets missing for good between the first and last received (0: nothing lost)."""
    duplicates: int


def assemble(track: Track) -> tuple[list[Frame], TrackSummary]:
    """Frames of a track in order: packets sorted by sequence, duplicates dropped, and the
    packets sharing an RTP timestamp joined (a video frame spans many packets)."""
    seqs = list(_unwrap((p.sequence for p in track.packets), 16))
    by_seq: dict[int, Packet] = {}
    for seq, packet in zip(seqs, track.packets, strict=True):
        by_seq.setdefault(seq, packet)
    ordered = [by_seq[s] for s in sorted(by_seq)]
    gaps = (max(by_seq) - min(by_seq) + 1 - len(by_seq)) if by_seq else 0
    stamps = list(_unwrap((p.timestamp for p in ordered), 32))
    frames: list[Frame] = []
    origin = stamps[0] if stamps else 0
    start_ms = ordered[0].arrival_ms if ordered else 0
    parts: list[bytes] = []
    current: int | None = None
    for stamp, packet in zip(stamps, ordered, strict=True):
        if current is not None and stamp != current:
            frames.append(_frame(start_ms, current - origin, track.clock_rate, parts))
            parts = []
        current = stamp
        parts.append(packet.payload)
    if current is not None:
        frames.append(_frame(start_ms, current - origin, track.clock_rate, parts))
    summary = TrackSummary(
        kind=track.kind,
        codec=track.codec,
        packets=len(by_seq),
        frames=len(frames),
        duration_s=_duration(stamps, track.clock_rate),
        sequence_gaps=gaps,
        duplicates=len(track.packets) - len(by_seq),
    )
    return frames, summary


def _frame(start_ms: int, ticks: int, clock_rate: int, parts: list[bytes]) -> Frame:
    return Frame(start_ms + round(ticks * 1000 / clock_rate), b"".join(parts))


def _duration(stamps: list[int], clock_rate: int) -> float:
    """First to last frame plus one frame interval (the last frame is shown too)."""
    distinct = sorted(set(stamps))
    if not distinct:
        return 0.0
    steps = [b - a for a, b in zip(distinct, distinct[1:], strict=False)]
    last = median(steps) if steps else 0
    return (distinct[-1] - distinct[0] + last) / clock_rate


@dataclass(frozen=True)
class Playable:
    """A recording remuxed (never re-encoded) into Matroska bytes, with what it holds."""

    data: bytes
    media_type: str
    complete: bool
    video: TrackSummary | None
    audio: TrackSummary | None


def to_playable(chunks: Iterable[bytes], complete: bool = True) -> Playable:
    """Matroska bytes of a recording log that PyAV decodes in memory."""
    tracks, whole = parse_log(chunks)
    video = next((t for t in tracks if t.kind == "video" and t.packets), None)
    audio = next((t for t in tracks if t.kind == "audio" and t.packets), None)
    assembled = {id(t): assemble(t) for t in (video, audio) if t is not None}
    webm = all(t.codec in WEBM_CODECS for t in (video, audio) if t is not None)
    buffer = io.BytesIO()
    with av_open_output(buffer, "webm" if webm else "matroska") as output:
        queue: list[tuple[int, int, Frame, Any]] = []
        for order, track in enumerate(t for t in (video, audio) if t is not None):
            frames = assembled[id(track)][0]
            stream = _add_stream(output, track, frames)
            if stream is None:
                continue
            queue += [(frame.pts_ms, order, frame, stream) for frame in frames]
        for _, _, frame, stream in sorted(queue, key=lambda item: (item[0], item[1])):
            _mux(output, stream, frame)
    return Playable(
        data=buffer.getvalue(),
        media_type=WEBM_MEDIA_TYPE if webm else PLAYABLE_MEDIA_TYPE,
        complete=complete and whole,
        video=assembled[id(video)][1] if video is not None else None,
        audio=assembled[id(audio)][1] if audio is not None else None,
    )


def av_open_output(buffer: io.BytesIO, container: str = "matroska") -> Any:
    import av

    return av.open(buffer, mode="w", format=container)


def _add_stream(output: Any, track: Track, frames: list[Frame]) -> Any:
    codec = CODECS[track.codec]
    if track.kind == "audio":
        channels = track.channels or 2
        stream = output.add_stream(codec, rate=track.clock_rate)
        stream.layout = "stereo" if channels == 2 else "mono"
        # OpusHead (RFC 7845 5.1): Matroska needs it as the codec private data.
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, track.clock_rate, 0, 0)
        stream.codec_context.extradata = head
    else:
        first = _first_picture(codec, frames)
        if first is None:
            return None  # no decodable key frame: nothing a player could show
        index, size = first
        del frames[:index]  # frames before the first key frame cannot be shown
        stream = output.add_stream(codec, rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
    stream.time_base = _MS
    return stream


def _first_picture(codec: str, frames: list[Frame]) -> tuple[int, tuple[int, int]] | None:
    """Index and size of the first frame that decodes on its own (a key frame); only this
    probe decodes, nothing is re-encoded."""
    import av

    for index, frame in enumerate(frames[:600]):
        decoder: Any = av.CodecContext.create(codec, "r")
        try:
            pictures = decoder.decode(av.Packet(frame.data)) + decoder.decode(None)
        except av.FFmpegError:
            continue
        for picture in pictures:
            return index, (picture.width, picture.height)
    return None


def _mux(output: Any, stream: Any, frame: Frame) -> None:
    import av

    packet = av.Packet(frame.data)
    packet.pts = packet.dts = frame.pts_ms
    packet.time_base = _MS
    packet.stream = stream
    output.mux(packet)


def open_playable(blobs: BlobStore, blob_id: str, partial_ok: bool = False) -> Playable:
    """Decrypt a recording blob and remux it; `partial_ok` for one cut by a crash."""
    with blobs.open(blob_id, partial_ok=partial_ok) as reader:
        chunks = list(reader)
        return to_playable(chunks, complete=reader.complete)


def playable_bytes(media_type: str, plaintext: bytes) -> bytes:
    """What the analysis workers decode: a log is remuxed, any other upload passes as is."""
    if media_type == MEDIA_TYPE:
        return to_playable([plaintext]).data
    return plaintext
