"""Streaming encoder for results: frames go into the container as soon as they are final.

Formats (see DESIGN.md, "Formats"):

* **MP4** -- H.264 (``libx264``, ``yuv420p``, constant-quality CRF, preset ``fast``, frame
  threads) + AAC-LC 48 kHz stereo, ``movflags=+faststart`` so playback can start before the
  whole file is downloaded.
* **WEBM** -- VP9 (``libvpx-vp9``, ``yuv420p``, constant-quality CRF with ``b:v 0``,
  ``row-mt``, ``deadline=good`` / ``cpu-used`` tuned to be usable on a CPU) + Opus 48 kHz stereo.
* **MOV** -- QuickTime for editing: Apple ProRes 422 (``prores_ks``, ``yuv422p10le``) + PCM
  signed 16-bit 48 kHz stereo. ProRes is an intra-frame codec: every frame decodes on its own,
  so editors scrub and cut anywhere without re-encoding long GOPs, and 10-bit 4:2:2 survives
  grading better than 8-bit 4:2:0 H.264. Uncompressed PCM is what NLEs expect next to it. The
  price is size (10-20x an H.264 file of the same quality); MP4 is for delivery, MOV for editing.

``outputQuality`` (20..99) maps monotonically onto each codec's scale (:func:`quality_settings`):

* H.264 CRF = 15 + (99 - q) * 23 / 79, one decimal: q=99 -> 15.0, q=95 -> 16.2, q=20 -> 38.0.
* VP9 CRF = round(18 + (99 - q) * 27 / 79): q=99 -> 18, q=95 -> 19, q=20 -> 45.
* ProRes: the profile rises with quality (q < 40 Proxy, < 60 LT, < 80 Standard, else HQ, each a
  finer quantisation matrix) and the fixed quantiser ``qscale`` falls with it
  (round(2 + (99 - q) * 14 / 79): q=99 -> 2, q=95 -> 3, q=20 -> 16). Both only move towards
  "more bits" as q grows, so the mapping stays monotonic across profile boundaries.
* Audio bitrates step up with quality too (AAC 128/160/192 kbit/s, Opus 96/128/160 kbit/s for
  q < 50 / < 80 / >= 80); PCM is lossless.

RGB frames are converted to Y'CbCr with the BT.709 matrix (limited range) and tagged BT.709
(primaries, transfer, matrix), which is what players assume for HD video. Frames that are already
yuv420p planes in that colour space (what the video workers send, :meth:`ResultEncoder.write_yuv420p`)
go to the MP4 and WEBM codecs as they are, with no conversion; MOV's yuv422p10le gets them through
one swscale pass (chroma rows interpolated, samples scaled to 10 bits), which cannot bring back the
chroma rows 4:2:0 dropped: results meant for MOV travel as RGB (``wire_format_for``) and keep the
RGB path. :func:`rgb_to_yuv420p_planes` is the RGB path's conversion on its own (a CPU worker
uses it to make the planes).

Streaming and interleaving: :class:`ResultEncoder` encodes every frame as it arrives, so raw
frames are never accumulated. The audio is rendered by another worker and may arrive late; until
it does, the (compressed, small) video packets wait in a queue. Once the audio is set (its exact
length is known up front from ``expected_frames``), all of it is encoded at once and both streams
are muxed interleaved by timestamp; later video packets are muxed as they come. Audio is trimmed
or zero-padded to exactly ``expected_frames / fps`` seconds, and the codecs' priming (AAC
1024 samples, Opus 312 samples) is recorded in the container (MP4 edit list, Matroska
CodecDelay/DiscardPadding), so a player's audio is exactly as long as the video.

The file is written to a hidden temporary file next to ``path`` and renamed onto ``path`` only
when :meth:`ResultEncoder.close` succeeds, so a failed render never leaves a half-written file.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from farm.domain.constants import (
    FORMATS,
    OUTPUT_FPS,
    OUTPUT_QUALITY_MAX,
    OUTPUT_QUALITY_MIN,
    OUTPUT_SAMPLE_RATE,
    output_format,
)
from farm.domain.errors import EncodeError

__all__ = ["EncoderSettings", "ResultEncoder", "quality_settings", "rgb_to_yuv420p_planes", "video_threads"]

#: libx264 preset: "fast" is ~2x "medium"'s speed at a few percent more bits for the same CRF.
X264_PRESET = "fast"
#: libvpx-vp9 speed: deadline "good" with cpu-used 5, the fastest "good" speed (higher values
#: behave like 5 in this libvpx; cpu-used 3 is 1.6x slower for 1.5 % fewer bits). "realtime"
#: would be 3x faster but needs ~40 % more bits for the same CRF.
VP9_DEADLINE = "good"
VP9_CPU_USED = 5
#: Most video encoder threads. The codecs' own "auto" (libx264: 1.5 x cores) is used while it
#: stays below this; beyond, memory grows with every frame thread (libx264 1080p: ~340 MiB at
#: 3 threads, ~410 MiB at 8, ~660 MiB at 24) for little speed, and a container may report the
#: host's cores, not its own share.
MAX_VIDEO_THREADS = 12
#: swscale threads for the RGB -> Y'CbCr conversion (0: one per core).
SWS_THREADS = 0
#: swscale interpolation for the RGB -> Y'CbCr conversion (only chroma is resampled).
SWS_INTERPOLATION = "BICUBIC"

#: Video packets waiting for late audio are kept in memory up to this many bytes, then spilled
#: to an anonymous temporary file next to the output (15 s of 1080p: H.264 q=95 ~20 MiB stays in
#: memory; ProRes HQ ~320 MiB would not).
QUEUE_MEMORY_LIMIT = 64 * 2**20

#: MP4/MOV movie timescale: the edit lists (which hide the AAC priming and carry each track's
#: length) count in it. FFmpeg's default, 1000, rounds them to the millisecond (a 1-frame clip's
#: audio became 1488 samples instead of 1500); 48000 makes audio and 32 fps frames exact.
_MOVIE_TIMESCALE = str(OUTPUT_SAMPLE_RATE)

#: FFmpeg's default channel layout per channel count (what the resampler downmixes from).
_DEFAULT_LAYOUTS = {2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class EncoderSettings:
    """Codec settings for one output format at one quality.

    ``video_options`` / ``audio_options`` / ``container_options`` are ``(name, value)`` pairs of
    FFmpeg AVOptions, passed to the codec or muxer as they are (and, by :meth:`ffmpeg_args`, to
    the ``ffmpeg`` command line, so a benchmark can encode with exactly the same settings).
    """

    output_format: str
    quality: int
    container: str
    extension: str
    video_codec: str
    pix_fmt: str
    video_options: tuple[tuple[str, str], ...]
    audio_codec: str
    audio_sample_format: str
    audio_bitrate: int | None
    audio_options: tuple[tuple[str, str], ...] = ()
    container_options: tuple[tuple[str, str], ...] = ()
    #: "FRAME": frame threads, as the ffmpeg CLI uses. With PyAV's default "SLICE" libx264 cuts
    #: every frame into one slice per thread instead: the same speed on 2 cores, but it scales
    #: worse and costs more bits as threads grow.
    thread_type: str = "FRAME"

    def ffmpeg_args(self, *, audio: bool, threads: int = 0) -> list[str]:
        """Output arguments for the ``ffmpeg`` CLI that reproduce these settings.

        Includes the same BT.709 conversion (``-vf scale=...``) and colour tags as
        :class:`ResultEncoder`. ``threads=0`` means automatic, like the encoder's default.
        """
        scale = f"scale=out_color_matrix=bt709:out_range=tv:flags={SWS_INTERPOLATION.lower()}"
        args = ["-vf", f"{scale},format={self.pix_fmt}", "-c:v", self.video_codec]
        for key, value in self.video_options:
            args += [f"-{key}:v", value]
        args += ["-threads:v", str(threads)]
        args += ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
        if audio:
            args += [
                "-c:a",
                self.audio_codec,
                "-ar",
                str(OUTPUT_SAMPLE_RATE),
                "-ac",
                "2",
                "-sample_fmt",
                self.audio_sample_format,
            ]
            if self.audio_bitrate:
                args += ["-b:a", str(self.audio_bitrate)]
            for key, value in self.audio_options:
                args += [f"-{key}:a", value]
        else:
            args += ["-an"]
        for key, value in self.container_options:
            args += [f"-{key}", value]
        args += ["-f", self.container]
        return args


def _lerp_from_quality(quality: int, at_99: float, at_20: float) -> float:
    """Linear map of quality 99..20 onto at_99..at_20."""
    span = OUTPUT_QUALITY_MAX - OUTPUT_QUALITY_MIN
    return at_99 + (OUTPUT_QUALITY_MAX - quality) * (at_20 - at_99) / span


def _check_format(name: str) -> str:
    return output_format(name).name


def quality_settings(output_format: str, quality: int) -> EncoderSettings:
    """Codec settings of ``output_format`` (MP4, WEBM, MOV) at ``outputQuality`` ``quality``.

    The mapping is monotonic: a higher ``quality`` never gives fewer bits (see the module
    docstring for the formulas). Raises ``ValueError`` for an unknown format or a quality
    outside 20..99.
    """
    fmt = _check_format(output_format)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise ValueError(f"quality must be an integer, got {quality!r}")
    quality = int(quality)
    if not OUTPUT_QUALITY_MIN <= quality <= OUTPUT_QUALITY_MAX:
        raise ValueError(f"quality must be within {OUTPUT_QUALITY_MIN}..{OUTPUT_QUALITY_MAX}, got {quality}")
    band = 0 if quality < 50 else 1 if quality < 80 else 2
    if fmt == "MP4":
        crf = round(_lerp_from_quality(quality, 15.0, 38.0), 1)
        return EncoderSettings(
            output_format=fmt,
            quality=quality,
            container=FORMATS["MP4"].container,
            extension=".mp4",
            video_codec="libx264",
            pix_fmt="yuv420p",
            video_options=(("preset", X264_PRESET), ("crf", f"{crf:g}")),
            audio_codec="aac",
            audio_sample_format="fltp",
            audio_bitrate=(128_000, 160_000, 192_000)[band],
            container_options=(("movflags", "+faststart"), ("movie_timescale", _MOVIE_TIMESCALE)),
        )
    if fmt == "WEBM":
        crf = int(round(_lerp_from_quality(quality, 18.0, 45.0)))
        return EncoderSettings(
            output_format=fmt,
            quality=quality,
            container=FORMATS["WEBM"].container,
            extension=".webm",
            video_codec="libvpx-vp9",
            pix_fmt="yuv420p",
            video_options=(
                ("crf", str(crf)),
                ("b", "0"),
                ("deadline", VP9_DEADLINE),
                ("cpu-used", str(VP9_CPU_USED)),
                ("row-mt", "1"),
                ("tile-columns", "2"),
                ("frame-parallel", "0"),
                ("auto-alt-ref", "1"),
                ("lag-in-frames", "16"),
            ),
            audio_codec="libopus",
            audio_sample_format="flt",
            audio_bitrate=(96_000, 128_000, 160_000)[band],
            thread_type="FRAME",
        )
    # MOV: ProRes 422 + PCM.
    profile = ("proxy", "lt", "standard", "hq")[min(3, max(0, (quality - 20) // 20))]
    qscale = int(round(_lerp_from_quality(quality, 2.0, 16.0)))
    return EncoderSettings(
        output_format=fmt,
        quality=quality,
        container=FORMATS["MOV"].container,
        extension=".mov",
        video_codec="prores_ks",
        pix_fmt="yuv422p10le",
        video_options=(
            ("profile", profile),
            ("flags", "+qscale"),
            ("global_quality", str(qscale * 118)),  # FF_QP2LAMBDA * qscale
            ("vendor", "apl0"),
        ),
        audio_codec="pcm_s16le",
        audio_sample_format="s16",
        audio_bitrate=None,
        container_options=(("movie_timescale", _MOVIE_TIMESCALE),),
        thread_type="FRAME",
    )


def video_threads() -> int:
    """Threads for the video encoder: 0 (the codec's automatic count) on small machines, else
    :data:`MAX_VIDEO_THREADS`. Counts only the cores this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return 0 if cores * 3 // 2 <= MAX_VIDEO_THREADS else MAX_VIDEO_THREADS


def _bt709(frame: av.VideoFrame) -> av.VideoFrame:
    """Tag a Y'CbCr frame BT.709 (matrix, primaries, transfer), limited range; returns it."""
    frame.colorspace = 1  # AVCOL_SPC_BT709
    frame.color_range = 1  # AVCOL_RANGE_MPEG (limited)
    frame.color_primaries = 1  # ProRes copies the tags from the frame
    frame.color_trc = 1
    return frame


def _rgb_to_codec(rgb: av.VideoFrame, pix_fmt: str, threads: int) -> av.VideoFrame:
    """One swscale pass from an rgb24 frame to ``pix_fmt``, BT.709 limited range (the RGB path)."""
    from av.video.reformatter import Colorspace, Interpolation

    return _bt709(
        rgb.reformat(
            format=pix_fmt,
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=1,
            interpolation=Interpolation[SWS_INTERPOLATION],
            threads=threads,
        )
    )


def rgb_to_yuv420p_planes(frames: np.ndarray, *, threads: int = SWS_THREADS) -> tuple[np.ndarray, ...]:
    """uint8 RGB ``[n, H, W, 3]`` (even ``H`` and ``W``) -> yuv420p planes ``(y [n, H, W], u, v [n,
    H/2, W/2])``, converted by swscale exactly as :meth:`ResultEncoder.write_frames` converts for
    MP4 and WEBM: the CPU twin of ``kernels.yuv.rgb_to_yuv420p`` (which equals it within 1 level).
    ``threads``: swscale threads (0: one per core)."""
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[1] % 2 or array.shape[2] % 2:
        raise ValueError(f"expected uint8 RGB frames [n, H, W, 3] of even H and W, got {array.dtype} {array.shape}")
    n, height, width, _ = array.shape
    y = np.empty((n, height, width), np.uint8)
    u = np.empty((n, height // 2, width // 2), np.uint8)
    v = np.empty_like(u)
    for i in range(n):
        frame = array[i] if array[i].strides[1:] == (3, 1) else np.ascontiguousarray(array[i])
        yuv = _rgb_to_codec(av.VideoFrame.from_numpy_buffer(frame, format="rgb24"), "yuv420p", threads)
        for out, plane in zip((y, u, v), yuv.planes):
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            out[i] = rows[:, : plane.width]
    return y, u, v


class _PacketQueue:
    """FIFO of encoded video packets waiting for the audio.

    Packets stay in memory up to ``memory_limit`` bytes; later ones go to an anonymous temporary
    file in ``directory`` (unlinked at creation, so nothing is left behind even after a crash)
    and come back as new packets with the same data, timestamps and keyframe flag. Packets that
    would not survive that unchanged (see :func:`_spillable`) always stay in memory.
    """

    def __init__(self, directory: str, memory_limit: int):
        self._directory = directory
        self._limit = memory_limit
        self._items: deque[Any] = deque()
        self._file: Any = None
        self.bytes_in_memory = 0
        self.bytes_spilled = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, packet: av.Packet) -> None:
        if self.bytes_in_memory + packet.size <= self._limit or not _spillable(packet):
            self._items.append(packet)
            self.bytes_in_memory += packet.size
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._directory, prefix=".encode-queue-")
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(bytes(packet))
        self.bytes_spilled += packet.size
        self._items.append(
            (
                offset,
                packet.size,
                packet.pts,
                packet.dts,
                packet.duration,
                packet.time_base,
                packet.is_keyframe,
                packet.stream,
            )
        )

    def pop(self) -> av.Packet:
        item = self._items.popleft()
        if isinstance(item, av.Packet):
            self.bytes_in_memory -= item.size
            return item
        offset, size, pts, dts, duration, time_base, key, stream = item
        self.bytes_spilled -= size
        self._file.seek(offset)
        packet = av.Packet(self._file.read(size))
        packet.stream = stream
        packet.time_base = time_base
        packet.pts, packet.dts, packet.duration = pts, dts, duration
        packet.is_keyframe = key
        return packet

    def close(self) -> None:
        self._items.clear()
        self.bytes_in_memory = self.bytes_spilled = 0
        if self._file is not None:
            self._file.close()
            self._file = None


def _spillable(packet: av.Packet) -> bool:
    """Whether a packet survives the round trip through the spill file unchanged: no flag but
    "keyframe" (PyAV cannot set "disposable", which MP4's sdtp box records; such packets are
    small non-reference B-frames) and no side data a muxer reads."""
    if packet.is_disposable or packet.is_discard:
        return False
    return all(sd.data_type == "quality_stats" for sd in packet.iter_sidedata())


def _packet_time(packet: av.Packet) -> Fraction:
    """Decode timestamp of a packet in seconds (pts when dts is missing)."""
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None:
        return Fraction(0)
    return ts * packet.time_base


class ResultEncoder:
    """Streams one result into an MP4, WEBM or MOV file.

    ``ResultEncoder(path, *, output_format, quality, width, height, expected_frames, audio,
    fps=32, sample_rate=48000, audio_channels=2, threads=None)``

    * :meth:`write_frames` encodes uint8 RGB frames ``[n, height, width, 3]`` immediately;
      :meth:`write_yuv420p` encodes frames given as yuv420p planes.
    * :meth:`set_audio` hands over the whole waveform ``[channels, samples]`` whenever it is ready,
      before or after the frames; until then video packets wait (compressed) in a queue.
    * :meth:`close` flushes, checks that exactly ``expected_frames`` frames arrived (and the audio
      when ``audio=True``), and atomically renames the temporary file onto ``path``.
    * :meth:`abort` (or an exception leaving the ``with`` block) deletes the temporary file.

    ``sample_rate`` (default for :meth:`set_audio`) and ``audio_channels`` (checked there)
    describe the audio the caller will pass; the file always carries 48 kHz stereo. ``threads``
    overrides the video encoder's thread count (default :func:`video_threads`). Errors from the
    codec or muxer raise :class:`~farm.domain.errors.EncodeError` and abort the file. Video packets
    waiting for late audio stay in memory up to :data:`QUEUE_MEMORY_LIMIT`, then spill to disk.
    ``write_frames`` and ``set_audio`` may be called from different threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        output_format: str,
        quality: int,
        width: int,
        height: int,
        expected_frames: int,
        audio: bool,
        fps: int | Fraction = OUTPUT_FPS,
        sample_rate: int = OUTPUT_SAMPLE_RATE,
        audio_channels: int = 2,
        threads: int | None = None,
    ):
        self.settings = quality_settings(output_format, quality)
        self.path = os.fspath(path)
        self.width = int(width)
        self.height = int(height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if self.settings.pix_fmt != "yuv444p" and (self.width % 2 or self.height % 2):
            raise ValueError(f"width and height must be even for {self.settings.pix_fmt}, got {width}x{height}")
        if int(expected_frames) <= 0:
            raise ValueError(f"expected_frames must be positive, got {expected_frames}")
        self.expected_frames = int(expected_frames)
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.audio = bool(audio)
        self.sample_rate = int(sample_rate)
        self.audio_channels = int(audio_channels)
        #: Video encoder threads (0: the codec's automatic count); default :func:`video_threads`.
        self.threads = video_threads() if threads is None else int(threads)
        if audio and not 1 <= self.audio_channels <= 8:
            raise ValueError(f"audio_channels must be within 1..8, got {audio_channels}")
        #: Samples (at 48 kHz) the audio stream carries: exactly the video's duration.
        self.audio_samples = int(round(self.expected_frames * OUTPUT_SAMPLE_RATE / self.fps))

        self.frames_written = 0
        self._audio_set = False
        self._audio_claimed = False  # set_audio was entered (its encoding runs outside the lock)
        self._lock = threading.RLock()  # write_frames, set_audio, close, abort: any threads
        self._audio_done = threading.Condition(self._lock)  # close waits for a running set_audio
        self._audio_packets: deque[av.Packet] = deque()
        self._closed = False
        self._final_path: str | None = None

        directory, name = os.path.split(os.path.abspath(self.path))
        self._tmp_path = os.path.join(directory, f".{name}.partial-{secrets.token_hex(6)}")
        self._pending_video = _PacketQueue(directory, QUEUE_MEMORY_LIMIT)
        self._container: Any = None
        self._tmp_created = False
        try:
            # Reserve the name now (exclusive create): a missing directory or a read-only one
            # fails here rather than at the first packet. The muxer opens it when the header
            # is written.
            with open(self._tmp_path, "xb"):
                self._tmp_created = True
            self._open()
        except (av.FFmpegError, OSError) as exc:
            self._cleanup()
            raise self._error(f"cannot open the output: {exc}") from exc
        except BaseException:
            self._cleanup()
            raise

    # ------------------------------------------------------------------ setup

    def _open(self) -> None:
        s = self.settings
        self._container = av.open(
            self._tmp_path,
            mode="w",
            format=s.container,
            container_options=dict(s.container_options),
        )
        vs = self._container.add_stream(s.video_codec, rate=self.fps, options=dict(s.video_options))
        vs.width = self.width
        vs.height = self.height
        vs.pix_fmt = s.pix_fmt
        vs.time_base = 1 / self.fps
        cc = vs.codec_context
        cc.time_base = 1 / self.fps
        cc.framerate = self.fps
        cc.thread_count = self.threads
        cc.thread_type = s.thread_type
        cc.colorspace = 1  # AVCOL_SPC_BT709
        cc.color_primaries = 1  # AVCOL_PRI_BT709
        cc.color_trc = 1  # AVCOL_TRC_BT709
        cc.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        self._video = vs
        self._audio_stream = None
        if self.audio:
            stream = self._container.add_stream(s.audio_codec, rate=OUTPUT_SAMPLE_RATE)
            stream.layout = "stereo"
            stream.format = s.audio_sample_format
            stream.time_base = Fraction(1, OUTPUT_SAMPLE_RATE)
            stream.codec_context.time_base = Fraction(1, OUTPUT_SAMPLE_RATE)
            if s.audio_bitrate:
                stream.bit_rate = s.audio_bitrate
            for key, value in s.audio_options:
                stream.codec_context.options[key] = value
            self._audio_stream = stream
            stream.codec_context.open(strict=False)
        cc.open(strict=False)  # open now so bad settings fail here, not at the first frame

    def _error(self, what: str) -> EncodeError:
        s = self.settings
        codecs = s.video_codec + (f" + {s.audio_codec}" if self.audio else "")
        return EncodeError(f"{s.output_format} ({codecs}): {what}")

    @property
    def queued_video_bytes(self) -> tuple[int, int]:
        """Video packets waiting for the audio: (bytes in memory, bytes spilled to disk)."""
        q = self._pending_video
        return q.bytes_in_memory, q.bytes_spilled

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> ResultEncoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    # ------------------------------------------------------------------ video

    def write_frames(self, frames: Any) -> None:
        """Encode uint8 RGB frames ``[n, height, width, 3]`` (numpy array or CPU torch tensor).

        Frames are converted and encoded right away; nothing raw is kept. Raises ``ValueError``
        for a wrong shape or dtype, :class:`EncodeError` (and aborts) when the frames would
        exceed ``expected_frames`` or the codec fails.
        """
        array = self._as_array(frames)
        pix_fmt = self.settings.pix_fmt

        def convert(i: int) -> av.VideoFrame:
            frame = array[i]
            if frame.strides[1:] != (3, 1):
                frame = np.ascontiguousarray(frame)
            # Zero-copy wrap, then one swscale pass (threaded) straight to the codec's pixel
            # format with the BT.709 matrix; the codec gets it without reformatting.
            return _rgb_to_codec(av.VideoFrame.from_numpy_buffer(frame, format="rgb24"), pix_fmt, SWS_THREADS)

        self._encode(array.shape[0], convert)

    def write_yuv420p(self, y: Any, u: Any, v: Any) -> None:
        """Encode yuv420p frames given as planes: ``y`` uint8 ``[n, height, width]``, ``u`` and ``v``
        uint8 ``[n, height / 2, width / 2]`` (numpy arrays or CPU torch tensors), BT.709 limited
        range with swscale's chroma (what :func:`rgb_to_yuv420p_planes` and
        ``kernels.yuv.rgb_to_yuv420p`` produce).

        MP4 and WEBM take the planes as they are (zero-copy, no conversion). MOV converts them to
        yuv422p10le with one swscale pass: its chroma keeps 4:2:0's vertical resolution (see the
        module docstring). Errors as :meth:`write_frames`.
        """
        planes = self._as_planes(y, u, v)
        pix_fmt = self.settings.pix_fmt

        def convert(i: int) -> av.VideoFrame:
            frame = av.VideoFrame.from_dlpack(
                tuple(np.ascontiguousarray(p[i]) for p in planes),
                format="yuv420p",
                width=self.width,
                height=self.height,
            )
            if pix_fmt == "yuv420p":
                return _bt709(frame)
            from av.video.reformatter import Colorspace, Interpolation

            return _bt709(
                frame.reformat(
                    format=pix_fmt,
                    src_colorspace=Colorspace.ITU709,
                    dst_colorspace=Colorspace.ITU709,
                    src_color_range=1,
                    dst_color_range=1,
                    interpolation=Interpolation[SWS_INTERPOLATION],
                    threads=SWS_THREADS,
                )
            )

        self._encode(planes[0].shape[0], convert)

    def _encode(self, n: int, convert: Any) -> None:
        """Encode ``n`` frames, frame ``i`` made by ``convert(i)`` in the codec's pixel format."""
        with self._lock:
            self._check_open()
            if self.frames_written + n > self.expected_frames:
                total = self.frames_written + n
                self.abort()
                raise self._error(f"got {total} frames, expected exactly {self.expected_frames} (expected_frames)")
        for i in range(n):
            with self._lock:  # per frame, so a concurrent set_audio gets in between frames
                self._check_open()
                try:
                    frame = convert(i)
                    frame.pts = self.frames_written
                    frame.time_base = self._video.codec_context.time_base
                    self._mux_video(self._video.encode(frame))
                except av.FFmpegError as exc:
                    self.abort()
                    raise self._error(f"encoding video frame {self.frames_written} failed: {exc}") from exc
                self.frames_written += 1

    def _as_planes(self, y: Any, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = self.height, self.width
        expected = f"uint8 yuv420p planes y [n, {h}, {w}], u and v [n, {h // 2}, {w // 2}]"
        planes = []
        for plane in (y, u, v):
            if type(plane).__module__.startswith("torch"):
                if getattr(plane, "device", None) is not None and plane.device.type != "cpu":
                    raise ValueError(f"expected {expected} on the CPU, got a tensor on {plane.device}")
                plane = plane.detach().numpy() if str(plane.dtype) == "torch.uint8" else plane
            if not isinstance(plane, np.ndarray) or plane.dtype != np.uint8:
                raise ValueError(f"expected {expected}, got {getattr(plane, 'dtype', type(plane).__name__)}")
            planes.append(plane)
        shapes = [list(p.shape) for p in planes]
        n = shapes[0][0] if planes[0].ndim == 3 else -1
        if shapes != [[n, h, w], [n, h // 2, w // 2], [n, h // 2, w // 2]]:
            raise ValueError(f"expected {expected}, got shapes {shapes}")
        return planes[0], planes[1], planes[2]

    def _as_array(self, frames: Any) -> np.ndarray:
        expected = f"uint8 RGB frames of shape [n, {self.height}, {self.width}, 3]"
        if type(frames).__module__.startswith("torch"):
            if getattr(frames, "device", None) is not None and frames.device.type != "cpu":
                raise ValueError(f"expected {expected} on the CPU, got a tensor on {frames.device}")
            if str(frames.dtype) != "torch.uint8":
                raise ValueError(f"expected {expected}, got dtype {frames.dtype}")
            frames = frames.detach().numpy()
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"expected {expected} (numpy array or torch tensor), got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise ValueError(f"expected {expected}, got dtype {frames.dtype}")
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"expected {expected}, got shape {list(frames.shape)}")
        return frames

    def _mux_video(self, packets: list[av.Packet]) -> None:
        if not packets:
            return
        if self.audio and not self._audio_set:
            for packet in packets:
                self._pending_video.push(packet)
            return
        for packet in packets:
            self._mux_audio_until(_packet_time(packet))
            self._container.mux(packet)

    def _mux_audio_until(self, t: Fraction | None) -> None:
        queue = self._audio_packets
        while queue and (t is None or _packet_time(queue[0]) <= t):
            self._container.mux(queue.popleft())

    # ------------------------------------------------------------------ audio

    def set_audio(self, samples: Any, sample_rate: int | None = None) -> None:
        """Hand over the whole waveform: float32 ``[channels, samples]`` in [-1, 1].

        May be called once, at any time before :meth:`close`, also from another thread than
        :meth:`write_frames`. It is resampled to 48 kHz if needed, made stereo (mono is
        duplicated, more channels are downmixed), trimmed or zero-padded to exactly
        ``expected_frames / fps`` seconds, encoded, and muxed interleaved with the video packets
        queued so far. ``sample_rate`` defaults to the constructor's.
        """
        if not self.audio:
            raise ValueError("this encoder was created with audio=False")
        with self._lock:
            self._check_open()
            if self._audio_claimed:
                raise ValueError("set_audio was already called")
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        if rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if type(samples).__module__.startswith("torch"):
            samples = samples.detach().cpu().numpy()
        data = np.asarray(samples)
        if data.ndim == 1 and self.audio_channels == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[0] != self.audio_channels or not np.issubdtype(data.dtype, np.floating):
            raise ValueError(
                f"expected float32 audio of shape [{self.audio_channels}, samples] (audio_channels="
                f"{self.audio_channels}), got {data.dtype} {list(data.shape)}"
            )
        data = np.clip(data.astype(np.float32, copy=False), -1.0, 1.0)
        with self._lock:
            self._check_open()
            if self._audio_claimed:
                raise ValueError("set_audio was already called")
            self._audio_claimed = True
        try:
            # Outside the lock: only this call touches the audio codec, frames keep flowing.
            stereo = self._to_stereo_48k(data, rate)
            packets = self._encode_audio(stereo)
        except av.FFmpegError as exc:
            self.abort()
            raise self._error(f"encoding audio failed: {exc}") from exc
        except BaseException:
            with self._lock:
                self._audio_claimed = False  # e.g. a bad channel count: the caller may retry
                self._audio_done.notify_all()
            raise
        with self._lock:
            self._check_open()
            self._audio_packets.extend(packets)
            self._audio_set = True
            self._audio_done.notify_all()
            try:
                pending = self._pending_video
                while len(pending):
                    self._mux_video([pending.pop()])
                pending.close()
            except av.FFmpegError as exc:
                self.abort()
                raise self._error(f"muxing failed: {exc}") from exc

    def _to_stereo_48k(self, data: np.ndarray, rate: int) -> np.ndarray:
        """[channels, n] float32 at ``rate`` -> [2, audio_samples] float32 at 48 kHz."""
        if data.shape[0] == 1:
            data = np.repeat(data, 2, axis=0)  # mono: same signal on both sides, no -3 dB
        if data.shape[0] != 2 or rate != OUTPUT_SAMPLE_RATE:
            src_layout = _DEFAULT_LAYOUTS.get(data.shape[0])
            if src_layout is None:
                raise ValueError(f"audio with {data.shape[0]} channels is not supported (1..8)")
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=src_layout)
            frame.sample_rate = rate
            frame.pts = None
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=OUTPUT_SAMPLE_RATE)
            chunks = [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
            data = np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)
        n = self.audio_samples
        if data.shape[1] >= n:
            return np.ascontiguousarray(data[:, :n], dtype=np.float32)
        out = np.zeros((2, n), np.float32)
        out[:, : data.shape[1]] = data
        return out

    def _encode_audio(self, stereo: np.ndarray) -> list[av.Packet]:
        """Encode exactly ``audio_samples`` samples; packets come back in timestamp order."""
        stream = self._audio_stream
        fmt = self.settings.audio_sample_format
        if fmt == "fltp":
            array = stereo
        elif fmt == "flt":
            array = np.ascontiguousarray(stereo.T).reshape(1, -1)
        elif fmt == "s16":
            array = np.ascontiguousarray((np.round(stereo.T * 32767.0)).astype(np.int16)).reshape(1, -1)
        else:  # pragma: no cover - settings only use the three above
            raise AssertionError(fmt)
        # Frames of the codec's frame size (any size for PCM: 1024), each with its pts; the
        # last one may be short (AAC and Opus accept a small last frame).
        step = stream.codec_context.frame_size or 1024
        per_sample = 1 if fmt == "fltp" else 2  # packed formats interleave both channels
        packets: list[av.Packet] = []
        for start in range(0, stereo.shape[1], step):
            chunk = array[:, start * per_sample : (start + step) * per_sample]
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="stereo")
            frame.sample_rate = OUTPUT_SAMPLE_RATE
            frame.pts = start
            frame.time_base = Fraction(1, OUTPUT_SAMPLE_RATE)
            packets.extend(stream.encode(frame))
        packets.extend(stream.encode(None))
        return packets

    # ------------------------------------------------------------------ finish

    def _check_open(self) -> None:
        if self._closed:
            raise EncodeError(f"{self.settings.output_format}: the encoder is already closed or aborted")

    def close(self) -> str:
        """Flush, check, finalise and rename the file onto ``path``; returns the final path.

        Raises :class:`EncodeError` (and aborts, leaving no file) when not exactly
        ``expected_frames`` frames were written, when ``audio=True`` and :meth:`set_audio` was
        never called, or when the codec or muxer fails.
        """
        with self._lock:
            return self._close()

    def _close(self) -> str:
        if self._closed:
            if self._final_path is not None:
                return self._final_path
            raise EncodeError(f"{self.settings.output_format}: the encoder was aborted")
        if self.frames_written != self.expected_frames:
            got = self.frames_written
            self.abort()
            raise self._error(f"got {got} frames, expected exactly {self.expected_frames} (expected_frames)")
        while self._audio_claimed and not self._audio_set and not self._closed:
            self._audio_done.wait()  # set_audio is encoding in another thread
        if self._closed:
            raise EncodeError(f"{self.settings.output_format}: the encoder was aborted")
        if self.audio and not self._audio_set:
            self.abort()
            raise self._error("audio=True but set_audio() was never called")
        try:
            self._mux_video(self._video.encode(None))
            self._mux_audio_until(None)
            self._container.close()
            self._container = None
            os.replace(self._tmp_path, self.path)
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise self._error(f"finishing the file failed: {exc}") from exc
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._final_path = self.path
        return self.path

    def abort(self) -> None:
        """Give up: close the container and delete the temporary file. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cleanup()

    def _cleanup(self) -> None:
        self._pending_video.close()
        self._audio_packets.clear()
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                pass
        if self._tmp_created:
            try:
                os.unlink(self._tmp_path)
            except FileNotFoundError:
                pass

    def __del__(self) -> None:  # a forgotten encoder must not leave its temp file behind
        try:
            if not self._closed:
                self.abort()
        except Exception:  # noqa: BLE001 - best effort in __del__
            pass
