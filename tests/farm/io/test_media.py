"""Media inputs with real decoding: Pillow and PyAV encode in memory, a real aiohttp server on
127.0.0.1 serves URLs, a real LocalArtifactStore holds earlier results. Nothing is mocked."""

from __future__ import annotations

import asyncio
import base64
import doctest
import io
import json
import threading
import time
import uuid
import wave
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import farm.io.media
from farm.domain.errors import TaskValidationError
from farm.domain.task import FrameImage
from farm.domain.validation import parse_task
from farm.gateway.grpc_service import AssetSink
from farm.io.artifacts import LocalArtifactStore
from farm.io.media import (
    MIN_VIDEO_PIXELS,
    MediaResolver,
    decode_audio,
    decode_image,
    decode_video,
    frame_positions,
    resolve_inputs,
)
from farm.io.urlguard import UrlGuard

LOOPBACK = UrlGuard(allow=["127.0.0.1"])
FIELD = "inputs.frameImages[2].image"


# -- media made in memory ---------------------------------------------------------------------


def picture(width: int = 40, height: int = 30) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 77)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def image_bytes(fmt: str, width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    picture(width, height).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def wav_bytes(seconds: float, rate: int = 8000, channels: int = 2) -> bytes:
    n = int(seconds * rate)
    tone = (np.sin(np.arange(n) * 2 * np.pi * 440 / rate) * 16000).astype("<i2")
    frames = np.repeat(tone[:, None], channels, axis=1)
    frames[:, -1] //= 2  # channels differ, so a swapped layout would show
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())
    return buffer.getvalue()


