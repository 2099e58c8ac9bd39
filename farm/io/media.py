"""Media inputs: fetching, decoding and placing the images, videos and audio a task refers to.

Every media string of ``inputs`` (``frameImages``, ``referenceImages[].images``/``.audio``,
``referenceVideos[].video``) is one of

* an **asset UUID** (uploaded with ``UploadAsset``, stored as ``<assets_dir>/<uuid>`` plus a
  ``<uuid>.json`` sidecar naming the owner's API key) -- visible to its owner only;
* an **earlier result's videoUUID** (read from the artifact store), so a result can be extended --
  visible to the key whose task rendered it only, like an asset;
* an **http(s) URL**, fetched through ``UrlGuard`` with the vetted addresses pinned (no second
  DNS lookup, so no rebinding), redirects re-vetted hop by hop, the size limit enforced while
  streaming and a total timeout;
* a **data URI** (``data:image/png;base64,...``) or **bare base64**.

Inline media (data URIs, base64) is not kept in the task: at submit, ``store_inline_media`` moves
each into the asset directory under a content-addressed UUID owned by the submitting key, and the
stored task names that UUID (a 20 MB base64 image would otherwise live in the task store and in
memory for as long as the task record).

``MediaResolver.fetch`` turns one string into bytes; ``decode_image``, ``decode_video`` and
``decode_audio`` turn bytes into arrays, judging the type by the bytes themselves (a data URI's
declared type is not trusted). ``resolve_inputs`` does all of it for a task and raises ONE
``TaskValidationError`` listing every violation, each naming the full field path
(``inputs.frameImages[2].image``), like ``farm.domain.validation`` does for the task's shape.
Frame positions follow ``frame_positions``; see ``docs/media-inputs.md``.

PyAV and Pillow are imported by the functions that decode: the gateway imports this module (for
``store_inline_media``) and decodes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import secrets
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp
import numpy as np
from yarl import URL

# MAX_MEDIA_BYTES: the largest input from any source (UploadAsset and the validator use it too).
from farm.domain.constants import MAX_MEDIA_BYTES, MiB
from farm.domain.errors import ForbiddenURLError, TaskValidationError, Violation
from farm.domain.task import FrameImage, VideoInferenceTask

# The pinned resolver of delivery: one implementation of "connect only to what the guard vetted".
from farm.io.delivery import _PinnedResolver
from farm.io.urlguard import UrlGuard

log = logging.getLogger(__name__)

__all__ = [
    "MediaResolver",
    "VideoClip",
    "DecodedAudio",
    "PositionedImage",
    "ResolvedReferenceGroup",
    "ResolvedReferenceVideo",
    "ResolvedInputs",
    "decode_image",
    "decode_video",
    "decode_audio",
    "frame_positions",
    "resolve_inputs",
    "resolve_inputs_async",
    "store_inline_media",
    "inline_asset_uuid",
    "asset_references",
    "touch_assets",
    "expire_assets",
    "sniff",
    "decode_mask",
    "mask_plane",
    "MAX_MEDIA_BYTES",
    "MAX_VIDEO_SECONDS",
    "MIN_VIDEO_PIXELS",
    "MAX_AUDIO_SECONDS",
    "MAX_IMAGE_PIXELS",
]

#: The seed: reference videos and voice references are at most 15 seconds.
MAX_VIDEO_SECONDS = 15.0
MAX_AUDIO_SECONDS = 15.0
#: The seed: a reference video has at least 1,866,240 pixels per frame (e.g. 1920x972).
MIN_VIDEO_PIXELS = 1_866_240
#: Images larger than this are refused before decoding (a small PNG can claim a huge canvas).
MAX_IMAGE_PIXELS = 8192 * 8192
#: Redirect hops followed per URL; each hop is vetted by the guard again.
MAX_REDIRECTS = 3

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
VIDEO_FORMATS = ("MP4", "MOV", "WEBM")
AUDIO_FORMATS = ("MP3", "WAV", "FLAC")

_USER_AGENT = "skyreels-farm-media/0.1"
_CHUNK = 64 * 1024


def _fail(field: str, message: str, *, limit: Any = None, value: Any = None) -> TaskValidationError:
    return TaskValidationError([Violation(field=field, message=message, limit=limit, value=value)])


def _shown(ref: str, width: int = 80) -> str:
    """A media string shortened for an error message (base64 payloads are megabytes long)."""
    return ref if len(ref) <= width else f"{ref[:width]}... ({len(ref)} characters)"


# -- what the bytes are -----------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """The media type the first bytes announce (``"PNG"``, ``"MP4"``, ``"WAV"``...), or None.

    Used to refuse the wrong kind of media by name ("a PNG image where a video is expected")
    and to keep PyAV from opening an image as a one-frame video (it can).

        >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff(b"RIFF\\0\\0\\0\\0WAVEfmt "), sniff(b"hello")
        ('PNG', 'WAV', None)
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "MOV"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"M4A ", b"M4B "):
            return "M4A"
        return "MP4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "MOV"  # old QuickTime files start with an atom other than ftyp
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "WEBM" if b"webm" in head else "MKV"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head.startswith(b"OggS"):
        return "OGG"
    if head.startswith(b"%PDF"):
        return "PDF"
    return None


