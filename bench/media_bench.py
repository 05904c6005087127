"""N simultaneous 1280x720 WebRTC answers into the media service (issue 7, Must show).

    .venv/bin/python bench/media_bench.py --sessions 20,25,30 --procs 1,2 --seconds 10

The load clients replay VP8/Opus packets encoded once up front (aiortc packs an
`av.Packet` without encoding), from separate processes, so a client costs SRTP and
pacing, not a codec. For each N the bench starts a fresh media service on a fresh
data dir, streams, stops every answer, then reads every recording back and prints
the media service's CPU per session, frames sent vs stored and RTP sequence gaps,
kernel UDP receive-buffer drops and how far the clients fell behind their pace; the
table goes to bench/results/media_bench.txt. "No frame lost" = equal counts and no
gap. `--procs K` runs K services on one data dir (sessions spread round-robin),
`--profile PATH` runs each under cProfile. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import multiprocessing
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PASSPHRASE = "BENCH-PASS-PHRASE-0001"  # noqa: S105 (a throwaway bench data dir)
FPS = 30
WIDTH, HEIGHT = 1280, 720


def encode_once(seconds: float, path: Path) -> None:
    """Moving 720p test pattern as VP8 (about 1.5 Mbit/s) and a tone as Opus, 20 ms packets."""
    import av
    import numpy as np

    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.time_base = fractions.Fraction(1, FPS)
    video.bit_rate = 1_500_000
    video.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    vp8: list[bytes] = []
    for i in range(int(seconds * FPS)):
        rgb = np.stack([(xx + 8 * i) % 256, (yy + 4 * i) % 256, (xx ^ yy) % 256], -1)
        frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        vp8 += [bytes(p) for p in video.encode(frame)]
    vp8 += [bytes(p) for p in video.encode(None)]
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    audio.bit_rate = 32000
    opus: list[bytes] = []
    tone = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    for i in range(int(seconds * 50)):
        sound = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2)[None, :], format="s16", layout="stereo"
        )
        sound.sample_rate, sound.pts = 48000, i * 960
        opus += [bytes(p) for p in audio.encode(sound)]
    path.write_bytes(_pack(vp8) + _pack(opus))


def _pack(packets: list[bytes]) -> bytes:
    return struct.pack(">I", len(packets)) + b"".join(
        struct.pack(">I", len(p)) + p for p in packets
    )


def _unpack(data: bytes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    pos = 0
    for name in ("vp8", "opus"):
        (count,) = struct.unpack_from(">I", data, pos)
        pos += 4
        out[name] = []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", data, pos)
            out[name].append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
    return out


# --- the load clients (separate processes) ---------------------------------------------------


def client_process(sessions: list[tuple[str, int]], media: str, out: str) -> None:
    """One load process: its sessions, each `(service socket, answer id)`, concurrently."""
    import resource

    results = asyncio.run(_clients(sessions, Path(media)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for result in results:
        result["client_cpu_s"] = (usage.ru_utime + usage.ru_stime) / len(results)
    Path(out).write_text(json.dumps(results))


async def _clients(sessions: list[tuple[str, int]], media: Path) -> list[dict[str, Any]]:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda **_kw: ["127.0.0.1"]
    packets = _unpack(media.read_bytes())
    return list(await asyncio.gather(*(_client(Path(s), a, packets) for s, a in sessions)))


async def _client(socket_path: Path, answer_id: int, packets: dict[str, list[bytes]]) -> dict:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    video = ReplayTrack("video", packets["vp8"], fractions.Fraction(1, FPS))
    audio = ReplayTrack("audio", packets["opus"], fractions.Fraction(1, 50))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(video)
    pc.addTrack(audio)
    await pc.setLocalDescription(await pc.createOffer())
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with http.post(f"http://media/answers/{answer_id}/offer", json=body) as response:
            await pc.setRemoteDescription(RTCSessionDescription(**await response.json()))
        # As the candidate page does: the answer time starts once the service says connected.
        while True:
            async with http.get(f"http://media/answers/{answer_id}") as response:
                if (await response.json()).get("state") == "connected":
                    break
            await asyncio.sleep(0.1)
        streaming_from = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        video.go.set()
        audio.go.set()
        await video.done.wait()
        await audio.done.wait()
        streaming_to = time.monotonic()
        await asyncio.sleep(1.5)  # the last packets reach the service
        async with http.post(f"http://media/answers/{answer_id}/stop") as response:
            stopped = await response.json()
    await pc.close()
    return {
        "answer_id": answer_id,
        "video_sent": video.sent,
        "audio_sent": audio.sent,
        "client_late_ms": round(max(video.late_ms, audio.late_ms), 1),
        "streaming_from": streaming_from,
        "streaming_to": streaming_to,
        **stopped,
    }


def _replay_track_class() -> type:
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class _ReplayTrack(MediaStreamTrack):
        """Yields pre-encoded packets at their real-time pace, then ends."""

        def __init__(self, kind: str, data: list[bytes], period: fractions.Fraction) -> None:
            super().__init__()
            self.kind = kind
            self.data, self.period = data, period
            self.sent = 0
            self.late_ms = 0.0
            """How far behind its real-time pace this client fell at worst (client overload)."""
            self.start: float | None = None
            self.done = asyncio.Event()
            self.go = asyncio.Event()

        async def recv(self) -> Any:
            import av

            if self.sent >= len(self.data):
                self.done.set()
                self.stop()
                raise MediaStreamError
            if self.start is None:
                await self.go.wait()
                self.start = time.monotonic()
            due = self.start + float(self.sent * self.period)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.late_ms = max(self.late_ms, 1000 * (time.monotonic() - due))
            packet = av.Packet(self.data[self.sent])
            packet.pts, packet.time_base = self.sent, self.period
            self.sent += 1
            return packet

    return _ReplayTrack


def ReplayTrack(kind: str, data: list[bytes], period: fractions.Fraction) -> Any:  # noqa: N802
    return _replay_track_class()(kind, data, period)


# --- one run of N sessions -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Samples the service processes' CPU seconds every SAMPLE_S, so the figure can be
    taken over the window in which every session streams (no negotiation, no drain)."""

    SAMPLE_S = 0.2

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), sum(map(cpu_seconds, self.pids))))
            self.halt.wait(self.SAMPLE_S)

    def rate(self, start: float, end: float) -> float:
        """CPU seconds per second between two instants (0.0 when the window is too short)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1.0:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def udp_counters() -> dict[str, int]:
    """This network namespace's UDP counters: RcvbufErrors = datagrams the kernel dropped
    because a socket's receive buffer was full (the service fell behind)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [row for row in lines if row[0] == "Udp:"][:2]
    return dict(zip(names[1:], map(int, values[1:]), strict=True))


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Options:
    seconds: float
    media: Path
    per_process: int
    procs: int
    profile: Path | None = None


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    socket: Path


