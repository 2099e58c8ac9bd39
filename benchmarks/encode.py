"""Benchmark: the streaming ResultEncoder against the ffmpeg command line, side by side.

    .venv/bin/python benchmarks/encode.py                      # 1080p, 5 s, MP4, quality 95
    .venv/bin/python benchmarks/encode.py --format WEBM --seconds 2
    .venv/bin/python benchmarks/encode.py --no-audio --memory-seconds 0

Both contenders get the same frames, generated up front (not timed): a moving RGB gradient pattern
with some noise, so the codec has real work. ``ours`` feeds them to
:class:`farm.io.encode.ResultEncoder` (in chunks of 17, like the stitcher); ``ffmpeg`` reads them
as raw RGB from stdin (``-f rawvideo -pix_fmt rgb24 -s WxH -r 32 -i -``). Fairness:

* the same codec settings: the ffmpeg arguments come from ``EncoderSettings.ffmpeg_args()``,
  the single source of both (CRF, preset, pix_fmt, BT.709 conversion, tags, container flags);
* the same threading: the encoder's thread count (``farm.io.encode.video_threads()``: 0 = the
  codec's automatic count on this machine) is passed to ffmpeg as ``-threads:v``, and the same
  thread type (libx264 frame threads, the CLI's default);
* the same audio when audio is on: the same waveform, for ffmpeg as a WAV file written before the
  clock starts, for ours passed to ``set_audio`` (timed);
* wall time is the figure of merit; CPU time (user + sys, ours: the whole process; ffmpeg: the
  child plus our pipe writes) is printed too, because it is less disturbed by other processes
  on a shared machine; each contender runs ``--repeat`` times, alternating, best kept;
* the clock covers everything from the first frame to a finished file on disk (ffmpeg's process
  start included; ``+faststart`` rewrite included in both).

Caveat printed with the results: the ffmpeg CLI is whatever ``ffmpeg`` is on PATH (Debian's
package), which links its own libx264/libvpx builds, not the ones bundled in PyAV's wheel.

Then, in a fresh child process, the peak RSS growth of our encoder over a 15 s 1080p clip fed in
chunks of 17 frames generated on the fly into one reused buffer (the frames are never all in
memory), with the audio arriving after the last frame (the worst case: every compressed video
packet waits in the queue).

Needs the ffmpeg CLI for the comparison (``apt-get install -y ffmpeg``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import proc_status_kib
from farm.domain.constants import OUTPUT_FPS, OUTPUT_SAMPLE_RATE
from farm.io.encode import ResultEncoder, quality_settings, video_threads

CHUNK = 17


def make_frames(out: np.ndarray, start: int) -> np.ndarray:
    """Fill ``out`` [n, h, w, 3] with frames ``start..start+n-1`` of a moving gradient + noise."""
    n, h, w, _ = out.shape
    y = np.arange(h, dtype=np.int32)[:, None]
    x = np.arange(w, dtype=np.int32)[None, :]
    rng = np.random.default_rng(start)
    for i in range(n):
        t = start + i
        out[i, ..., 0] = (x + 3 * t) >> 3
        out[i, ..., 1] = (y + 2 * t) >> 2
        out[i, ..., 2] = ((x + y) // 4 + 5 * t) & 255
        noise = rng.integers(0, 4, size=(h, w), dtype=np.uint8)
        out[i, ..., 1] += noise
    return out


def make_audio(samples: int) -> np.ndarray:
    """A stereo test tone with some movement, float32 [2, samples]."""
    t = np.arange(samples, dtype=np.float64) / OUTPUT_SAMPLE_RATE
    left = 0.4 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    right = 0.3 * np.sin(2 * np.pi * 660 * t + 0.3)
    return np.stack([left, right]).astype(np.float32)


def write_wav(path: str, audio: np.ndarray) -> None:
    """Write float32 [2, n] as a 16-bit PCM WAV (``wave`` writes PCM only)."""
    pcm = np.round(np.clip(audio.T, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(OUTPUT_SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


def _cpu_s() -> float:
    """CPU seconds (user + sys) of this process and its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_ours(path, frames, audio, fmt, quality) -> tuple[float, float]:
    """Wall and CPU seconds of ResultEncoder from the first frame to the renamed file."""
    n, h, w, _ = frames.shape
    c0 = _cpu_s()
    t0 = time.perf_counter()
    with ResultEncoder(
        path, output_format=fmt, quality=quality, width=w, height=h, expected_frames=n, audio=audio is not None
    ) as enc:
        if audio is not None:
            enc.set_audio(audio, OUTPUT_SAMPLE_RATE)
        for start in range(0, n, CHUNK):
            enc.write_frames(frames[start : start + CHUNK])
    return time.perf_counter() - t0, _cpu_s() - c0