def pyav_audio(fmt: str, codec: str, seconds: float = 1.0, rate: int = 44100) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        samples = (np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 330 / rate) * 0.5).astype(np.float32)
        step = 1152
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            sample_format = "fltp" if codec == "libmp3lame" else "s16"
            data = chunk[None, :] if sample_format == "fltp" else (chunk * 32767).astype("<i2")[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def video_bytes(
    width: int = 1920,
    height: int = 972,
    frames: int = 3,
    fps: int = 24,
    fmt: str = "mp4",
    codec: str = "libx264",
    audio: bool = False,
    audio_seconds: float | None = None,
) -> bytes:
    """A small clip; flat colour frames so even 1080p encodes in milliseconds."""
    buffer = io.BytesIO()
    options = {"libx264": {"preset": "ultrafast"}, "libvpx": {"deadline": "realtime", "cpu-used": "8"}}
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options.get(codec, {}))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 200_000
        audio_stream = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for index in range(frames):
            rgb = np.full((height, width, 3), (index * 40 % 256, 120, 200), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            total = int(16000 * (frames / fps if audio_seconds is None else audio_seconds))
            for start in range(0, total, 1024):
                chunk = np.full((1, min(1024, total - start)), 0.25, dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = 16000
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return buffer.getvalue()


def violation_of(error: pytest.ExceptionInfo) -> str:
    return "\n".join(str(v) for v in error.value.violations)


# -- a real HTTP server on loopback -------------------------------------------------------------


@contextmanager
def serving(routes: dict):
    """An aiohttp server on 127.0.0.1 in its own thread; yields its base URL."""
    ready = threading.Event()
    state: dict = {}

    async def main() -> None:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


def static(body: bytes, content_type: str = "application/octet-stream"):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    return handler


# -- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_image_as_data_uri_and_bare_base64(fmt, mime):
    resolver = MediaResolver(guard=LOOPBACK)
    data = image_bytes(fmt)
    for ref in (data_uri(data, mime), base64.b64encode(data).decode()):
        image = decode_image(resolver.fetch(ref, FIELD), FIELD)
        assert image.shape == (30, 40, 3) and image.dtype == np.uint8
        expected = np.asarray(picture())
        tolerance = 0 if fmt in ("PNG", "WEBP") else 12
        assert np.abs(image.astype(int) - expected).max() <= tolerance


def test_image_over_http_from_loopback_server():
    data = image_bytes("PNG")
    with serving({"/a.png": static(data, "image/png")}) as base:
        fetched = MediaResolver(guard=LOOPBACK).fetch(f"{base}/a.png", FIELD)
    assert fetched == data
    assert decode_image(fetched, FIELD).shape == (30, 40, 3)


def test_url_connects_only_to_the_address_the_guard_vetted():
    """A name only the guard's resolver knows: the fetch works only if the vetted address is
    pinned (a second, system DNS lookup of ``media.test`` would fail)."""
    data = image_bytes("PNG")
    guard = UrlGuard(allow=["127.0.0.1"], resolver=lambda host, port: ["127.0.0.1"])
    with serving({"/a.png": static(data)}) as base:
        url = base.replace("127.0.0.1", "media.test") + "/a.png"
        assert MediaResolver(guard=guard).fetch(url, FIELD) == data


def test_guard_without_allow_list_refuses_loopback_naming_the_field():
    with serving({"/a.png": static(image_bytes("PNG"))}) as base:
        with pytest.raises(TaskValidationError) as error:
            MediaResolver(guard=UrlGuard()).fetch(f"{base}/a.png", FIELD)
    (violation,) = error.value.violations
    assert violation.field == FIELD and violation.code == "forbiddenURL"
    assert "loopback" in violation.message


def test_oversized_download_is_cut_off_while_streaming():
    sent = {"bytes": 0}

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        try:
            for _ in range(10_000):
                await response.write(b"\0" * 65536)
                sent["bytes"] += 65536
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 300_000)

    with serving({"/endless": endless, "/declared": declared}) as base:
        resolver = MediaResolver(guard=LOOPBACK, max_bytes=200_000)
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(f"{base}/endless", FIELD)
        assert "stopped reading" in violation_of(error) and error.value.violations[0].limit == 200_000
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(f"{base}/declared", FIELD)
        assert "300000 bytes" in violation_of(error)
    assert sent["bytes"] < 10_000 * 65536  # the reader hung up long before the server finished


def test_redirects_are_vetted_hop_by_hop():
    data = image_bytes("PNG")

    async def inside(request):
        raise web.HTTPFound("/a.png")

    async def outside(request):
        raise web.HTTPFound("http://10.1.2.3/secret")

    with serving({"/a.png": static(data), "/in": inside, "/out": outside}) as base:
        resolver = MediaResolver(guard=LOOPBACK)
        assert resolver.fetch(f"{base}/in", FIELD) == data
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(f"{base}/out", FIELD)
    assert "10.1.2.3" in violation_of(error) and "private" in violation_of(error)


def test_http_errors_and_timeouts_are_violations():
    async def slow(request):
        await asyncio.sleep(1.5)
        return web.Response(body=b"late")

    with serving({"/slow": slow}) as base:
        resolver = MediaResolver(guard=LOOPBACK, fetch_timeout_s=0.3)
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(f"{base}/missing", FIELD)
        assert "HTTP 404" in violation_of(error)
        started = time.monotonic()
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(f"{base}/slow", FIELD)
        assert time.monotonic() - started < 3
        assert "within 0.3 s" in violation_of(error)


def test_wrong_type_and_corrupt_images_are_named():
    with pytest.raises(TaskValidationError) as error:
        decode_image(wav_bytes(0.1), FIELD)
    assert violation_of(error).startswith(f"{FIELD}: is a WAV audio where an image (PNG/JPEG/WEBP) is expected")
    with pytest.raises(TaskValidationError) as error:
        decode_image(image_bytes("GIF"), FIELD)
    assert "GIF images are not accepted" in violation_of(error)
    with pytest.raises(TaskValidationError) as error:
        decode_image(image_bytes("PNG")[:60], FIELD)
    assert "corrupt or truncated" in violation_of(error)
    with pytest.raises(TaskValidationError) as error:
        decode_image(b"\x13\x37 not media at all", FIELD)
    assert violation_of(error) == f"{FIELD}: not a decodable image (PNG/JPEG/WEBP)"


def test_bad_strings_are_violations():
    resolver = MediaResolver(guard=LOOPBACK, max_bytes=1000)
    cases = {
        "not base64 at all!": "not a UUID, an http(s) URL, a data URI or valid base64",
        "data:image/png,rawtext": "only base64 data URIs",
        "ftp://example.com/a.png": "scheme 'ftp' is refused",
        base64.b64encode(b"\0" * 5000).decode(): "at most 1000 are accepted",
        str(uuid.uuid4()): "no uploaded asset or earlier result",
    }
    for ref, expected in cases.items():
        with pytest.raises(TaskValidationError) as error:
            resolver.fetch(ref, FIELD)
        assert error.value.violations[0].field == FIELD and expected in violation_of(error), ref


# -- video ------------------------------------------------------------------------------------


def test_minimum_size_mp4_with_audio_decodes():
    data = video_bytes(audio=True)
    clip = decode_video(data, "inputs.referenceVideos[0].video")
    assert (clip.format, clip.codec, clip.width, clip.height) == ("MP4", "h264", 1920, 972)
    assert clip.pixels == MIN_VIDEO_PIXELS and clip.fps == 24 and clip.num_frames == 3
    assert 0.1 < clip.duration < 0.2
    assert clip.has_audio and clip.audio.dtype == np.float32 and clip.audio.shape[0] == 1
    assert clip.audio_rate == 16000 and clip.audio.shape[1] > 1000
    small = list(clip.frames(size=(96, 48)))
    assert len(small) == 3 and small[0].shape == (48, 96, 3) and small[0].dtype == np.uint8
    assert abs(int(small[1][10, 10, 0]) - 40) < 8  # frame 1's red channel, through yuv420
    assert clip.last_frames(2, size=(96, 48)).shape == (2, 48, 96, 3)
    with pytest.raises(ValueError):
        clip.array(max_bytes=1000)


@pytest.mark.parametrize("fmt, codec, expected", [("webm", "libvpx", "WEBM"), ("mov", "mpeg4", "MOV")])
def test_webm_and_mov(fmt, codec, expected):
    clip = decode_video(video_bytes(frames=2, fmt=fmt, codec=codec), "v")
    assert clip.format == expected and (clip.width, clip.height) == (1920, 972)
    assert not clip.has_audio and clip.audio is None
    assert sum(1 for _ in clip.frames(size=(64, 32))) == 2


def test_video_below_minimum_pixels_is_refused_naming_limit_and_value():
    with pytest.raises(TaskValidationError) as error:
        decode_video(video_bytes(width=1920, height=970, frames=1), "inputs.referenceVideos[0].video")
    (violation,) = error.value.violations
    assert violation.field == "inputs.referenceVideos[0].video"
    assert violation.limit == 1_866_240 and violation.value == 1920 * 970
    assert "1920x970" in violation.message


def test_video_over_15_seconds_is_refused_from_metadata():
    started = time.monotonic()
    data = video_bytes(frames=17, fps=1)  # 17 s of 1080p at 1 fps: cheap to make and to check
    with pytest.raises(TaskValidationError) as error:
        decode_video(data, "inputs.referenceVideos[0].video")
    (violation,) = error.value.violations
    assert violation.limit == 15 and violation.value == pytest.approx(17, abs=0.1)
    assert "at most 15 s" in violation.message
    # Both limits at once: too long and too small.
    with pytest.raises(TaskValidationError) as error:
        decode_video(video_bytes(width=64, height=64, frames=17, fps=1), "v")
    assert [v.limit for v in error.value.violations] == [15, MIN_VIDEO_PIXELS]
    assert time.monotonic() - started < 20


def test_video_audio_track_longer_than_the_limit_is_cut_off_while_decoding():
    data = video_bytes(frames=2, audio=True, audio_seconds=20)  # video 2 frames, audio 20 s
    with pytest.raises(TaskValidationError) as error:
        decode_video(data, "inputs.referenceVideos[0].video")
    (violation,) = error.value.violations
    assert "audio track is longer than 15 s" in violation.message and violation.value < 17.5


def test_video_wrong_type_and_corrupt():
    with pytest.raises(TaskValidationError) as error:
        decode_video(image_bytes("PNG"), "inputs.referenceVideos[0].video")
    assert "is a PNG image where a video (MP4/MOV/WEBM) is expected" in violation_of(error)
    data = video_bytes(frames=2)
    with pytest.raises(TaskValidationError) as error:
        decode_video(data[:200], "inputs.referenceVideos[0].video")
    assert "corrupt or truncated" in violation_of(error)
    with pytest.raises(TaskValidationError):
        decode_video(wav_bytes(0.5), "v")


# -- audio ------------------------------------------------------------------------------------


def test_wav_decodes_to_float_channels():
    samples, rate = decode_audio(wav_bytes(1.0, rate=8000, channels=2), "a")
    assert rate == 8000 and samples.dtype == np.float32 and samples.shape == (2, 8000)
    assert samples[0].max() == pytest.approx(16000 / 32768, abs=1e-3)
    assert samples[1].max() == pytest.approx(8000 / 32768, abs=1e-3)


@pytest.mark.parametrize("fmt, codec", [("flac", "flac"), ("mp3", "libmp3lame")])
def test_flac_and_mp3(fmt, codec):
    samples, rate = decode_audio(pyav_audio(fmt, codec, seconds=1.0), "a")
    assert rate == 44100 and samples.shape[0] == 1
    assert samples.shape[1] == pytest.approx(44100, rel=0.05)
    assert 0.4 < np.abs(samples).max() < 0.6


def test_audio_limits_and_types():
    field = "inputs.referenceImages[0].audio"
    with pytest.raises(TaskValidationError) as error:
        decode_audio(wav_bytes(16.0, rate=4000, channels=1), field)
    (violation,) = error.value.violations
    assert violation.field == field and violation.limit == 15 and violation.value == pytest.approx(16)
    with pytest.raises(TaskValidationError) as error:
        decode_audio(image_bytes("JPEG"), field)
    assert "is a JPEG image where an audio (MP3/WAV/FLAC) is expected" in violation_of(error)
    with pytest.raises(TaskValidationError) as error:
        decode_audio(b"fLaC" + bytes(range(256)) * 4, field)
    assert violation_of(error).startswith(field)


# -- UUIDs: uploaded assets and earlier results --------------------------------------------------


def store_asset(assets_dir: Path, data: bytes, api_key: str | None) -> str:
    """An asset in the layout UploadAsset writes: ``<uuid>`` + ``<uuid>.json`` naming the key."""
    sink = AssetSink(assets_dir)
    asset_uuid = str(uuid.uuid4())
    assets_dir.mkdir(parents=True, exist_ok=True)
    sink.path(asset_uuid).write_bytes(data)
    sink.path(asset_uuid).with_suffix(".json").write_text(
        json.dumps(
            {
                "assetUUID": asset_uuid,
                "size": len(data),
                "contentType": "image/png",
                "filename": "a.png",
                "apiKey": api_key,
            }
        )
    )
    return asset_uuid


def test_uploaded_asset_is_visible_to_its_owner_only(tmp_path):
    data = image_bytes("PNG")
    owned = store_asset(tmp_path / "assets", data, "k1")
    public = store_asset(tmp_path / "assets", data, None)
    mine = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path / "assets", api_key="k1")
    theirs = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path / "assets", api_key="k2")
    assert mine.fetch(owned, FIELD) == data
    assert mine.fetch(owned.upper(), FIELD) == data
    assert theirs.fetch(public, FIELD) == data
    with pytest.raises(TaskValidationError) as error:
        theirs.fetch(owned, FIELD)
    assert "no uploaded asset or earlier result with this UUID" in violation_of(error)