def start_services(root: Path, settings_dir: Path, options: Options) -> list[Service]:
    """`procs` media services on one data dir, each with its own socket and UDP range."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent", ENCLAVE_DATA_DIR=str(settings_dir)
    )
    env["PYTHONPATH"] = str(REPO)
    services = []
    for k in range(options.procs):
        profile = options.profile
        profiler = ["-m", "cProfile", "-o", f"{profile}.p{k}"] if profile else []
        low = 42000 + 500 * k
        sock = root / f"media{k}.sock"
        process = subprocess.Popen(  # noqa: S603 (this interpreter, our own service)
            [sys.executable, *profiler, "-m", "webapp.media", "--socket", str(sock),
             "--udp-ports", f"{low}-{low + 499}", "--host-address", "127.0.0.1"],
            cwd=REPO, env=env, stderr=open(root / f"media{k}.log", "w"),
        )  # fmt: skip
        services.append(Service(process, sock))
    for service in services:
        while not service.socket.exists():
            time.sleep(0.1)
    return services


def stream(root: Path, answers: list[int], services: list[Service], options: Options) -> dict:
    """Client processes stream every answer; the service CPU and UDP drops meanwhile."""
    sessions = [(str(services[i % len(services)].socket), a) for i, a in enumerate(answers)]
    step = options.per_process
    groups = [sessions[i : i + step] for i in range(0, len(sessions), step)]
    outs = [root / f"client{i}.json" for i in range(len(groups))]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=client_process, args=(g, str(options.media), str(o)))
        for g, o in zip(groups, outs, strict=True)
    ]
    sampler = CpuSampler([s.process.pid for s in services])
    udp_before = udp_counters()
    sampler.start()
    started = time.monotonic()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    ended = time.monotonic()
    sampler.halt.set()
    sampler.join()
    udp_after = udp_counters()
    results = [r for o in outs if o.exists() for r in json.loads(o.read_text())]
    window = (
        max((r["streaming_from"] for r in results), default=0.0),
        min((r["streaming_to"] for r in results), default=0.0),
    )
    return {
        "results": results,
        "wall_s": ended - started,
        "cpu_streaming": sampler.rate(*window),
        "cpu_whole": sampler.rate(started, ended),
        "window_s": max(0.0, window[1] - window[0]),
        "rcvbuf_errors": udp_after["RcvbufErrors"] - udp_before["RcvbufErrors"],
    }


def check_recordings(store: Any, results: list[dict[str, Any]]) -> None:
    """Reads every recording back: what was stored, and its RTP sequence gaps."""
    from appliance.recordings import open_playable, parse_log
    from appliance.records import Recording

    with store.session() as db:
        for result in results:
            recording = db.get(Recording, result["recording_id"])
            assert recording is not None
            playable = open_playable(store.blobs, recording.blob_id)
            assert playable.video is not None and playable.audio is not None
            result["video_stored"] = playable.video.frames
            result["audio_stored"] = playable.audio.packets
            result["gaps"] = playable.video.sequence_gaps + playable.audio.sequence_gaps
            short = playable.video.frames < result["video_sent"]
            if short or os.environ.get("DETAIL"):  # where a short recording lost its frames
                with store.blobs.open(recording.blob_id) as reader:
                    tracks, _ = parse_log(reader)
                video = next(t.packets for t in tracks if t.kind == "video")
                print(
                    "answer", result["answer_id"], "sent", result["video_sent"],
                    "stored", playable.video.frames, "arrival ms", video[0].arrival_ms,
                    video[-1].arrival_ms, "seq", video[0].sequence, video[-1].sequence,
                )  # fmt: skip


def run(n: int, options: Options) -> dict[str, Any]:
    from appliance.datadir import init_data_dir
    from appliance.settings import load_settings
    from tests.media.media_client import make_answer

    root = Path(tempfile.mkdtemp(prefix="encb"))
    settings = load_settings(
        config=None, secrets=Path("/nonexistent"), environ={}, data_dir=root / "data"
    )
    store = init_data_dir(settings, PASSPHRASE).store
    answers = [make_answer(store, code=f"B{i}")[0] for i in range(n)]
    load = load_average()
    services = start_services(root, settings.data_dir, options)
    try:
        streamed = stream(root, answers, services, options)
    finally:
        for service in services:
            service.process.send_signal(signal.SIGTERM)
        for service in services:
            service.process.wait(timeout=30)
    results = streamed["results"]
    check_recordings(store, results)
    store.close()
    if os.environ.get("KEEP"):
        print("kept", root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return figures(n, options, load, streamed, results)


def _span(values: list[int]) -> str:
    return f"{min(values)}-{max(values)}" if values else "-"


def figures(
    n: int, options: Options, load: float, streamed: dict, results: list[dict]
) -> dict[str, Any]:
    lost = sum(
        r["video_sent"] - r["video_stored"] + r["audio_sent"] - r["audio_stored"] for r in results
    )
    gaps = sum(r["gaps"] for r in results)
    return {
        "sessions": n,
        "procs": options.procs,
        "load_before": round(load, 2),
        "completed": len(results),
        # service CPU while all N stream, per session, in % of one core
        "cpu_per_session_pct": round(100 * streamed["cpu_streaming"] / n, 2),
        "cpu_total_pct": round(100 * streamed["cpu_streaming"], 1),
        # the same over the whole run (negotiation, DTLS handshakes and drain included)
        "cpu_whole_run_pct": round(100 * streamed["cpu_whole"], 1),
        "window_s": round(streamed["window_s"], 1),
        "clients_cpu_pct": round(
            100 * sum(r["client_cpu_s"] for r in results) / streamed["wall_s"], 1
        ),
        "video_sent": _span([r["video_sent"] for r in results]),
        "video_stored": _span([r["video_stored"] for r in results]),
        "audio_sent": _span([r["audio_sent"] for r in results]),
        "audio_stored": _span([r["audio_stored"] for r in results]),
        "lost": lost,
        "gaps": gaps,
        "rcvbuf_errors": streamed["rcvbuf_errors"],
        # packets the service refused as later than the stop instant (its clock estimate)
        "after_stop": sum(r.get("dropped_after_stop", 0) for r in results),
        "client_late_ms": max((r["client_late_ms"] for r in results), default=0.0),
        "no_frame_lost": lost == 0 and gaps == 0 and len(results) == n,
    }


COLUMNS = [
    ("sessions", "N"), ("procs", "procs"), ("load_before", "load1"),
    ("cpu_per_session_pct", "cpu%/sess"), ("cpu_total_pct", "cpu%"),
    ("cpu_whole_run_pct", "cpu%run"), ("clients_cpu_pct", "clients%"),
    ("video_sent", "frames sent"), ("video_stored", "frames stored"),
    ("audio_sent", "audio sent"), ("audio_stored", "audio stored"), ("gaps", "gaps"),
    ("rcvbuf_errors", "rcvbuf drops"), ("after_stop", "after stop"),
    ("client_late_ms", "late ms"), ("no_frame_lost", "ok"),
]  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[label for _, label in COLUMNS]]
    cells += [[str(row[key]) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    best = {
        procs: max(
            (r["sessions"] for r in rows if r["procs"] == procs and r["no_frame_lost"]), default=0
        )
        for procs in sorted({r["procs"] for r in rows})
    }
    rmem_max = Path("/proc/sys/net/core/rmem_max").read_text().strip()
    return "\n".join(
        [
            f"media_bench {time.strftime('%Y-%m-%d %H:%M')}  cores={os.cpu_count()}"
            f"  seconds={args.seconds:g}  per-process={args.per_process}"
            f"  net.core.rmem_max={rmem_max}",
            "Per session: frames/audio packets sent vs stored, as min-max over the sessions;",
            "cpu%/sess and cpu% = media service(s) while every session streams, % of one core;",
            "load1 = 1-minute load average just before the run (the machine is shared).",
            "",
            table(rows),
            "",
            *(
                f"largest N without a lost frame or RTP gap, {procs} service process(es): {n}"
                for procs, n in best.items()
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="5,10,15,20,25")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-process", type=int, default=5, help="sessions per client process")
    parser.add_argument("--procs", default="1", help="media service processes, e.g. 1,2")
    parser.add_argument("--profile", type=Path, help="cProfile each service into PATH.<N>.p<k>")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/media_bench.txt")
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="encm")) / "replay.bin"
    encode_once(args.seconds, media)
    rows = []
    for n in (int(x) for x in args.sessions.split(",")):
        for procs in (int(x) for x in args.procs.split(",")):
            profile = args.profile.with_suffix(f".{n}") if args.profile else None
            options = Options(args.seconds, media, args.per_process, procs, profile)
            rows.append(run(n, options))
            print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(media.parent, ignore_errors=True)
    text = report(rows, args)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