def run_ffmpeg(path, frames, wav, fmt, quality) -> tuple[float, float]:
    """Wall and CPU seconds (ffmpeg's plus ours writing the pipe) of the ffmpeg CLI."""
    n, h, w, _ = frames.shape
    settings = quality_settings(fmt, quality)
    cmd = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(OUTPUT_FPS),
        "-i",
        "-",
    ]
    if wav:
        cmd += ["-i", wav, "-map", "0:v", "-map", "1:a"]
    cmd += settings.ffmpeg_args(audio=bool(wav), threads=video_threads()) + [path]
    c0 = _cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for i in range(n):
            proc.stdin.write(memoryview(frames[i]).cast("B"))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    rc = proc.wait()
    elapsed, cpu = time.perf_counter() - t0, _cpu_s() - c0
    if rc:
        raise SystemExit(f"ffmpeg failed ({rc}): {' '.join(cmd)}")
    return elapsed, cpu


def x264_version(path: str) -> str:
    """The "x264 - core N rM" string libx264 writes into its SEI (which build encoded this)."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    i = data.find(b"x264 - core ")
    return data[i + 7 : data.find(b" - ", i + 12)].decode(errors="replace") if i >= 0 else ""


def probe(path: str) -> str:
    """Frames, fps and stream durations as ffprobe reports them."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,nb_frames,avg_frame_rate,duration:stream_tags=DURATION",
            "-of",
            "compact=p=0:nk=0",
            path,
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return " | ".join(out.splitlines())