def test_earlier_result_video_uuid_via_artifact_store(tmp_path):
    now = [1000.0]
    store = LocalArtifactStore(tmp_path / "videos", clock=lambda: now[0])
    source = tmp_path / "result.mp4"
    source.write_bytes(video_bytes(frames=2))
    video_uuid = str(uuid.uuid4())
    store.put(video_uuid, source, "video/mp4", ttl_s=60)
    # max_bytes binds client media, not the farm's own results (they stay extendable).
    resolver = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path / "assets", artifacts=store, max_bytes=100)
    clip = decode_video(resolver.fetch(video_uuid, "inputs.referenceVideos[0].video"), "v")
    assert (clip.width, clip.num_frames) == (1920, 2)
    now[0] = 2000.0
    with pytest.raises(TaskValidationError) as error:
        resolver.fetch(video_uuid, "inputs.referenceVideos[0].video")
    assert "has expired" in violation_of(error)
    store.close()


# -- frame positions ----------------------------------------------------------------------------


def test_frame_position_rules():
    assert frame_positions(["a"], 160) == [0]
    assert frame_positions(["a", "b"], 160) == [0, 159]
    assert frame_positions(["a", "b", "c", "d"], 10) == [0, 3, 6, 9]
    objects = [
        FrameImage(image="a", frame="last"),
        FrameImage(image="b", frame=7),
        FrameImage(image="c", frame="first"),
    ]
    assert frame_positions(objects, 160) == [159, 7, 0]
    # Mixed: a plain string keeps the slot an all-plain list would give its list index.
    assert frame_positions(["a", FrameImage(image="b", frame=40), "c"], 161) == [0, 40, 160]
    with pytest.raises(TaskValidationError) as error:
        frame_positions(["a", FrameImage(image="b", frame="first")], 10)
    assert [v.field for v in error.value.violations] == ["inputs.frameImages[1].frame"]
    with pytest.raises(TaskValidationError) as error:
        frame_positions([FrameImage(image="a", frame=10)], 10)
    assert error.value.violations[0].limit == 9
    with pytest.raises(TaskValidationError):
        frame_positions(["a", "b", "c"], 2)  # more plain images than frames


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), st.integers(1, 500))
def test_plain_positions_property(k, n):
    if k > n:
        with pytest.raises(TaskValidationError):
            frame_positions(["x"] * k, n)
        return
    positions = frame_positions([f"img{i}" for i in range(k)], n)
    assert all(0 <= p < n for p in positions)
    assert positions[0] == 0
    if k >= 2:
        assert positions[-1] == n - 1
    assert all(a < b for a, b in zip(positions, positions[1:]))
    step = (n - 1) / (k - 1) if k > 1 else 0
    assert all(abs(p - i * step) <= 0.5 for i, p in enumerate(positions))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mixed_positions_property(data):
    n = data.draw(st.integers(2, 300))
    k = data.draw(st.integers(1, 8))
    items = []
    for _ in range(k):
        frame = data.draw(st.one_of(st.none(), st.sampled_from(["first", "last"]), st.integers(0, n - 1)))
        items.append("x" if frame is None else FrameImage(image="x", frame=frame))
    try:
        positions = frame_positions(items, n)
    except TaskValidationError as error:
        assert all(v.field.startswith("inputs.frameImages[") for v in error.violations)
        return
    assert len(set(positions)) == k and all(0 <= p < n for p in positions)
    for item, position in zip(items, positions):
        if isinstance(item, FrameImage):
            assert position == {"first": 0, "last": n - 1}.get(item.frame, item.frame)


