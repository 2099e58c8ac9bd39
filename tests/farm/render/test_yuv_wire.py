"""Frames cross the object store as yuv420p planes and reach the file as today's RGB path makes it.

Workers convert a chunk's RGB frames into ``Yuv420Frames`` (half the bytes) after the safety check;
the finisher blends and resizes the planes and the encoder takes them as they are. What a user
would notice if it broke: more bytes per chunk, a file that looks different from the RGB path, an
``on_frames`` hook that gets something other than RGB at the output size, a sequential chunk or a
safety check fed planes. No Ray here: the worker class runs in-process with the toy GP model.
"""

from __future__ import annotations

import dataclasses
import pickle

import av
import numpy as np
import pytest
import torch

from farm.domain.planner import plan_clip
from farm.io.encode import ResultEncoder, rgb_to_yuv420p_planes
from farm.render.codenoise import codenoise_reference, plan_windows, stitch_windows
from farm.render.executor import FinishSpec
from farm.render.finisher import FinisherCore
from farm.workers.actors import VideoWorker, frames_from_wire, frames_to_wire
from farm.workers.messages import (
    WIRE_FORMAT_ENV,
    ChunkWork,
    Yuv420Frames,
    resolve_wire_format,
    wire_format_for,
)
from kernels.blend import blend_frames
from kernels.resize import resize_plane_torch
from models.toy_gp import TOY_STEPS, ToyGPBackend, toy_gp_profile

#: The toy model's native size for 16:9 at 480p, and the farm's 480p output size.
NATIVE = (224, 128)
OUTPUT = (848, 480)
PROMPT = "A lighthouse on a cliff at dusk"


