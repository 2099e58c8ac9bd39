"""Tests of farm.io.encode: the streaming ResultEncoder and the quality mapping.

Every file is checked by decoding it with PyAV; where the ffprobe CLI is installed, the stream
durations it reports are checked too (skipped otherwise: the suite never needs the CLI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from farm.domain.constants import OUTPUT_FPS, OUTPUT_QUALITY_MAX, OUTPUT_QUALITY_MIN
from farm.domain.errors import EncodeError
from farm.io.encode import ResultEncoder, quality_settings, rgb_to_yuv420p_planes

FORMATS = ("MP4", "WEBM", "MOV")
VIDEO_CODEC = {"MP4": "h264", "WEBM": "vp9", "MOV": "prores"}
PIX_FMT = {"MP4": "yuv420p", "WEBM": "yuv420p", "MOV": "yuv422p10le"}
AUDIO_CODEC = {"MP4": "aac", "WEBM": "opus", "MOV": "pcm_s16le"}
AUDIO_FRAME = {"MP4": 1024, "WEBM": 960, "MOV": 1}  # one codec frame, in samples
EXT = {"MP4": ".mp4", "WEBM": ".webm", "MOV": ".mov"}


def frames(n: int, height: int, width: int, start: int = 0) -> np.ndarray:
    """``n`` frames of moving gradients, uint8 RGB [n, h, w, 3]."""
    y = np.arange(height, dtype=np.int32)[:, None]
    x = np.arange(width, dtype=np.int32)[None, :]
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        t = start + i
        out[i, ..., 0] = (x * 255 // width + 4 * t) % 256
        out[i, ..., 1] = (y * 255 // height + 3 * t) % 256
        out[i, ..., 2] = ((x + y) // 3 + 5 * t) % 256
    return out


def tone(seconds: float, rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    sig = [0.5 * np.sin(2 * np.pi * (440 + 110 * c) * t) for c in range(channels)]
    return np.stack(sig).astype(np.float32)


def decode(path: str) -> dict:
    """Streams, frame count and decoded audio samples of a file, read with PyAV."""
    info: dict = {"video": None, "audio": None, "frames": 0, "samples": 0}
    with av.open(path) as c:
        for s in c.streams:
            if s.type == "video":
                info["video"] = {
                    "codec": s.codec_context.name,
                    "width": s.codec_context.width,
                    "height": s.codec_context.height,
                    "pix_fmt": s.codec_context.pix_fmt,
                    "rate": s.average_rate,
                }
            elif s.type == "audio":
                info["audio"] = {
                    "codec": s.codec_context.name,
                    "rate": s.codec_context.sample_rate,
                    "channels": s.codec_context.channels,
                    "duration": (s.duration * s.time_base) if s.duration is not None else None,
                }
        for frame in c.decode(*c.streams):
            if isinstance(frame, av.VideoFrame):
                info["frames"] += 1
            else:
                info["samples"] += frame.samples
    return info


def ffprobe_durations(path: str) -> dict[str, float] | None:
    """Per codec type, the stream duration ffprobe reports (Matroska: the DURATION tag)."""
    if shutil.which("ffprobe") is None:
        return None
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,duration:stream_tags=DURATION",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {}
    for s in json.loads(out)["streams"]:
        d = s.get("duration")
        if d in (None, "N/A"):
            h, m, sec = s["tags"]["DURATION"].split(":")
            d = int(h) * 3600 + int(m) * 60 + float(sec)
        result[s["codec_type"]] = float(d)
    return result


def encoder(path, fmt, *, width=256, height=144, n=32, audio=False, quality=80) -> ResultEncoder:
    return ResultEncoder(
        path, output_format=fmt, quality=quality, width=width, height=height, expected_frames=n, audio=audio
    )


def assert_audio_exact(fmt: str, info: dict, seconds: float) -> None:
    """The audio is as long as the video: within one codec frame when decoded, exact where the
    container records the priming (MP4 edit list; Matroska DiscardPadding; PCM has none)."""
    want = int(round(seconds * 48_000))
    assert abs(info["samples"] - want) < AUDIO_FRAME[fmt]
    if fmt in ("WEBM", "MOV"):
        assert info["samples"] == want  # the demuxer trims Opus padding; PCM is exact
    if info["audio"]["duration"] is not None:
        assert info["audio"]["duration"] == Fraction(want, 48_000)


def assert_files_in(directory, expected: list[str]) -> None:
    assert sorted(os.listdir(directory)) == sorted(expected)


# ----------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("audio", [True, False], ids=["audio", "silent"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_480p(tmp_path, fmt, audio):
    """96 frames of 848x480 (3 s): frame count, fps, size, codecs, audio exactly 3 s."""
    path = str(tmp_path / f"out{EXT[fmt]}")
    with ResultEncoder(
        path,
        output_format=fmt,
        quality=95,
        width=848,
        height=480,
        expected_frames=96,
        audio=audio,
        sample_rate=44_100,
        audio_channels=1,
    ) as enc:
        if audio:  # early, mono, 44.1 kHz and 3.2 s long: resampled, made stereo, trimmed
            enc.set_audio(tone(3.2, 44_100, 1))
        for start in range(0, 96, 17):
            enc.write_frames(frames(min(17, 96 - start), 480, 848, start))
            assert not os.path.exists(path)  # only the temp file exists while encoding
    assert enc.close() == path  # closing twice is harmless
    assert_files_in(tmp_path, [f"out{EXT[fmt]}"])

    info = decode(path)
    assert info["frames"] == 96
    v = info["video"]
    assert (v["codec"], v["pix_fmt"]) == (VIDEO_CODEC[fmt], PIX_FMT[fmt])
    assert (v["width"], v["height"]) == (848, 480)
    assert v["rate"] == OUTPUT_FPS
    if audio:
        a = info["audio"]
        assert (a["codec"], a["rate"], a["channels"]) == (AUDIO_CODEC[fmt], 48_000, 2)
        assert_audio_exact(fmt, info, 3.0)
    else:
        assert info["audio"] is None and info["samples"] == 0

    probed = ffprobe_durations(path)
    if probed is not None:
        assert probed["video"] == pytest.approx(3.0, abs=1e-3)
        if audio:
            # MP4 (edit list) and MOV report exactly 3.000000 s. Matroska's DURATION tag counts
            # the Opus pre-skip (312 samples = 6.5 ms) in, rounded up to the millisecond: 3.008.
            tol = 1e-6 if fmt != "WEBM" else 0.0085
            assert 3.0 <= probed["audio"] <= 3.0 + tol
        else:
            assert "audio" not in probed


def packet_order_back_jump(path: str) -> float:
    """How far (s) timestamps jump back in file order: 0 for a perfectly interleaved file."""
    with av.open(path) as c:
        packets = sorted(
            (p.pos, float(p.dts * p.time_base), p.stream.type) for p in c.demux() if p.size and p.dts is not None
        )
    assert {k for _, _, k in packets} == {"video", "audio"}
    latest, worst = float("-inf"), 0.0
    for _, t, _ in packets:
        worst = max(worst, latest - t)
        latest = max(latest, t)
    return worst


@pytest.mark.parametrize("fmt", FORMATS)
def test_late_short_audio_is_padded_and_interleaved(tmp_path, fmt):
    """Audio that arrives after every frame of a 15 s clip (and is too short) still gives an exact,
    interleaved file. 15 s matters: libavformat's own interleaving gives up after 10 s, so
    without the encoder's queue the audio would land ~5 s away from its video."""
    path = str(tmp_path / f"late{EXT[fmt]}")
    n = 480
    with encoder(path, fmt, width=128, height=72, n=n, audio=True, quality=40) as enc:
        for start in range(0, n, 17):
            enc.write_frames(frames(min(17, n - start), 72, 128, start))
        enc.set_audio(tone(10.0, 48_000, 2), 48_000)  # 10 s for a 15 s video: zero-padded
    info = decode(path)
    assert info["frames"] == n
    assert_audio_exact(fmt, info, 15.0)
    assert packet_order_back_jump(path) < 0.25