# -- whole tasks ----------------------------------------------------------------------------------


def task_with(inputs: dict, prompt: str = "a scene with @hero") -> object:
    return parse_task(
        {
            "taskType": "videoInference",
            "taskUUID": str(uuid.uuid4()),
            "model": "skywork:skyreels@v4",
            "positivePrompt": prompt,
            "duration": 3,
            "resolution": "480p",
            "inputs": inputs,
        }
    )


def test_resolve_inputs_frames_and_reference_groups(tmp_path):
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG", 20, 10)
    asset = store_asset(tmp_path / "assets", image_bytes("WEBP", 8, 8), "k1")
    task = task_with(
        {
            "frameImages": [data_uri(png, "image/png"), {"image": asset, "frame": 30}, base64.b64encode(jpeg).decode()],
            "referenceImages": [
                {
                    "type": "image",
                    "tag": "@hero",
                    "images": [data_uri(png, "image/png")],
                    "audio": data_uri(wav_bytes(0.5), "audio/wav"),
                }
            ],
        }
    )
    resolver = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path / "assets", api_key="k1")
    resolved = resolve_inputs(task, resolver)
    last = task.num_frames - 1
    assert [(p.frame, p.index, p.image.shape) for p in resolved.frame_images] == [
        (0, 0, (30, 40, 3)),
        (30, 1, (8, 8, 3)),
        (last, 2, (10, 20, 3)),
    ]
    (group,) = resolved.reference_images
    assert group.tag == "@hero" and group.images[0].shape == (30, 40, 3)
    assert group.audio.rate == 8000 and group.audio.channels == 2 and group.audio.duration == 0.5
    assert resolved.reference_video is None and not resolved.empty