def wire_bytes(obj) -> int:
    """Bytes ``obj`` takes in Ray's object store: pickle protocol 5 with numpy buffers out of band,
    as Ray serializes them."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(header) + sum(b.raw().nbytes for b in buffers)


def work(chunk, wire_format=None, **fields) -> ChunkWork:
    return ChunkWork(
        task_uuid="t",
        result_index=0,
        chunk=chunk,
        seed=3,
        width=NATIVE[0],
        height=NATIVE[1],
        num_inference_steps=TOY_STEPS,
        guidance_scale=1.0,
        wire_format=wire_format,
        **fields,
    )


@pytest.fixture(scope="module")
def worker() -> VideoWorker:
    return VideoWorker(toy_gp_profile())


@pytest.fixture(scope="module")
def plan():
    return plan_clip(40, window_frames=17, overlap_frames=5, temporal_stride=4)


@pytest.fixture(scope="module")
def rgb_chunks(worker, plan) -> list[np.ndarray]:
    """Every chunk of a 40-frame clip, rendered once, as the RGB path ships them."""
    prompt = worker.encode_prompt(PROMPT)
    return [worker.chunk(work(c, "rgb"), prompt)[1] for c in plan.chunks]


def finish(tmp_path, plan, chunks, wire_format, *, size=OUTPUT, fmt="MP4", quality=99, on_frames=None) -> str:
    """Finish a result from RGB chunks sent as ``wire_format`` (``frames_to_wire``, as a worker
    sends them); returns the file."""
    core = FinisherCore(on_frames=on_frames)
    path = str(tmp_path / f"{wire_format}-{size[0]}x{size[1]}.{fmt.lower()}")
    spec = FinishSpec(
        path=path,
        output_format=fmt,
        quality=quality,
        width=size[0],
        height=size[1],
        fps=32,
        audio=False,
        plan=plan,
    )
    core.open(("t", 0), spec)
    for index, frames in enumerate(chunks):
        core.add_chunk(("t", 0), index, frames_to_wire(frames, wire_format))
    return core.finish(("t", 0)).path


def decoded_planes(path) -> list[np.ndarray]:
    """The decoded yuv420p planes of every frame: ``[y, u, v]``, each ``[n, h, w]``."""
    planes: list[list[np.ndarray]] = [[], [], []]
    with av.open(path) as container:
        for frame in container.decode(video=0):
            assert frame.format.name == "yuv420p"
            for out, plane in zip(planes, frame.planes):
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                out.append(rows[:, : plane.width].copy())
    return [np.stack(p) for p in planes]


def encoder_inputs(monkeypatch) -> list:
    """Record what the encoder is given, as yuv420p planes (RGB converted as ``write_frames`` does)."""
    seen: list[tuple[np.ndarray, ...]] = []
    write_frames, write_yuv420p = ResultEncoder.write_frames, ResultEncoder.write_yuv420p

    def frames(self, rgb):
        seen.append(rgb_to_yuv420p_planes(np.asarray(rgb)))
        write_frames(self, rgb)

    def planes(self, y, u, v):
        seen.append(tuple(np.asarray(p).copy() for p in (y, u, v)))
        write_yuv420p(self, y, u, v)

    monkeypatch.setattr(ResultEncoder, "write_frames", frames)
    monkeypatch.setattr(ResultEncoder, "write_yuv420p", planes)
    return seen


def joined(blocks) -> list[np.ndarray]:
    return [np.concatenate([b[k] for b in blocks]) for k in range(3)]


def absdiff(a, b) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# -- the worker ---------------------------------------------------------------------------------


def test_a_chunk_crosses_the_object_store_in_half_the_bytes(worker, plan):
    prompt = worker.encode_prompt(PROMPT)
    meta_rgb, rgb = worker.chunk(work(plan.chunks[0], "rgb"), prompt)
    meta_yuv, yuv = worker.chunk(work(plan.chunks[0], "yuv420p"), prompt)
    assert isinstance(rgb, np.ndarray) and rgb.shape == (17, 128, 224, 3)
    assert isinstance(yuv, Yuv420Frames) and (len(yuv), yuv.height, yuv.width) == (17, 128, 224)
    assert yuv.u.shape == yuv.v.shape == (17, 64, 112)
    ratio = wire_bytes(yuv) / wire_bytes(rgb)
    assert ratio <= 0.52, f"yuv420p is {ratio:.3f}x of RGB on the wire"
    assert meta_yuv.num_frames == meta_rgb.num_frames == 17
    assert wire_bytes(meta_yuv) < 1024, "the metadata the scheduler reads stays small"
    # On a CPU worker the planes are swscale's own conversion: what the encoder made of RGB.
    assert yuv == Yuv420Frames(*rgb_to_yuv420p_planes(rgb))


def test_the_wire_format_comes_from_the_work_then_the_environment(worker, plan, monkeypatch):
    prompt = worker.encode_prompt(PROMPT)
    monkeypatch.delenv(WIRE_FORMAT_ENV, raising=False)
    assert resolve_wire_format() == "yuv420p"
    monkeypatch.setenv(WIRE_FORMAT_ENV, "rgb")
    assert isinstance(worker.chunk(work(plan.chunks[0]), prompt)[1], np.ndarray)
    assert isinstance(worker.chunk(work(plan.chunks[0], "yuv420p"), prompt)[1], Yuv420Frames)
    monkeypatch.setenv(WIRE_FORMAT_ENV, "nv12")
    with pytest.raises(ValueError, match=r"FARM_WIRE_FORMAT must be one of .*'nv12'"):
        worker.chunk(work(plan.chunks[0]), prompt)
    assert wire_format_for("MOV") == "rgb" and wire_format_for("MP4", sequential=True) == "rgb"
    assert wire_format_for("MP4") is None and wire_format_for("WEBM") is None


def test_the_safety_checker_sees_the_rgb_frames(plan):
    seen = []

    class Checker:
        def check(self, frames):
            from models.safety import SafetyVerdict

            seen.append(np.array(frames))
            return SafetyVerdict(flagged=False, concept=None, score=0.1, frame=None)

    profile = dataclasses.replace(toy_gp_profile(), safety_factory=Checker)
    worker = VideoWorker(profile)
    meta, frames = worker.chunk(work(plan.chunks[0], "yuv420p", safety_mode="full"), worker.encode_prompt(PROMPT))
    assert isinstance(frames, Yuv420Frames) and meta.safety is not None and not meta.safety.flagged
    [checked] = seen
    assert checked.shape == (17, 128, 224, 3) and checked.dtype == np.uint8
    assert Yuv420Frames(*rgb_to_yuv420p_planes(checked)) == frames


class _RecordingToy(ToyGPBackend):
    """The toy model, claiming to take conditioning: keeps what each chunk was given."""

    supports_conditioning = True

    def __init__(self):
        super().__init__()
        self.conditioning = []

    def render_chunk(self, request, on_step=None):
        self.conditioning.append(request.conditioning)
        return super().render_chunk(dataclasses.replace(request, conditioning=None), on_step)


def test_a_tail_sent_as_planes_conditions_the_next_chunk_with_rgb(plan):
    worker = VideoWorker(dataclasses.replace(toy_gp_profile(), video_factory=_RecordingToy))
    prompt = worker.encode_prompt(PROMPT)
    first, second = plan.chunks[0], plan.chunks[1]
    _, tail = worker.chunk(work(first, "yuv420p"), prompt)
    worker.chunk(work(second, "yuv420p", tail_start=first.start), prompt, tail=tail)
    known = worker._backend.conditioning[-1].frames
    assert sorted(known) == list(range(first.end - second.start))
    rgb = frames_from_wire(tail)
    for local, frame in known.items():
        assert frame.shape == (128, 224, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, rgb[second.start + local - first.start])
    # And the planes come back to within a few levels of what the model made.
    _, made = VideoWorker(toy_gp_profile()).chunk(work(first, "rgb"), prompt)
    assert absdiff(rgb, made).mean() < 1.5


def test_codenoise_windows_travel_as_planes_and_stitch_back_to_rgb():
    backend = ToyGPBackend()
    windows = plan_windows(24, window_frames=17, overlap_frames=5)
    settings = dict(
        prompt=backend.encode_prompt(PROMPT),
        seed=7,
        width=NATIVE[0],
        height=NATIVE[1],
        num_inference_steps=TOY_STEPS,
        guidance_scale=1.0,
    )
    planes = codenoise_reference(backend, windows, **settings)
    rgb = codenoise_reference(backend, windows, wire_format="rgb", **settings)
    assert all(isinstance(w, Yuv420Frames) for w in planes) and all(isinstance(w, np.ndarray) for w in rgb)
    assert [Yuv420Frames(*rgb_to_yuv420p_planes(w)) for w in rgb] == planes
    from_planes, from_rgb = stitch_windows(windows, planes), stitch_windows(windows, rgb)
    assert from_planes.shape == from_rgb.shape == (24, 128, 224, 3)
    assert absdiff(from_planes, from_rgb).mean() < 1.5


# -- the finisher: the YUV path against today's RGB path ----------------------------------------


def overlap_frames(plan) -> set[int]:
    return {f for f in range(plan.num_frames) if len(plan.chunks_covering(f)) > 1}


def test_without_a_resize_the_encoder_gets_the_rgb_paths_planes_within_1_level(tmp_path, plan, rgb_chunks, monkeypatch):
    """At the native size the two paths differ only by where the blend rounds: planes equal to the
    RGB path's within 1 level, and only on frames where chunks overlap."""
    seen = encoder_inputs(monkeypatch)
    finish(tmp_path, plan, rgb_chunks, "rgb", size=NATIVE)
    rgb_path = joined(seen)
    seen.clear()
    finish(tmp_path, plan, rgb_chunks, "yuv420p", size=NATIVE)
    yuv_path = joined(seen)
    outside = sorted(set(range(plan.num_frames)) - overlap_frames(plan))
    for a, b in zip(rgb_path, yuv_path):
        assert a.shape == b.shape and int(absdiff(a, b).max()) <= 1
        np.testing.assert_array_equal(a[outside], b[outside])