@pytest.mark.parametrize("fmt", FORMATS)
def test_audio_exact_for_frame_counts_off_the_millisecond(tmp_path, fmt):
    """33 frames = 1.03125 s: MP4/MOV edit lists in a 48 kHz movie timescale stay exact."""
    path = str(tmp_path / f"odd{EXT[fmt]}")
    with encoder(path, fmt, n=33, audio=True, quality=20) as enc:
        enc.set_audio(tone(1.0, 48_000, 2))
        enc.write_frames(frames(33, 144, 256))
    info = decode(path)
    assert info["frames"] == 33
    assert_audio_exact(fmt, info, 33 / 32)
    probed = ffprobe_durations(path)
    if probed is not None and fmt != "WEBM":
        assert probed["audio"] == pytest.approx(33 / 32, abs=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_queue_spills_to_disk_and_gives_the_same_file(tmp_path, monkeypatch, fmt):
    """Past QUEUE_MEMORY_LIMIT the waiting video packets go to an (invisible) temporary file; the
    result is packet for packet the same as with everything in memory."""
    import farm.io.encode as encode_module

    clip = frames(40, 144, 256)
    audio = tone(1.25, 48_000, 2)
    packets = {}
    for limit in (2**30, 300):
        monkeypatch.setattr(encode_module, "QUEUE_MEMORY_LIMIT", limit)
        path = str(tmp_path / f"spill{limit}{EXT[fmt]}")
        with encoder(path, fmt, n=40, audio=True) as enc:
            enc.write_frames(clip)
            in_memory, spilled = enc.queued_video_bytes
            assert in_memory <= limit
            assert (spilled > 0) == (limit == 300)
            # The spill file has no name: only the output's own temp file is visible.
            assert [f.split(".partial-")[0] for f in os.listdir(tmp_path) if f.startswith(".")] == [
                f".spill{limit}{EXT[fmt]}"
            ]
            enc.set_audio(audio)
            assert enc.queued_video_bytes == (0, 0)
        with av.open(path) as c:
            packets[limit] = [(p.stream.type, p.pts, p.is_keyframe, bytes(p)) for p in c.demux() if p.size]
    assert packets[2**30] == packets[300]
    if fmt == "MP4":  # ... and the whole file too (ProRes/VP9 headers carry no changing ids)
        spilled, kept = tmp_path / "spill300.mp4", tmp_path / "spill1073741824.mp4"
        assert spilled.read_bytes() == kept.read_bytes()
    assert_files_in(tmp_path, [f"spill1073741824{EXT[fmt]}", f"spill300{EXT[fmt]}"])


def test_audio_interleaves_when_set_midway(tmp_path):
    """Audio arriving mid-stream: queued video goes out first, later frames interleave."""
    path = str(tmp_path / "mid.webm")
    with encoder(path, "WEBM", n=64, audio=True) as enc:
        enc.write_frames(frames(30, 144, 256))
        enc.set_audio(tone(2.0, 48_000, 2))
        enc.write_frames(frames(34, 144, 256, 30))
    info = decode(path)
    assert info["frames"] == 64 and info["samples"] == 96_000
    assert packet_order_back_jump(path) < 0.25


def test_audio_from_another_thread(tmp_path):
    """The audio worker's callback may run in its own thread while frames are written."""
    path = str(tmp_path / "threads.mp4")
    enc = encoder(path, "MP4", n=68, audio=True)

    def feed():
        for k in (0, 17, 34, 51):
            enc.write_frames(frames(17, 144, 256, k))

    feeder = threading.Thread(target=feed)
    feeder.start()
    enc.set_audio(tone(2.125, 48_000, 2))
    feeder.join()
    enc.close()
    info = decode(path)
    assert info["frames"] == 68
    assert_audio_exact("MP4", info, 2.125)


def test_torch_tensor_frames(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "t.mp4")
    with encoder(path, "MP4", n=8) as enc:
        enc.write_frames(torch.from_numpy(frames(8, 144, 256)))
    assert decode(path)["frames"] == 8


# ----------------------------------------------------------------------------- yuv420p planes in


def decoded_planes(path: str) -> list[np.ndarray]:
    """Every decoded frame's planes, as numpy arrays (10-bit formats as uint16)."""
    out = []
    with av.open(path) as c:
        for frame in c.decode(video=0):
            dtype = np.uint16 if frame.format.name.endswith("10le") else np.uint8
            planes = []
            for plane in frame.planes:
                rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype().itemsize)
                planes.append(rows[:, : plane.width].copy())
            out.append(planes)
    return out


