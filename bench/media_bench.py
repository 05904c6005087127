"""N simultaneous 1280x720 WebRTC answers into the media service (issue 7, Must show).

    .venv/bin/python bench/media_bench.py --sessions 5,10,15,20,25 --seconds 10

The load clients replay VP8/Opus packets encoded once up front (aiortc packs an
`av.Packet` without encoding), from separate processes, so a client costs SRTP and
pacing, not a codec. For each N the bench starts a fresh media service on a fresh
data dir, streams, stops every answer, then reads every recording back and prints
the media service's CPU per session, frames sent vs stored and RTP sequence gaps.
"No frame lost" = equal counts and no gap. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
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
import time
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


def client_process(socket_path: str, answer_ids: list[int], media: str, out: str) -> None:
    import resource

    results = asyncio.run(_clients(Path(socket_path), answer_ids, Path(media)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for result in results:
        result["client_cpu_s"] = (usage.ru_utime + usage.ru_stime) / len(results)
    Path(out).write_text(json.dumps(results))


async def _clients(socket_path: Path, answer_ids: list[int], media: Path) -> list[dict[str, Any]]:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda **_kw: ["127.0.0.1"]
    packets = _unpack(media.read_bytes())
    return list(await asyncio.gather(*(_client(socket_path, a, packets) for a in answer_ids)))


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
        video.go.set()
        audio.go.set()
        await video.done.wait()
        await audio.done.wait()
        await asyncio.sleep(1.5)  # the last packets reach the service
        async with http.post(f"http://media/answers/{answer_id}/stop") as response:
            stopped = await response.json()
    await pc.close()
    return {"answer_id": answer_id, "video_sent": video.sent, "audio_sent": audio.sent, **stopped}


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


def run(n: int, seconds: float, media: Path, per_process: int) -> dict[str, Any]:
    from appliance.datadir import init_data_dir
    from appliance.recordings import open_playable
    from appliance.records import Recording
    from appliance.settings import load_settings
    from tests.media.test_media_recording import make_answer

    root = Path(tempfile.mkdtemp(prefix="encb"))
    settings = load_settings(
        config=None, secrets=Path("/nonexistent"), environ={}, data_dir=root / "data"
    )
    store = init_data_dir(settings, PASSPHRASE).store
    answers = [make_answer(store, code=f"B{i}")[0] for i in range(n)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(
        ENCLAVE_CONFIG="", ENCLAVE_SECRETS="/nonexistent", ENCLAVE_DATA_DIR=str(settings.data_dir)
    )
    env["PYTHONPATH"] = str(REPO)
    sock = root / "media.sock"
    service = subprocess.Popen(  # noqa: S603 (this interpreter, our own service)
        [sys.executable, "-m", "webapp.media", "--socket", str(sock), "--udp-ports",
         "42000-42999", "--host-address", "127.0.0.1"],
        cwd=REPO, env=env, stderr=open(root / "media.log", "w"),
    )  # fmt: skip
    try:
        while not sock.exists():
            time.sleep(0.1)
        cpu_before = cpu_seconds(service.pid)
        groups = [answers[i : i + per_process] for i in range(0, n, per_process)]
        outs = [root / f"client{i}.json" for i in range(len(groups))]
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=client_process, args=(str(sock), g, str(media), str(o)))
            for g, o in zip(groups, outs, strict=True)
        ]
        started = time.monotonic()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        wall = time.monotonic() - started
        cpu = cpu_seconds(service.pid) - cpu_before
        results = [r for o in outs if o.exists() for r in json.loads(o.read_text())]
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
    lost = gaps = 0
    with store.session() as db:
        for result in results:
            recording = db.get(Recording, result["recording_id"])
            assert recording is not None
            playable = open_playable(store.blobs, recording.blob_id)
            assert playable.video is not None and playable.audio is not None
            gaps += playable.video.sequence_gaps + playable.audio.sequence_gaps
            if os.environ.get("DETAIL"):
                from appliance.recordings import parse_log

                with store.blobs.open(recording.blob_id) as reader:
                    tracks, _ = parse_log(reader)
                video_packets = next(t for t in tracks if t.kind == "video").packets
                print(
                    result["video_sent"],
                    playable.video.frames,
                    video_packets[0].arrival_ms,
                    video_packets[-1].arrival_ms,
                )
            lost += result["video_sent"] - playable.video.frames
            lost += result["audio_sent"] - playable.audio.packets
    store.close()
    if os.environ.get("KEEP"):
        print("kept", root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "sessions": n,
        "completed": len(results),
        # CPU seconds of the service (negotiation and drain included) per streamed second
        "media_cpu_per_session_pct": round(100 * cpu / seconds / n, 2),
        "media_cpu_total_pct_of_one_core": round(100 * cpu / seconds, 1),
        "wall_s": round(wall, 1),
        "clients_cpu_total_pct_of_one_core": round(
            100 * sum(r["client_cpu_s"] for r in results) / wall, 1
        ),
        "frames_sent": sum(r["video_sent"] for r in results),
        "frames_stored": sum(r["video_frames"] for r in results),
        "audio_sent": sum(r["audio_sent"] for r in results),
        "audio_stored": sum(r["audio_packets"] for r in results),
        "frames_lost": lost,
        "sequence_gaps": gaps,
        "no_frame_lost": lost == 0 and gaps == 0 and len(results) == n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="5,10,15,20,25")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-process", type=int, default=5, help="sessions per client process")
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="encm")) / "replay.bin"
    encode_once(args.seconds, media)
    best = 0
    for n in (int(x) for x in args.sessions.split(",")):
        figures = run(n, args.seconds, media, args.per_process)
        print(json.dumps(figures), flush=True)
        if figures["no_frame_lost"]:
            best = max(best, n)
    shutil.rmtree(media.parent, ignore_errors=True)
    print(json.dumps({"largest_n_without_loss": best, "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