def test_with_a_resize_luma_stays_within_2_levels_and_chroma_keeps_the_native_resolution(
    tmp_path, plan, rgb_chunks, monkeypatch
):
    """Resized at the finisher, luma stays within 2 levels (two roundings); chroma was subsampled
    at the native size, so it holds native/2 detail instead of output/2 (measured on the toy model
    224x128 -> 848x480: max 9, mean 0.47)."""
    seen = encoder_inputs(monkeypatch)
    finish(tmp_path, plan, rgb_chunks, "rgb")
    (y0, u0, v0) = joined(seen)
    seen.clear()
    finish(tmp_path, plan, rgb_chunks, "yuv420p")
    (y1, u1, v1) = joined(seen)
    assert y0.shape == y1.shape == (40, 480, 848) and u1.shape == (40, 240, 424)
    assert int(absdiff(y0, y1).max()) <= 2
    assert absdiff(y0, y1).mean() < 0.35
    for a, b in ((u0, u1), (v0, v1)):
        assert absdiff(a, b).mean() < 0.6 and int(absdiff(a, b).max()) <= 12


def test_a_render_through_the_yuv_path_decodes_like_the_rgb_path(tmp_path, plan, rgb_chunks):
    """Decoded, the two files differ by what x264 makes of inputs 1-2 levels apart (it does not
    even give the same bytes twice for the same small frames): per-plane mean |difference| under
    1 level, and the same luma fidelity to the rendered frames within 1 dB."""
    rgb_file = finish(tmp_path, plan, rgb_chunks, "rgb")
    yuv_file = finish(tmp_path, plan, rgb_chunks, "yuv420p")
    rgb_planes, yuv_planes = decoded_planes(rgb_file), decoded_planes(yuv_file)
    for a, b in zip(rgb_planes, yuv_planes):
        assert a.shape == b.shape and len(a) == 40
        assert absdiff(a, b).mean() < 1.0
    # Fidelity to the rendered frames, each path against its own encoder input converted the
    # RGB path's way: PSNR on luma.
    from farm.render.stitch import Stitcher
    from kernels.resize import resize_frames

    stitcher = Stitcher(plan)
    rendered = torch.cat(
        [resize_frames(b, *OUTPUT) for i, c in enumerate(rgb_chunks) if (b := stitcher.add(i, c)) is not None]
    )
    source = rgb_to_yuv420p_planes(rendered.numpy())[0]

    def psnr(decoded):
        return 10 * np.log10(255**2 / np.mean((decoded.astype(np.float64) - source) ** 2))

    assert abs(psnr(rgb_planes[0]) - psnr(yuv_planes[0])) < 1.0