_KIND_OF = {
    **{name: "image" for name in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIC")},
    **{name: "video" for name in ("MP4", "MOV", "WEBM", "MKV", "AVI")},
    **{name: "audio" for name in ("MP3", "WAV", "FLAC", "OGG", "M4A")},
    "PDF": "document",
}


def _wrong_type(field: str, detected: str | None, expected: str, accepted: Sequence[str]) -> TaskValidationError:
    """The violation for bytes that are not the expected kind of media, naming what they are."""
    accepted_text = "/".join(accepted)
    if detected is None:
        return _fail(field, f"not a decodable {expected} ({accepted_text})")
    kind = _KIND_OF.get(detected, "file")
    if kind == expected:
        return _fail(
            field, f"{detected} {expected}s are not accepted; use {accepted_text}", limit=list(accepted), value=detected
        )
    article = "an" if expected[0] in "aeiou" else "a"
    return _fail(
        field,
        f"is a {detected} {kind} where {article} {expected} ({accepted_text}) is expected",
        limit=list(accepted),
        value=detected,
    )


# -- images -----------------------------------------------------------------------------------


def decode_image(data: bytes, field: str) -> np.ndarray:
    """Decode a PNG, JPEG or WEBP image to ``uint8 [H, W, 3]`` RGB at its own size.

    EXIF orientation is applied (phone photos are stored sideways); transparency is dropped
    (alpha is not conditioning). Other formats are refused naming the detected type; corrupt or
    truncated data and images over ``MAX_IMAGE_PIXELS`` are refused too, all as
    ``TaskValidationError`` naming ``field``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    detected = sniff(data)
    if detected not in IMAGE_FORMATS:
        raise _wrong_type(field, detected, "image", IMAGE_FORMATS)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x raises) on huge canvases; our own limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in IMAGE_FORMATS:
                    raise _wrong_type(field, image.format, "image", IMAGE_FORMATS)
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _fail(
                        field,
                        f"image is too large ({width}x{height} = {width * height} pixels)",
                        limit=MAX_IMAGE_PIXELS,
                        value=width * height,
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = image.convert("RGB")
    except TaskValidationError:
        raise
    except Image.DecompressionBombError:
        raise _fail(field, "image is too large", limit=MAX_IMAGE_PIXELS) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as error:
        raise _fail(
            field,
            f"not a decodable image ({'/'.join(IMAGE_FORMATS)}): {detected} data is corrupt or truncated ({error})",
        ) from None
    return np.asarray(rgb, dtype=np.uint8).copy()


# -- audio ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    """Decoded audio: ``samples`` float32 ``[channels, n]`` in -1..1 at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.rate if self.rate else 0.0

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])


class _TooLong(Exception):
    """Decoding passed the length limit (raised mid-stream, so memory stays bounded)."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def _decode_audio_stream(container, stream, max_seconds: float) -> tuple[np.ndarray, int]:
    """Every sample of ``stream`` as float32 ``[ch, n]``; the resampler normalises s16/s32/flt
    and packed/planar layouts to planar float without changing rate or channel count.

    Stops with ``_TooLong`` once more than ``max_seconds`` are decoded: a header may lie, and
    50 MiB of MP3 is hours of audio, gigabytes as float.
    """
    import av

    resampler = av.AudioResampler(format="fltp")
    parts: list[np.ndarray] = []
    rate = stream.rate or stream.codec_context.sample_rate
    decoded = 0
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray())
            rate = out.sample_rate
            decoded += out.samples
        if rate and decoded > max_seconds * rate:
            raise _TooLong(decoded / rate)
    for out in resampler.resample(None):
        parts.append(out.to_ndarray())
    if not parts:
        channels = stream.codec_context.channels or 1
        return np.zeros((channels, 0), dtype=np.float32), int(rate or 0)
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32), int(rate)


def _metadata_duration(container, stream) -> float | None:
    """The duration the container declares (no decoding), or None when it declares none."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def decode_audio(data: bytes, field: str) -> tuple[np.ndarray, int]:
    """Decode MP3, WAV or FLAC to ``(float32 [channels, n], rate)``; refuse more than 15 s.

    The declared duration is checked before decoding (a long file is refused cheaply) and the
    decoded length after (a header can lie).
    """
    import av

    detected = sniff(data)
    if detected not in AUDIO_FORMATS:
        raise _wrong_type(field, detected, "audio", AUDIO_FORMATS)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise _fail(field, f"{detected} data has no audio stream")
            stream = container.streams.audio[0]
            declared = _metadata_duration(container, stream)
            if declared is not None and declared > MAX_AUDIO_SECONDS + 0.05:
                raise _too_long(field, "audio", declared, MAX_AUDIO_SECONDS)
            samples, rate = _decode_audio_stream(container, stream, MAX_AUDIO_SECONDS + 0.05)
    except TaskValidationError:
        raise
    except _TooLong as error:
        raise _too_long(field, "audio", error.seconds, MAX_AUDIO_SECONDS) from None
    except (av.FFmpegError, OSError, ValueError, EOFError) as error:
        raise _fail(
            field, f"not decodable audio ({'/'.join(AUDIO_FORMATS)}): {detected} data is corrupt or truncated ({error})"
        ) from None
    if samples.shape[1] == 0 or not rate:
        raise _fail(field, f"{detected} data holds no audio samples")
    seconds = samples.shape[1] / rate
    # A few ms of tolerance: MP3 encoders pad the last frame past the nominal length.
    if seconds > MAX_AUDIO_SECONDS + 0.05:
        raise _too_long(field, "audio", seconds, MAX_AUDIO_SECONDS)
    return samples, rate


def _too_long(field: str, what: str, seconds: float, limit: float) -> TaskValidationError:
    return _fail(
        field, f"{what} is {seconds:.2f} s long; at most {limit:g} s is accepted", limit=limit, value=round(seconds, 3)
    )