def memory_child(args) -> None:
    """Child mode: encode 15 s (default) on the fly, print JSON with the peak RSS growth."""
    n = int(round(args.memory_seconds * OUTPUT_FPS))
    w, h = args.width, args.height
    buf = np.empty((CHUNK, h, w, 3), np.uint8)
    make_frames(buf, 0)  # touch the buffer so it is part of the baseline
    audio = make_audio(int(round(n * OUTPUT_SAMPLE_RATE / OUTPUT_FPS)))
    with tempfile.TemporaryDirectory() as tmp:
        base = proc_status_kib("VmRSS")
        t0 = time.perf_counter()
        name = "m" + quality_settings(args.format, args.quality).extension
        enc = ResultEncoder(
            os.path.join(tmp, name),
            output_format=args.format,
            quality=args.quality,
            width=w,
            height=h,
            expected_frames=n,
            audio=True,
        )
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            make_frames(buf[:k], start)
            enc.write_frames(buf[:k])
        queued, spilled = enc.queued_video_bytes
        enc.set_audio(audio, OUTPUT_SAMPLE_RATE)  # late: everything was queued until now
        path = enc.close()
        elapsed = time.perf_counter() - t0
        peak = proc_status_kib("VmHWM")  # peak since start, an upper bound of the growth
        print(
            json.dumps(
                {
                    "frames": n,
                    "peak_growth_mib": (peak - base) / 1024,
                    "baseline_mib": base / 1024,
                    "queued_video_mib": queued / 2**20,
                    "spilled_video_mib": spilled / 2**20,
                    "file_mib": os.path.getsize(path) / 2**20,
                    "seconds": elapsed,
                }
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="MP4", choices=["MP4", "WEBM", "MOV"])
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--no-audio", action="store_true", help="video only in both contenders")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (best is reported)")
    ap.add_argument(
        "--memory-seconds", type=float, default=15.0, help="clip length of the RSS measurement (0 skips it)"
    )
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    if not shutil.which("ffmpeg"):
        raise SystemExit("the ffmpeg CLI is missing: apt-get install -y ffmpeg")

    n = int(round(args.seconds * OUTPUT_FPS))
    settings = quality_settings(args.format, args.quality)
    print(
        f"encode benchmark: {args.format} q={args.quality} {args.width}x{args.height} "
        f"{n} frames ({args.seconds:g} s @ {OUTPUT_FPS} fps), "
        f"audio={'off' if args.no_audio else 'on'}"
    )
    print(
        f"settings: {settings.video_codec} {dict(settings.video_options)} "
        f"pix_fmt={settings.pix_fmt}; "
        f"{settings.audio_codec} {settings.audio_bitrate or 'lossless'}"
    )
    from _common import machine  # benchmarks/_common.py (this script's directory is on sys.path)

    print(f"machine: {machine()}")
    ver = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    ver = ver.splitlines()[0]
    import av

    lavc = ".".join(map(str, av.library_versions["libavcodec"]))
    print(f"ffmpeg CLI: {ver}; PyAV {av.__version__} (libavcodec {lavc})")
    t0 = time.perf_counter()
    frames = make_frames(np.empty((n, args.height, args.width, 3), np.uint8), 0)
    audio = None if args.no_audio else make_audio(int(round(n * OUTPUT_SAMPLE_RATE / OUTPUT_FPS)))
    print(f"frames generated in {time.perf_counter() - t0:.1f} s (not timed)")

    with tempfile.TemporaryDirectory() as tmp:
        wav = None
        if audio is not None:
            wav = os.path.join(tmp, "audio.wav")
            write_wav(wav, audio)
            # Give ours the very same (16-bit) samples ffmpeg reads from the WAV.
            audio = np.round(np.clip(audio, -1, 1) * 32767).astype(np.float32) / 32767
        ours_p = os.path.join(tmp, "ours" + settings.extension)
        ff_p = os.path.join(tmp, "ffmpeg" + settings.extension)
        ours_t, ff_t = [], []
        load0 = os.getloadavg()[0]
        for _ in range(args.repeat):  # alternate, so drift hits both alike
            ours_t.append(run_ours(ours_p, frames, audio, args.format, args.quality))
            ff_t.append(run_ffmpeg(ff_p, frames, wav, args.format, args.quality))
        ours, ff = min(t for t, _ in ours_t), min(t for t, _ in ff_t)
        ours_cpu, ff_cpu = min(c for _, c in ours_t), min(c for _, c in ff_t)
        print(f"{'contender':<10} {'wall s':>8} {'fps':>8} {'cpu s':>8} {'size MiB':>9}  probe")
        for name, t, c, p in (("ours", ours, ours_cpu, ours_p), ("ffmpeg", ff, ff_cpu, ff_p)):
            x264 = x264_version(p) if settings.video_codec == "libx264" else ""
            print(
                f"{name:<10} {t:8.2f} {n / t:8.1f} {c:8.2f} {os.path.getsize(p) / 2**20:9.2f}  "
                f"{probe(p)}" + (f"  [{x264}]" if x264 else "")
            )
        print(
            f"load average (1 min) before/after: {load0:.2f} / {os.getloadavg()[0]:.2f} "
            f"on {os.cpu_count()} cores (other processes skew the timings)"
        )
        print(
            f"ratio ffmpeg_time / ours = {ff / ours:.3f} wall (target >= 0.95), "
            f"{ff_cpu / ours_cpu:.3f} cpu; best of {args.repeat}"
            + (
                f"  [wall runs: ours {', '.join(f'{t:.2f}' for t, _ in ours_t)}; "
                f"ffmpeg {', '.join(f'{t:.2f}' for t, _ in ff_t)}]"
                if args.repeat > 1
                else ""
            )
        )
    del frames

    if args.memory_seconds > 0:
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            "--format",
            args.format,
            "--quality",
            str(args.quality),
            "--width",
            str(args.width),
            "--height",
            str(args.height),
            "--memory-seconds",
            str(args.memory_seconds),
        ]
        res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        print(
            f"memory: {res['frames']} frames ({args.memory_seconds:g} s) "
            f"fed in chunks of {CHUNK}, "
            f"audio set after the last frame: peak RSS growth {res['peak_growth_mib']:.0f} MiB "
            f"(baseline {res['baseline_mib']:.0f} MiB incl. the 17-frame buffer; "
            f"video packets waiting for the audio: {res['queued_video_mib']:.1f} MiB in memory, "
            f"{res['spilled_video_mib']:.1f} MiB spilled to disk; "
            f"file {res['file_mib']:.1f} MiB; {res['seconds']:.1f} s)"
        )


if __name__ == "__main__":
    main()