def test_on_frames_gets_rgb_at_the_output_size_close_to_the_rgb_path(tmp_path, plan, rgb_chunks):
    got: dict[str, list] = {"rgb": [], "yuv420p": []}
    for wire in got:
        finish(
            tmp_path, plan, rgb_chunks, wire, on_frames=lambda _r, first, frames, w=wire: got[w].append((first, frames))
        )
    firsts = [first for first, _ in got["yuv420p"]]
    assert firsts == [first for first, _ in got["rgb"]] and firsts[0] == 0
    for _, frames in got["yuv420p"]:
        assert (
            isinstance(frames, torch.Tensor)
            and frames.dtype == torch.uint8
            and tuple(frames.shape[1:]) == (480, 848, 3)
        )
    rgb = torch.cat([f for _, f in got["rgb"]]).numpy()
    yuv = torch.cat([f for _, f in got["yuv420p"]]).numpy()
    assert yuv.shape == rgb.shape == (40, 480, 848, 3)
    assert absdiff(rgb, yuv).mean() < 1.5


def test_mov_is_encoded_from_planes_too(tmp_path, plan, rgb_chunks):
    """MOV results should travel as RGB (``wire_format_for``); sent planes, the finisher still
    writes a ProRes 4:2:2 file from them."""
    path = finish(tmp_path, plan, rgb_chunks, "yuv420p", size=NATIVE, fmt="MOV", quality=80)
    with av.open(path) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 40 and frames[0].format.name == "yuv422p10le"


def test_a_result_cannot_mix_wire_formats(tmp_path, plan, rgb_chunks):
    core = FinisherCore()
    spec = FinishSpec(
        path=str(tmp_path / "mixed.mp4"),
        output_format="MP4",
        quality=80,
        width=NATIVE[0],
        height=NATIVE[1],
        fps=32,
        audio=False,
        plan=plan,
    )
    core.open(("t", 0), spec)
    core.add_chunk(("t", 0), 0, frames_to_wire(rgb_chunks[0], "yuv420p"))
    with pytest.raises(ValueError, match="chunk 1 arrived as rgb, the result's earlier chunks as yuv420p"):
        core.add_chunk(("t", 0), 1, rgb_chunks[1])
    assert list(tmp_path.iterdir()) == [], "the failed result leaves no file"


# -- kernels: planes -----------------------------------------------------------------------------


def test_planes_blend_with_the_frames_weights():
    rng = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8, generator=rng) for _ in range(2))
    w = torch.tensor([0.25, 0.5, 0.9])
    out = blend_frames([a, b], [w, 1 - w])
    want = (a.double() * w.double().view(-1, 1, 1) + b.double() * (1 - w.double()).view(-1, 1, 1)).round()
    assert int((out.double() - want).abs().max()) <= 1 and out.shape == (3, 6, 8)


@pytest.mark.parametrize("size, out", [((37, 23), (64, 40)), ((16, 12), (6, 5)), ((9, 7), (9, 7))])
def test_plane_resize_twin_matches_the_reference(size, out):
    pytest.importorskip("triton")
    import kernels.triton_kernels as twins

    if not twins.INTERPRETED:
        pytest.skip("kernels.triton_kernels was imported before TRITON_INTERPRET=1 was set")
    planes = torch.randint(0, 256, (2, size[1], size[0]), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got, want = twins.resize_plane_triton(planes, *out), resize_plane_torch(planes, *out)
    assert got.shape == want.shape == (2, out[1], out[0])
    assert int((got.int() - want.int()).abs().max()) <= 1