# -- video ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VideoClip:
    """A decoded-on-demand video: metadata now, frames lazily (``frames``), audio decoded.

    Frames are never all held at once unless asked for (``array``): a 15 s 1080p clip is
    ~2.8 GiB of RGB. The encoded bytes stay in the clip and are decoded again per call.
    """

    format: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float
    #: Frames in the clip (declared by the container, else duration x fps rounded).
    num_frames: int
    has_audio: bool
    #: float32 ``[channels, n]`` when the clip has audio, else None.
    audio: np.ndarray | None = None
    audio_rate: int | None = None
    data: bytes = dataclass_field(default=b"", repr=False)

    @property
    def pixels(self) -> int:
        """Pixels per frame."""
        return self.width * self.height

    def frames(
        self, size: tuple[int, int] | None = None, start: int = 0, stop: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yield frames ``start..stop-1`` as ``uint8 [H, W, 3]`` RGB, scaled to ``size``
        (``(width, height)``) when given, so memory stays at one frame of the size asked for.

        Never more frames than 16 s at the clip's rate: the length was checked from metadata,
        and a container that lies about it must not turn into an endless stream."""
        import av

        cap = int((MAX_VIDEO_SECONDS + 1.0) * max(self.fps, 1.0)) + 1
        stop = cap if stop is None else min(stop, cap)
        with av.open(io.BytesIO(self.data), mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= stop:
                    break
                if index < start:
                    continue
                if size is None:
                    yield frame.to_ndarray(format="rgb24")
                else:
                    yield frame.to_ndarray(format="rgb24", width=size[0], height=size[1])

    def last_frames(self, count: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """The last ``count`` frames as ``uint8 [count, H, W, 3]`` (what ``extend`` continues from)."""
        tail: deque[np.ndarray] = deque(maxlen=count)
        tail.extend(self.frames(size))
        return np.stack(tail) if tail else np.zeros((0, 0, 0, 3), dtype=np.uint8)

    def array(self, size: tuple[int, int] | None = None, max_bytes: int = 2 * 1024 * MiB) -> np.ndarray:
        """Every frame as ``uint8 [T, H, W, 3]``; ``ValueError`` if that would exceed ``max_bytes``
        (pass a smaller ``size``, or iterate ``frames`` instead)."""
        width, height = size or (self.width, self.height)
        needed = self.num_frames * width * height * 3
        if needed > max_bytes:
            raise ValueError(
                f"{self.num_frames} frames of {width}x{height} need {needed} bytes "
                f"(max_bytes={max_bytes}); pass a smaller size or iterate frames()"
            )
        frames = list(self.frames(size))
        return np.stack(frames) if frames else np.zeros((0, height, width, 3), dtype=np.uint8)


def _video_format(detected: str | None, container_name: str) -> str | None:
    """MP4/MOV/WEBM from the sniffed type and the demuxer PyAV picked (both must agree)."""
    names = set(container_name.split(","))
    if detected in ("MP4", "MOV") and names & {"mp4", "mov"}:
        return detected
    if detected == "WEBM" and "webm" in names:
        return "WEBM"
    return None


def decode_video(data: bytes, field: str, *, min_pixels: int = MIN_VIDEO_PIXELS) -> VideoClip:
    """Open an MP4, MOV or WEBM clip: metadata, first frame decoded (to catch corrupt data),
    audio decoded; refuse clips over 15 s and under ``min_pixels`` (1,866,240) pixels per frame.

    Both limits are checked from the container (no full decode) and reported together. The
    duration is the container's declared one, or, when it declares none (live-written WEBM),
    the end of the last packet found by demuxing without decoding.
    """
    import av

    detected = sniff(data)
    if detected not in VIDEO_FORMATS:
        raise _wrong_type(field, detected, "video", VIDEO_FORMATS)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            kind = _video_format(detected, container.format.name)
            if kind is None:
                raise _wrong_type(field, detected, "video", VIDEO_FORMATS)
            if not container.streams.video:
                raise _fail(field, f"{detected} data has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            duration = _metadata_duration(container, stream)
            if duration is None:
                duration = _demuxed_duration(container, stream)
            violations: list[Violation] = []
            frame_time = 1.0 / fps if fps else 0.0
            # One frame of tolerance: containers round the last frame's duration up.
            if duration > MAX_VIDEO_SECONDS + frame_time + 1e-6:
                violations += _too_long(field, "video", duration, MAX_VIDEO_SECONDS).violations
            if width * height < min_pixels:
                violations.append(
                    Violation(
                        field=field,
                        message=f"video is {width}x{height} = {width * height} pixels per frame; "
                        f"at least {min_pixels:,} (e.g. 1920x972) are required",
                        limit=min_pixels,
                        value=width * height,
                    )
                )
            if violations:
                raise TaskValidationError(violations)
            codec = stream.codec_context.name
            num_frames = stream.frames or round(duration * fps)
            has_audio = bool(container.streams.audio)
        # Fresh opens rather than seeking back: seeking is unreliable in some containers.
        with av.open(io.BytesIO(data), mode="r") as container:
            first = next(iter(container.decode(container.streams.video[0])), None)
            if first is None:
                raise _fail(field, f"{detected} data holds no decodable video frame")
            first.to_ndarray(format="rgb24")
        audio = audio_rate = None
        if has_audio:
            # A second pass: demuxing audio alongside video in one pass would decode every frame.
            with av.open(io.BytesIO(data), mode="r") as container:
                # The audio track is carried to the output with the video: same length limit.
                audio, audio_rate = _decode_audio_stream(container, container.streams.audio[0], MAX_VIDEO_SECONDS + 1.0)
    except TaskValidationError:
        raise
    except _TooLong as error:
        raise _fail(
            field,
            f"the video's audio track is longer than {MAX_VIDEO_SECONDS:g} s",
            limit=MAX_VIDEO_SECONDS,
            value=round(error.seconds, 3),
        ) from None
    except (av.FFmpegError, OSError, ValueError, EOFError, StopIteration) as error:
        raise _fail(
            field,
            f"not a decodable video ({'/'.join(VIDEO_FORMATS)}): {detected} data is corrupt or truncated ({error})",
        ) from None
    return VideoClip(
        format=kind,
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        duration=duration,
        num_frames=int(num_frames),
        has_audio=has_audio,
        audio=audio,
        audio_rate=audio_rate,
        data=bytes(data),
    )


def decode_mask(data: bytes, field: str) -> np.ndarray | VideoClip:
    """An ``inputs.mask``: an image (one mask for every frame) as ``uint8 [H, W]`` (255 where the
    image is light, i.e. regenerate), or a video clip of masks (any frame size; same length limit
    as other videos). The type is sniffed from the bytes."""
    detected = sniff(data)
    if _KIND_OF.get(detected) == "video":
        return decode_video(data, field, min_pixels=1)
    if _KIND_OF.get(detected) != "image" and detected is not None:
        raise _wrong_type(field, detected, "mask image or video", IMAGE_FORMATS + VIDEO_FORMATS)
    return mask_plane(decode_image(data, field))


def mask_plane(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W]`` mask of an RGB mask picture: 255 where it is light (>= 50% grey), else 0."""
    light = rgb.astype(np.uint16).sum(axis=-1) >= 3 * 128
    return np.where(light, 255, 0).astype(np.uint8)


def _demuxed_duration(container, stream) -> float:
    end = 0
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, packet.pts + (packet.duration or 0))
    return float(end * stream.time_base) if stream.time_base else 0.0