def test_resolve_inputs_collects_every_violation():
    task = task_with(
        {
            "frameImages": ["bm90IGFuIGltYWdl", {"image": data_uri(wav_bytes(0.1), "image/png"), "frame": "last"}],
            "referenceImages": [
                {
                    "type": "image",
                    "tag": "@hero",
                    "images": [data_uri(image_bytes("PNG"), "image/png"), data_uri(image_bytes("GIF"), "image/gif")],
                    "audio": data_uri(wav_bytes(16, rate=2000, channels=1), "audio/wav"),
                }
            ],
        }
    )
    with pytest.raises(TaskValidationError) as error:
        resolve_inputs(task, MediaResolver(guard=LOOPBACK))
    fields = [v.field for v in error.value.violations]
    assert fields == [
        "inputs.frameImages[0]",
        "inputs.frameImages[1].image",
        "inputs.referenceImages[0].images[1]",
        "inputs.referenceImages[0].audio",
    ]
    assert error.value.task_uuid == task.task_uuid


def test_resolve_inputs_reference_video_by_url():
    data = video_bytes(frames=2, audio=True)
    with serving({"/clip.mp4": static(data, "video/mp4")}) as base:
        task = task_with({"referenceVideos": [{"type": "extend", "tag": "@hero", "video": f"{base}/clip.mp4"}]})
        resolved = resolve_inputs(task, MediaResolver(guard=LOOPBACK))
    video = resolved.reference_video
    assert video.type == "extend" and video.clip.has_audio and video.clip.num_frames == 2


def test_resolve_inputs_from_inside_a_running_loop():
    task = task_with({"frameImages": [data_uri(image_bytes("PNG"), "image/png")]})

    async def main():
        return resolve_inputs(task, MediaResolver(guard=LOOPBACK))

    assert asyncio.run(main()).frame_images[0].frame == 0


def test_doctests():
    assert doctest.testmod(farm.io.media).failed == 0