class _CodecInput:
    """Stands in for an encoder's video stream: keeps the planes of every frame the codec gets."""

    def __init__(self, stream):
        self._stream = stream
        self.frames: list[list[np.ndarray]] = []

    def encode(self, frame=None):
        if frame is not None:
            self.frames.append(
                [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy() for p in frame.planes]
            )
        return self._stream.encode(frame)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@pytest.mark.parametrize("fmt", ["MP4", "WEBM"])
def test_planes_reach_the_codec_as_the_rgb_they_came_from_does(tmp_path, fmt):
    """MP4 and WEBM take yuv420p planes as they are: swscale's planes of RGB frames are, sample for
    sample, what the codec gets from those RGB frames (the workers' conversion on a CPU is that
    one). Compared at the codec's input: libx264 itself does not give the same bytes twice for the
    same small frames."""
    rgb = frames(6, 48, 64)
    inputs = {}
    for name in ("rgb", "planes"):
        with encoder(str(tmp_path / f"{name}{EXT[fmt]}"), fmt, width=64, height=48, n=6) as enc:
            enc._video = inputs[name] = _CodecInput(enc._video)
            if name == "rgb":
                enc.write_frames(rgb)
                continue
            y, u, v = rgb_to_yuv420p_planes(rgb)
            assert y.shape == (6, 48, 64) and u.shape == v.shape == (6, 24, 32)
            enc.write_yuv420p(y[:4], u[:4], v[:4])
            torch = pytest.importorskip("torch")
            enc.write_yuv420p(*(torch.from_numpy(p[4:]) for p in (y, u, v)))  # CPU tensors too
    assert len(inputs["rgb"].frames) == len(inputs["planes"].frames) == 6
    for a, b in zip(inputs["rgb"].frames, inputs["planes"].frames):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert decode(str(tmp_path / f"planes{EXT[fmt]}"))["frames"] == 6
    with av.open(str(tmp_path / f"planes{EXT[fmt]}")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc) == (1, 1, 1, 1)