# -- fetching ---------------------------------------------------------------------------------

T = TypeVar("T")


def _run_sync(coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` to completion from synchronous code, even when the calling thread
    already runs an event loop (then in a helper thread, as asyncio.run cannot nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]  # any awaitable is run as a coroutine
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)  # type: ignore[arg-type]  # as above
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = error

    helper = threading.Thread(target=target, name="media-fetch")
    helper.start()
    helper.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class MediaResolver:
    """Turns media strings into bytes: asset UUIDs, result videoUUIDs, URLs, data URIs, base64.

    ``guard`` vets every URL (and every redirect hop); ``assets_dir`` is the gateway's
    ``<data-dir>/assets``; ``artifacts`` is an ``ArtifactStore`` (earlier results); ``api_key`` is
    the task owner's key: an asset uploaded with a key is visible to that key only (an asset
    uploaded while keys were off is visible to all), and a foreign asset reads as "not found".
    Every source is held to ``max_bytes``; URLs to ``fetch_timeout_s`` in total.
    Failures raise ``TaskValidationError`` with one ``Violation`` naming ``field``.
    """

    def __init__(
        self,
        *,
        guard: UrlGuard,
        assets_dir: Path | None = None,
        artifacts: Any = None,
        api_key: str | None = None,
        max_bytes: int = MAX_MEDIA_BYTES,
        fetch_timeout_s: float = 30,
    ):
        self.guard = guard
        self.assets_dir = Path(assets_dir) if assets_dir is not None else None
        self.artifacts = artifacts
        self.api_key = api_key
        self.max_bytes = max_bytes
        self.fetch_timeout_s = fetch_timeout_s

    def fetch(self, ref: str, field: str) -> bytes:
        """The bytes ``ref`` stands for (blocking; see ``fetch_async``)."""
        return _run_sync(self.fetch_async(ref, field))

    async def fetch_async(self, ref: str, field: str) -> bytes:
        """The bytes ``ref`` stands for. Which form it is, in this order: ``data:`` prefix -> data
        URI; ``scheme://`` -> URL; a canonical UUID -> asset, else earlier result; anything else
        -> bare base64 (a UUID is never valid base64: it has ``-``)."""
        if not isinstance(ref, str) or not ref.strip():
            raise _fail(field, "media input is empty")
        text = ref.strip()
        if text[:5].lower() == "data:":
            return self._data_uri(text, field)
        if "://" in text[:16]:
            return await self._url(text, field)
        as_uuid = _canonical_uuid(text)
        if as_uuid is not None:
            return await asyncio.to_thread(self._by_uuid, as_uuid, field)
        return self._base64(text, field, what="base64")

    # -- the forms ----------------------------------------------------------------------------

    def _data_uri(self, text: str, field: str) -> bytes:
        return _data_uri_bytes(text, field, self.max_bytes)

    def _base64(self, text: str, field: str, *, what: str) -> bytes:
        return _base64_bytes(text, field, self.max_bytes, what=what)

    def _by_uuid(self, asset_uuid: str, field: str) -> bytes:
        if self.assets_dir is not None:
            path = self.assets_dir / asset_uuid
            sidecar = path.with_name(asset_uuid + ".json")
            if path.is_file() and sidecar.is_file():
                try:
                    meta = json.loads(sidecar.read_text())
                except (OSError, ValueError):
                    meta = None
                owner = meta.get("apiKey") if isinstance(meta, dict) else "\0unreadable"
                # Same answer as an unknown UUID: a foreign asset's existence is not revealed.
                if owner is None or owner == self.api_key:
                    return self._read_file(path, field)
        if self.artifacts is not None:
            from farm.io.artifacts import ArtifactExpired, ArtifactNotFound

            try:
                artifact = self.artifacts.get(asset_uuid)
            except ArtifactExpired as expired:
                if expired.artifact is None or expired.artifact.visible_to(self.api_key):
                    raise _fail(field, f"result video {asset_uuid} has expired", value=asset_uuid) from None
            except ArtifactNotFound:
                pass
            else:
                # Another key's result answers as an unknown UUID (its existence is not revealed).
                if artifact.visible_to(self.api_key):
                    # The farm's own output, bounded by its own limits (15 s): a long high-quality
                    # 1080p result may pass max_bytes, and refusing it would make it unextendable.
                    return self._read_file(Path(artifact.path), field, limited=False)
        raise _fail(
            field, "no uploaded asset or earlier result with this UUID is visible to this API key", value=asset_uuid
        )

    def _read_file(self, path: Path, field: str, *, limited: bool = True) -> bytes:
        try:
            size = path.stat().st_size
            if limited and size > self.max_bytes:
                raise self._too_big(field, size)
            return path.read_bytes()
        except OSError as error:
            raise _fail(field, f"stored media could not be read ({error.strerror or error})") from None

    async def _url(self, url: str, field: str) -> bytes:
        try:
            return await asyncio.wait_for(self._follow(url, field), timeout=self.fetch_timeout_s)
        except TimeoutError:
            raise _fail(
                field,
                f"download did not finish within {self.fetch_timeout_s:g} s",
                limit=self.fetch_timeout_s,
                value=_shown(url),
            ) from None

    async def _follow(self, url: str, field: str) -> bytes:
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                # Every hop is vetted and pinned: a redirect to an internal address is refused.
                addresses = await self.guard.resolve_async(url, field)
            except ForbiddenURLError as error:
                message = str(error).removeprefix(f"{field}: ")
                raise TaskValidationError(
                    [Violation(field=field, message=f"URL refused: {message}", code="forbiddenURL", value=_shown(url))]
                ) from None
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(URL(url).host or "", addresses), force_close=True)
            headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with session.get(url, headers=headers, allow_redirects=False) as response:
                        if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                            url = urljoin(url, response.headers["Location"])
                            continue
                        if response.status != 200:
                            raise _fail(field, f"download failed: HTTP {response.status}", value=_shown(url))
                        return await self._read_body(response, field)
            except aiohttp.ClientError as error:
                text = f"{type(error).__name__}: {error}".rstrip(": ")
                raise _fail(field, f"download failed ({text})", value=_shown(url)) from None
            except OSError as error:
                raise _fail(field, f"download failed ({error})", value=_shown(url)) from None
        raise _fail(
            field, f"download failed: more than {MAX_REDIRECTS} redirects", limit=MAX_REDIRECTS, value=_shown(url)
        )

    async def _read_body(self, response: aiohttp.ClientResponse, field: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            raise self._too_big(field, declared)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            # Checked per chunk: a server that lies about (or omits) Content-Length is cut off here.
            if len(body) > self.max_bytes:
                raise _fail(
                    field,
                    f"download exceeds {self.max_bytes} bytes (stopped reading)",
                    limit=self.max_bytes,
                    value=f"more than {self.max_bytes} bytes",
                )
        if not body:
            raise _fail(field, "download is empty")
        return bytes(body)

    def _too_big(self, field: str, size: int) -> TaskValidationError:
        return _too_big(field, size, self.max_bytes)


def _too_big(field: str, size: int, max_bytes: int) -> TaskValidationError:
    return _fail(field, f"media is {size} bytes; at most {max_bytes} are accepted", limit=max_bytes, value=size)


def _data_uri_bytes(text: str, field: str, max_bytes: int) -> bytes:
    """The payload of a base64 data URI (its declared type is not trusted: decoders sniff)."""
    header, comma, payload = text.partition(",")
    if not comma:
        raise _fail(field, "data URI has no ',' before its payload", value=_shown(text))
    params = [part.strip().lower() for part in header[5:].split(";")]
    if "base64" not in params[1:]:
        raise _fail(field, "only base64 data URIs are accepted (data:<type>;base64,<payload>)", value=_shown(text))
    return _base64_bytes(payload, field, max_bytes, what="data URI payload")


def _base64_bytes(text: str, field: str, max_bytes: int, *, what: str) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace ignored; at most ``max_bytes``."""
    compact = "".join(text.split())
    # Refuse before decoding: 4 characters carry 3 bytes.
    if len(compact) // 4 * 3 > max_bytes + 2:
        raise _too_big(field, len(compact) // 4 * 3, max_bytes)
    padded = compact + "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        try:
            data = base64.b64decode(padded, altchars=b"-_", validate=True)  # URL-safe alphabet
        except (binascii.Error, ValueError):
            raise _fail(
                field,
                f"not a UUID, an http(s) URL, a data URI or valid base64 ({what} does not decode)",
                value=_shown(text),
            ) from None
    if not data:
        raise _fail(field, f"{what} is empty")
    if len(data) > max_bytes:
        raise _too_big(field, len(data), max_bytes)
    return data


def _inline_bytes(ref: str, field: str, max_bytes: int) -> tuple[bytes, str] | None:
    """``(bytes, declared content type)`` of an inline media string (data URI or bare base64),
    None for the forms that are references (URL, UUID); the same order of rules as
    ``MediaResolver.fetch_async``."""
    text = ref.strip()
    if text[:5].lower() == "data:":
        declared = text[5:].partition(",")[0].partition(";")[0].strip().lower()
        return _data_uri_bytes(text, field, max_bytes), declared or "application/octet-stream"
    if "://" in text[:16] or _canonical_uuid(text) is not None:
        return None
    return _base64_bytes(text, field, max_bytes, what="base64"), "application/octet-stream"


# -- inline media into the asset store (at submit) --------------------------------------------

#: Namespace of content-addressed asset UUIDs (any fixed value; changing it re-addresses everything).
_INLINE_NAMESPACE = b"skyreels-farm inline media v1"


def inline_asset_uuid(data: bytes, api_key: str | None) -> str:
    """The asset UUID inline ``data`` is stored under for ``api_key``: a UUID v4-shaped digest of
    the key and the bytes. The same bytes from the same key are one asset (a resubmitted task
    writes nothing new); another key's are another asset, and the key in the digest makes the
    UUID unguessable from the bytes alone.

        >>> inline_asset_uuid(b"png", "alice") == inline_asset_uuid(b"png", "alice")
        True
        >>> inline_asset_uuid(b"png", "alice") == inline_asset_uuid(b"png", "bob")
        False
    """
    key = b"\x01" + api_key.encode("utf-8", "surrogatepass") if api_key is not None else b"\x00"
    digest = hashlib.sha256(_INLINE_NAMESPACE + b"\0" + key + b"\0" + hashlib.sha256(data).digest()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _media_slots(inputs: dict) -> Iterator[tuple[Any, Any, str]]:
    """``(container, key, field path)`` of every media string in a validated task's ``inputs``
    (JSON form), with the field paths ``resolve_inputs`` names."""
    frames = inputs.get("frameImages")
    for i, item in enumerate(frames if isinstance(frames, list) else ()):
        if isinstance(item, str):
            yield frames, i, f"inputs.frameImages[{i}]"
        elif isinstance(item, dict) and isinstance(item.get("image"), str):
            yield item, "image", f"inputs.frameImages[{i}].image"
    groups = inputs.get("referenceImages")
    for g, group in enumerate(groups if isinstance(groups, list) else ()):
        if not isinstance(group, dict):
            continue
        images = group.get("images")
        for j, image in enumerate(images if isinstance(images, list) else ()):
            if isinstance(image, str):
                yield images, j, f"inputs.referenceImages[{g}].images[{j}]"
        if isinstance(group.get("audio"), str):
            yield group, "audio", f"inputs.referenceImages[{g}].audio"
    videos = inputs.get("referenceVideos")
    for v, video in enumerate(videos if isinstance(videos, list) else ()):
        if isinstance(video, dict) and isinstance(video.get("video"), str):
            yield video, "video", f"inputs.referenceVideos[{v}].video"
    if isinstance(inputs.get("mask"), str):
        yield inputs, "mask", "inputs.mask"


def store_inline_media(
    raw_task: dict, *, assets_dir: str | Path, api_key: str | None, max_bytes: int = MAX_MEDIA_BYTES
) -> dict:
    """``raw_task`` (a validated task's JSON) with every inline media string of ``inputs`` (a data
    URI or bare base64) replaced by the UUID of an asset holding its bytes; ``raw_task`` itself is
    left as it is, and returned as it is when it has no inline media.

    Each asset is stored as an upload is (``<assets_dir>/<uuid>`` and a ``<uuid>.json`` sidecar
    naming ``api_key`` as its owner, so only that key's tasks resolve it), under
    ``inline_asset_uuid`` (content-addressed: storing the same bytes again writes nothing), and
    kept like uploaded assets. Bytes that are not valid base64 raise ``TaskValidationError`` naming
    the field, the message ``MediaResolver`` would give at render time.
    """
    inputs = raw_task.get("inputs")
    if not isinstance(inputs, dict):
        return raw_task
    found = [
        (path, inline)
        for _, _, path, inline in (
            (container, key, path, _inline_bytes(container[key], path, max_bytes))
            for container, key, path in _media_slots(inputs)
        )
        if inline is not None
    ]
    if not found:
        return raw_task
    rewritten = copy.deepcopy({k: v for k, v in raw_task.items() if k == "inputs"})
    root = Path(assets_dir)
    root.mkdir(parents=True, exist_ok=True)
    references = {}
    for path, (data, content_type) in found:
        references[path] = _store_asset(root, data, content_type, api_key)
    for container, key, path in _media_slots(rewritten["inputs"]):
        if path in references:
            container[key] = references[path]
    return {**raw_task, "inputs": rewritten["inputs"]}


def _store_asset(root: Path, data: bytes, content_type: str, api_key: str | None) -> str:
    """Write ``data`` as an asset of ``api_key`` (unless that very asset exists); its UUID."""
    asset_uuid = inline_asset_uuid(data, api_key)
    path = root / asset_uuid
    sidecar = root / f"{asset_uuid}.json"
    if path.is_file() and sidecar.is_file():
        touch_assets(root, (asset_uuid,))  # stored again: its retention starts again
        return asset_uuid
    meta = {
        "assetUUID": asset_uuid,
        "size": len(data),
        "contentType": content_type[:255],
        "filename": "",
        "apiKey": api_key,
        "inline": True,
    }
    # Sidecar first, then the bytes, each renamed into place whole: the resolver needs both, so a
    # crash in between leaves nothing it would serve, and a second writer of the same bytes
    # replaces a file with an identical one.
    for target, payload in ((sidecar, json.dumps(meta).encode()), (path, data)):
        partial = root / f".{target.name}.partial-{secrets.token_hex(6)}"
        try:
            partial.write_bytes(payload)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return asset_uuid


def asset_references(raw_task: dict) -> set[str]:
    """The UUIDs a task's ``inputs`` (JSON form) name: its assets, and any earlier result's
    videoUUID (which ``touch_assets`` and ``expire_assets`` pass over: no asset has it)."""
    inputs = raw_task.get("inputs")
    if not isinstance(inputs, dict):
        return set()
    named = (container[key] for container, key, _ in _media_slots(inputs))
    return {found for ref in named if (found := _canonical_uuid(ref.strip())) is not None}


def touch_assets(assets_dir: str | Path, asset_uuids: Iterable[str]) -> None:
    """Mark the assets among ``asset_uuids`` used now: ``expire_assets`` counts their retention
    from this moment (the sidecar's modification time is the last use)."""
    root = Path(assets_dir)
    for asset_uuid in asset_uuids:
        try:
            os.utime(root / f"{asset_uuid}.json")
        except OSError:  # not an asset (an earlier result's videoUUID), or gone
            pass


def expire_assets(
    assets_dir: str | Path,
    *,
    unused_since: float,
    keep: Collection[str] | Callable[[], Collection[str]] = (),
    lock: AbstractContextManager[object] | None = None,
) -> int:
    """Delete every asset (uploaded or inline) last stored or used (``touch_assets``) before
    ``unused_since`` (a ``time.time()``), except those in ``keep``; returns how many. ``keep`` may
    be a function, called only when some asset is that old (the common sweep finds none and reads
    nothing else).

    The bytes go first, then the sidecar: an asset without its bytes resolves to nothing, so a
    deletion that stops half way leaves no asset a render could half read. Each asset is checked
    again and deleted under ``lock`` (the one submits hold while they store and touch assets), so
    an asset a task names meanwhile is kept.
    """
    root = Path(assets_dir)
    if not root.is_dir():
        return 0
    stale = [sidecar for sidecar in root.glob("*.json") if _unused_since(sidecar, unused_since)]
    if not stale:
        return 0
    kept = keep() if callable(keep) else keep
    removed = 0
    for sidecar in stale:
        asset_uuid = sidecar.name.removesuffix(".json")
        if asset_uuid in kept:
            continue
        with lock if lock is not None else contextlib.nullcontext():
            try:
                if not _unused_since(sidecar, unused_since):  # named meanwhile
                    continue
                (root / asset_uuid).unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
            except OSError as error:
                log.warning("cannot delete the expired asset %s: %s", asset_uuid, error)
                continue
        removed += 1
    return removed


def _unused_since(sidecar: Path, moment: float) -> bool:
    """Whether ``sidecar`` is an asset's and was last touched before ``moment``."""
    if _canonical_uuid(sidecar.name.removesuffix(".json")) is None:
        return False
    try:
        return sidecar.stat().st_mtime < moment
    except OSError:  # deleted meanwhile
        return False


def _canonical_uuid(text: str) -> str | None:
    """``text`` as a lower-case canonical UUID if it is one (36 characters with dashes), else None.
    Only that form is looked up, so no other string can become a path under ``assets_dir``."""
    if len(text) != 36:
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    canonical = str(parsed)
    return canonical if canonical == text.lower() else None


# -- frame positions --------------------------------------------------------------------------


def frame_positions(
    frame_images: Sequence[FrameImage | str], num_frames: int, base: str = "inputs.frameImages"
) -> list[int]:
    """The frame each of ``frame_images`` conditions, in input order.

    * ``{image, frame}``: ``"first"`` -> 0, ``"last"`` -> ``num_frames - 1``, an index as given
      (it must be below ``num_frames``).
    * A plain string at list index ``i`` of ``k`` items takes the slot an all-plain list would
      give it: one item -> 0; otherwise ``round(i * (num_frames - 1) / (k - 1))`` (halves round
      up). So one image is the first frame, two are first and last, three or more spread evenly,
      and in a mixed list the plain strings keep their list-order slots around positioned ones.

    Two items on the same frame (a plain slot landing on an explicit frame, or more plain items
    than frames) raise ``TaskValidationError`` naming both.

        >>> frame_positions(["a", "b", "c"], 9)
        [0, 4, 8]
        >>> frame_positions([FrameImage(image="a", frame="last"), "b"], 9)
        Traceback (most recent call last):
        ...
        farm.domain.errors.TaskValidationError: task is invalid (1 violation(s)):
          - inputs.frameImages[1]: targets frame 8, already taken by inputs.frameImages[0] (received: 8)
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    count = len(frame_images)
    positions: list[int] = []
    violations: list[Violation] = []
    for index, item in enumerate(frame_images):
        frame = None if isinstance(item, str) else item.frame
        if frame is None:
            # Integer arithmetic: floor(x + 1/2) without float error, identical on every worker.
            position = 0 if count == 1 else (2 * index * (num_frames - 1) + (count - 1)) // (2 * (count - 1))
        elif frame == "first":
            position = 0
        elif frame == "last":
            position = num_frames - 1
        else:
            position = int(frame)
            if not 0 <= position < num_frames:
                violations.append(
                    Violation(
                        field=f"{base}[{index}].frame",
                        message=f"must be a frame index below the clip's {num_frames} frames",
                        limit=num_frames - 1,
                        value=position,
                    )
                )
        positions.append(position)
    owner: dict[int, int] = {}
    for index, position in enumerate(positions):
        if position in owner:
            plain = isinstance(frame_images[index], str) or frame_images[index].frame is None
            violations.append(
                Violation(
                    field=f"{base}[{index}]" + ("" if plain else ".frame"),
                    message=f"targets frame {position}, already taken by {base}[{owner[position]}]",
                    value=position,
                )
            )
        else:
            owner[position] = index
    if violations:
        raise TaskValidationError(violations)
    return positions


# -- a whole task -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PositionedImage:
    """A frame image placed on the clip: ``image`` ``uint8 [H, W, 3]`` conditions ``frame``."""

    frame: int
    image: np.ndarray
    #: Index in ``inputs.frameImages`` and the field path, for messages.
    index: int
    field: str


@dataclass(frozen=True, eq=False)
class ResolvedReferenceGroup:
    """One ``referenceImages`` group decoded: images at their own sizes, voice audio if given."""

    type: str
    tag: str
    images: tuple[np.ndarray, ...]
    audio: DecodedAudio | None = None


@dataclass(frozen=True, eq=False)
class ResolvedReferenceVideo:
    """The ``referenceVideos`` item decoded (``type`` ``reference`` or ``extend``)."""

    type: str
    tag: str
    clip: VideoClip


@dataclass(frozen=True, eq=False)
class ResolvedInputs:
    """Every input of a task fetched, decoded and placed; what the render conditions on."""

    num_frames: int
    #: Sorted by frame.
    frame_images: tuple[PositionedImage, ...] = ()
    reference_images: tuple[ResolvedReferenceGroup, ...] = ()
    reference_video: ResolvedReferenceVideo | None = None
    #: ``inputs.mask``: ``uint8 [H, W]`` (255 = regenerate) for an image, a ``VideoClip`` of masks.
    mask: np.ndarray | VideoClip | None = None

    @property
    def empty(self) -> bool:
        """True when the task has no media inputs (plain text-to-video)."""
        return not (self.frame_images or self.reference_images or self.reference_video)


def resolve_inputs(task: VideoInferenceTask, resolver: MediaResolver) -> ResolvedInputs:
    """Fetch and decode every input of ``task``; raise ONE ``TaskValidationError`` listing every
    violation across all inputs (blocking; see ``resolve_inputs_async``)."""
    return _run_sync(resolve_inputs_async(task, resolver))


async def resolve_inputs_async(task: VideoInferenceTask, resolver: MediaResolver) -> ResolvedInputs:
    """``resolve_inputs`` on the running loop: downloads run concurrently, decoding in threads."""
    inputs = task.inputs
    violations: list[Violation] = []

    async def load(ref: str, field: str, decoder) -> Any:
        """The decoded input, or None with its violations recorded."""
        try:
            data = await resolver.fetch_async(ref, field)
            return await asyncio.to_thread(decoder, data, field)
        except TaskValidationError as error:
            violations.extend(error.violations)
            return None

    frame_fields = [
        f"inputs.frameImages[{i}]" + ("" if item.frame is None else ".image")
        for i, item in enumerate(inputs.frame_images)
    ]
    jobs: list[Awaitable[Any]] = [
        load(item.image, path, decode_image) for item, path in zip(inputs.frame_images, frame_fields)
    ]
    group_jobs: list[tuple[int, int]] = []
    for g, group in enumerate(inputs.reference_images):
        base = f"inputs.referenceImages[{g}]"
        for j, ref in enumerate(group.images):
            jobs.append(load(ref, f"{base}.images[{j}]", decode_image))
        if group.audio is not None:
            jobs.append(load(group.audio, f"{base}.audio", decode_audio))
        group_jobs.append((len(group.images), 1 if group.audio is not None else 0))
    for v, video in enumerate(inputs.reference_videos):
        jobs.append(load(video.video, f"inputs.referenceVideos[{v}].video", decode_video))
    if inputs.mask is not None:
        jobs.append(load(inputs.mask, "inputs.mask", decode_mask))

    positions: list[int] = []
    try:
        positions = frame_positions(inputs.frame_images, task.num_frames) if inputs.frame_images else []
    except TaskValidationError as error:
        violations.extend(error.violations)
    results = await asyncio.gather(*jobs)
    if violations:
        # Stable order: by field path as the task lists them, not by which download finished first.
        order = {path: n for n, path in enumerate(_field_order(task))}
        violations.sort(key=lambda v: order.get(v.field.removesuffix(".frame"), len(order)))
        raise TaskValidationError(violations, task_uuid=task.task_uuid)

    cursor = 0
    frames = []
    for index, (_item, path) in enumerate(zip(inputs.frame_images, frame_fields)):
        frames.append(PositionedImage(frame=positions[index], image=results[cursor], index=index, field=path))
        cursor += 1
    groups = []
    for group, (n_images, n_audio) in zip(inputs.reference_images, group_jobs):
        images = tuple(results[cursor : cursor + n_images])
        cursor += n_images
        audio = None
        if n_audio:
            samples, rate = results[cursor]
            audio = DecodedAudio(samples=samples, rate=rate)
            cursor += 1
        groups.append(ResolvedReferenceGroup(type=group.type, tag=group.tag, images=images, audio=audio))
    reference_video = None
    for video in inputs.reference_videos:
        reference_video = ResolvedReferenceVideo(type=video.type, tag=video.tag, clip=results[cursor])
        cursor += 1
    mask = results[cursor] if inputs.mask is not None else None
    return ResolvedInputs(
        num_frames=task.num_frames,
        frame_images=tuple(sorted(frames, key=lambda p: p.frame)),
        reference_images=tuple(groups),
        reference_video=reference_video,
        mask=mask,
    )


def _field_order(task: VideoInferenceTask) -> list[str]:
    """Every media field path of ``task`` in the order the task lists them."""
    paths = [
        f"inputs.frameImages[{i}]" + ("" if item.frame is None else ".image")
        for i, item in enumerate(task.inputs.frame_images)
    ]
    paths = [p for path in paths for p in (path, path.removesuffix(".image"))]
    for g, group in enumerate(task.inputs.reference_images):
        paths += [f"inputs.referenceImages[{g}].images[{j}]" for j in range(len(group.images))]
        paths.append(f"inputs.referenceImages[{g}].audio")
    paths += [f"inputs.referenceVideos[{v}].video" for v in range(len(task.inputs.reference_videos))]
    paths.append("inputs.mask")
    return paths