def test_mov_from_rgb_keeps_the_chroma_rows_that_planes_lose(tmp_path):
    """ProRes 4:2:2 holds every chroma row: from RGB, 1-row colour stripes survive; from yuv420p
    planes (one chroma row per two) they are averaged away. Why MOV results travel as RGB."""
    rgb = np.zeros((2, 48, 64, 3), np.uint8)
    rgb[:, 0::2] = (200, 40, 40)  # red and blue stripes, one row each
    rgb[:, 1::2] = (40, 40, 200)
    with encoder(str(tmp_path / "rgb.mov"), "MOV", width=64, height=48, n=2) as enc:
        enc.write_frames(rgb)
    with encoder(str(tmp_path / "planes.mov"), "MOV", width=64, height=48, n=2) as enc:
        enc.write_yuv420p(*rgb_to_yuv420p_planes(rgb))
    from_rgb, from_planes = decoded_planes(str(tmp_path / "rgb.mov")), decoded_planes(str(tmp_path / "planes.mov"))
    assert len(from_planes) == 2
    with av.open(str(tmp_path / "planes.mov")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv422p10le"
    # V (Cr) of a red row vs a blue row, in the middle of the picture, 10-bit.
    red, blue = 20, 21
    stripes = lambda planes: int(planes[0][2][red, 16]) - int(planes[0][2][blue, 16])  # noqa: E731 - one-line helper
    assert stripes(from_rgb) > 300, "from RGB the stripes keep their colour"
    assert abs(stripes(from_planes)) < 100, "from 4:2:0 planes they are averaged away"
    # Luma is the same either way (within ProRes' quantisation).
    assert np.abs(from_rgb[0][0].astype(int) - from_planes[0][0].astype(int)).mean() < 4


def test_wrong_planes_raise_value_error_naming_the_shapes(tmp_path):
    path = str(tmp_path / "p.mp4")
    y, u, v = np.zeros((2, 144, 256), np.uint8), np.zeros((2, 72, 128), np.uint8), np.zeros((2, 72, 128), np.uint8)
    with encoder(path, "MP4", n=2) as enc:
        with pytest.raises(ValueError, match=r"u and v \[n, 72, 128\], got shapes \[\[2, 144, 256\], \[2, 144, 256\]"):
            enc.write_yuv420p(y, y, v)
        with pytest.raises(ValueError, match="got float32"):
            enc.write_yuv420p(y.astype(np.float32), u, v)
        with pytest.raises(ValueError, match="expected uint8 RGB frames"):
            rgb_to_yuv420p_planes(np.zeros((1, 9, 16, 3), np.uint8))  # odd height
        enc.write_yuv420p(y, u, v)
    assert decode(path)["frames"] == 2
    with pytest.raises(EncodeError, match="got 3 frames, expected exactly 2"):
        with encoder(str(tmp_path / "q.mp4"), "MP4", n=2) as enc:
            enc.write_yuv420p(*(np.concatenate([p, p[:1]]) for p in (y, u, v)))
    assert_files_in(tmp_path, ["p.mp4"])


# ----------------------------------------------------------------------------- failure paths


@pytest.mark.parametrize("fmt", FORMATS)
def test_exception_in_with_block_leaves_nothing(tmp_path, fmt):
    path = tmp_path / f"x{EXT[fmt]}"
    with pytest.raises(RuntimeError, match="render failed"):
        with encoder(str(path), fmt, n=32, audio=True) as enc:
            enc.write_frames(frames(10, 144, 256))
            assert len(os.listdir(tmp_path)) == 1  # the hidden temp file, next to path
            assert os.listdir(tmp_path)[0].startswith(f".x{EXT[fmt]}.partial-")
            raise RuntimeError("render failed")
    assert_files_in(tmp_path, [])


def test_abort_leaves_nothing(tmp_path):
    enc = encoder(str(tmp_path / "a.mp4"), "MP4", n=32, audio=True)
    enc.set_audio(tone(1.0, 48_000, 2))
    enc.write_frames(frames(20, 144, 256))
    enc.abort()
    enc.abort()  # idempotent
    assert_files_in(tmp_path, [])
    with pytest.raises(EncodeError):
        enc.write_frames(frames(1, 144, 256))
    with pytest.raises(EncodeError):
        enc.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_few_frames_is_an_error_and_leaves_nothing(tmp_path, fmt):
    path = tmp_path / f"short{EXT[fmt]}"
    enc = encoder(str(path), fmt, n=20)
    enc.write_frames(frames(19, 144, 256))
    with pytest.raises(EncodeError, match=r"19.*20|20.*19") as err:
        enc.close()
    assert fmt in str(err.value)
    assert_files_in(tmp_path, [])


def test_too_many_frames_is_an_error_and_leaves_nothing(tmp_path):
    enc = encoder(str(tmp_path / "long.mp4"), "MP4", n=10)
    enc.write_frames(frames(8, 144, 256))
    with pytest.raises(EncodeError, match=r"12.*10"):
        enc.write_frames(frames(4, 144, 256))
    assert_files_in(tmp_path, [])


def test_missing_audio_is_an_error(tmp_path):
    enc = encoder(str(tmp_path / "mute.mp4"), "MP4", n=4, audio=True)
    enc.write_frames(frames(4, 144, 256))
    with pytest.raises(EncodeError, match="set_audio"):
        enc.close()
    assert_files_in(tmp_path, [])


def test_wrong_frames_raise_value_error_naming_the_shape(tmp_path):
    path = str(tmp_path / "v.mp4")
    with encoder(path, "MP4", n=2) as enc:
        with pytest.raises(ValueError, match=r"\[n, 144, 256, 3\]"):
            enc.write_frames(frames(1, 144, 250))
        with pytest.raises(ValueError, match=r"\[n, 144, 256, 3\]"):
            enc.write_frames(frames(1, 144, 256)[0])
        with pytest.raises(ValueError, match="uint8"):
            enc.write_frames(frames(1, 144, 256).astype(np.float32))
        enc.write_frames(frames(2, 144, 256))  # the encoder is still usable
    assert decode(path)["frames"] == 2


def test_bad_audio_raises_value_error(tmp_path):
    with encoder(str(tmp_path / "b.mp4"), "MP4", n=1, audio=True) as enc:
        with pytest.raises(ValueError, match=r"\[2, samples\]"):
            enc.set_audio(tone(0.1, 48_000, 2).T)  # [samples, channels]: transposed
        with pytest.raises(ValueError, match="float32"):
            enc.set_audio((tone(0.1, 48_000, 2) * 32767).astype(np.int16))
        enc.set_audio(tone(0.1, 48_000, 2))  # still accepted after the refusals
        enc.write_frames(frames(1, 144, 256))
    assert_audio_exact("MP4", decode(str(tmp_path / "b.mp4")), 1 / 32)


def test_surround_audio_is_downmixed(tmp_path):
    path = str(tmp_path / "s.mov")
    with ResultEncoder(
        path, output_format="MOV", quality=50, width=256, height=144, expected_frames=32, audio=True, audio_channels=6
    ) as enc:
        enc.set_audio(tone(1.0, 48_000, 6))
        enc.write_frames(frames(32, 144, 256))
    info = decode(path)
    assert info["audio"]["channels"] == 2 and info["samples"] == 48_000


def test_audio_on_a_silent_encoder_is_refused(tmp_path):
    with encoder(str(tmp_path / "s.mp4"), "MP4", n=1) as enc:
        with pytest.raises(ValueError, match="audio=False"):
            enc.set_audio(tone(0.1, 48_000, 2))
        enc.write_frames(frames(1, 144, 256))


def test_pyav_errors_become_encode_errors(tmp_path):
    with pytest.raises(EncodeError, match=r"MP4 \(libx264"):
        encoder(str(tmp_path / "missing-dir" / "x.mp4"), "MP4")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        encoder(str(tmp_path / "odd.mp4"), "MP4", width=255)
    with pytest.raises(ValueError, match="output_format"):
        quality_settings("AVI", 50)
    for q in (19, 100):
        with pytest.raises(ValueError, match="quality"):
            quality_settings("MP4", q)
    assert_files_in(tmp_path, [])


# ----------------------------------------------------------------------------- quality


def test_quality_mapping_is_monotonic():
    qs = range(OUTPUT_QUALITY_MIN, OUTPUT_QUALITY_MAX + 1)

    def opt(s, key):
        return dict(s.video_options)[key]

    mp4 = [float(opt(quality_settings("MP4", q), "crf")) for q in qs]
    webm = [int(opt(quality_settings("WEBM", q), "crf")) for q in qs]
    ranks = {"proxy": 0, "lt": 1, "standard": 2, "hq": 3}
    mov = [(ranks[opt(s, "profile")], -int(opt(s, "global_quality"))) for s in (quality_settings("MOV", q) for q in qs)]
    assert all(a > b for a, b in zip(mp4, mp4[1:]))  # strictly: every step gives more bits
    assert all(a >= b for a, b in zip(webm, webm[1:]))
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(mov, mov[1:]))
    assert 14 <= float(opt(quality_settings("MP4", 95), "crf")) <= 18
    s = quality_settings("mp4", 95)
    assert (s.video_codec, s.pix_fmt, s.audio_codec) == ("libx264", "yuv420p", "aac")
    assert ("movflags", "+faststart") in s.container_options
    w = quality_settings("WEBM", 95)
    assert dict(w.video_options)["b"] == "0" and dict(w.video_options)["row-mt"] == "1"
    m = quality_settings("MOV", 95)
    assert (m.video_codec, m.pix_fmt, m.audio_codec) == ("prores_ks", "yuv422p10le", "pcm_s16le")
    for fmt in FORMATS:  # audio bitrate never falls as quality rises
        rates = [quality_settings(fmt, q).audio_bitrate or 0 for q in qs]
        assert rates == sorted(rates)


@pytest.mark.parametrize("fmt", FORMATS)
def test_higher_quality_gives_bigger_files(tmp_path, fmt):
    clip = frames(16, 144, 256)
    sizes = {}
    for q in (30, 95):
        path = str(tmp_path / f"q{q}{EXT[fmt]}")
        with encoder(path, fmt, n=16, quality=q) as enc:
            enc.write_frames(clip)
        sizes[q] = os.path.getsize(path)
    assert sizes[95] > sizes[30] * 1.5, sizes
