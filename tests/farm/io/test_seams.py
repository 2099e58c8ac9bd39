"""The seam metric on synthetic clips written with PyAV: no seam, a hard cut, a crossfade."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

import farm.io.seams
from farm.domain.errors import PlanError
from farm.io.seams import (
    CUT_THRESHOLD,
    FrameStats,
    SeamSpan,
    frame_stats,
    main,
    measure_file,
    measure_seams,
    parse_seams,
    planned_seams,
    read_frame_stats,
)

FRAMES, HEIGHT, WIDTH = 96, 64, 128
#: Seams of the planner's 17/5 cut of 96 frames (97 on the grid): 12-16, 24-28, ..., 72-76, and
#: the end-aligned last window's 80-88.
SEAMS = [SeamSpan(first=s, last=s + 4) for s in range(12, 84, 12)] + [SeamSpan(first=80, last=88)]
#: How far from 1 a seamless clip's ratios may read: a sinusoid sliding one pixel a frame has a
#: constant frame difference, up to rounding (lossless) and H.264 noise (measured <= 1.04).
TOLERANCE = 0.06


def pattern(t: np.ndarray, *, period: float = 32.0, speed: float = 1.0, vertical: bool = False) -> np.ndarray:
    """uint8 ``[len(t), HEIGHT, WIDTH, 3]``: a grey sinusoid sliding ``speed`` pixels a frame."""
    y = np.arange(HEIGHT)[None, :, None]
    x = np.arange(WIDTH)[None, None, :]
    t = np.asarray(t, dtype=np.float64)[:, None, None]
    along, across = (y, x) if vertical else (x, y)
    picture = 128 + 80 * np.sin(2 * np.pi * (along - speed * t) / period) * np.cos(2 * np.pi * across / 128)
    return np.repeat(np.round(picture)[..., None], 3, axis=-1).astype(np.uint8)


def write(path: Path, frames: np.ndarray) -> Path:
    """``.mkv``: lossless FFV1 (RGB); ``.mp4``: H.264 yuv420p, CRF 18."""
    lossless = path.suffix == ".mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1" if lossless else "libx264", rate=32)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0" if lossless else "yuv420p"
        if not lossless:
            stream.options = {"crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def smooth() -> np.ndarray:
    return pattern(np.arange(FRAMES))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_smooth_clip_reads_no_seam(tmp_path, smooth, suffix):
    report = measure_file(write(tmp_path / f"smooth{suffix}", smooth), chunks=(17, 5, 4))
    assert [m.span for m in report.seams] == SEAMS
    for m in report.seams + report.placebos:
        assert abs(m.sjr - 1) < TOLERANCE, m
        assert abs(m.contrast_dip - 1) < TOLERANCE, m
    # One in every interior that holds 5 frames and a margin: not 77-79 (between 72-76 and 80-88).
    assert [str(m.span) for m in report.placebos] == ["3-7"] + [f"{s}-{s + 4}" for s in range(18, 78, 12)] + ["90-94"]
    assert report.cuts == 0


def test_hard_cut_at_a_seam_is_one_cut(tmp_path, smooth):
    frames = smooth.copy()
    frames[26:] = pattern(np.arange(26, FRAMES), period=20.0, vertical=True)  # another picture from frame 26
    report = measure_file(write(tmp_path / "cut.mp4", frames), seams=SEAMS)
    cut = report.seams[1]
    assert cut.span == SeamSpan(first=24, last=28)
    assert cut.sjr >= CUT_THRESHOLD and report.sjr_max == cut.sjr
    assert report.cuts == 1
    assert all(abs(m.sjr - 1) < 0.3 for i, m in enumerate(report.seams) if i != 1)
    assert all(abs(m.sjr - 1) < 0.3 for m in report.placebos)


def test_crossfade_between_two_pictures_dips_in_contrast(tmp_path, smooth):
    """Ghosting: the middle of a crossfade between unrelated pictures has less contrast than either."""
    frames = smooth.astype(np.float64)
    other = pattern(np.arange(FRAMES), period=20.0, vertical=True).astype(np.float64)
    fade = np.clip((np.arange(FRAMES) - 35) / 6, 0, 1)[:, None, None, None]  # 0 up to frame 35, 1 from 41
    frames = np.round((1 - fade) * frames + fade * other).astype(np.uint8)
    report = measure_file(write(tmp_path / "fade.mkv", frames), seams=parse_seams("12-16,36-40,60-64"))
    dips = [m.contrast_dip for m in report.seams]
    assert dips[1] < 0.85  # sqrt(1/2) for two uncorrelated pictures of equal contrast, at the middle
    assert abs(dips[0] - 1) < TOLERANCE and abs(dips[2] - 1) < TOLERANCE
    assert report.dip_min == dips[1]
    assert report.cuts == 0  # a crossfade is not a cut


def test_file_stats_equal_in_memory_stats_for_a_lossless_file(tmp_path, smooth):
    from_file = read_frame_stats(write(tmp_path / "smooth.mkv", smooth))
    in_memory = frame_stats(smooth)
    assert from_file.num_frames == FRAMES
    assert np.array_equal(from_file.diffs, in_memory.diffs) and np.array_equal(from_file.stds, in_memory.stds)


def test_planned_seams_follow_the_planner():
    assert planned_seams(96, 17, 5) == SEAMS
    # 480 frames: the last, end-aligned window overlaps its predecessor by 9 frames.
    assert planned_seams(480, 17, 5)[-1] == SeamSpan(first=464, last=472)
    assert planned_seams(17, 17, 5) == []  # one window: no seam
    with pytest.raises(PlanError, match="window_frames must be k\\*4\\+1, got 16"):
        planned_seams(96, 16, 5)


def test_seams_are_merged_and_checked():
    stats = frame_stats(pattern(np.arange(40)))
    report = measure_seams(stats, parse_seams("20-24,10-14,14-16"))
    assert [m.span for m in report.seams] == [SeamSpan(first=10, last=16), SeamSpan(first=20, last=24)]
    with pytest.raises(ValueError, match="seam 38-45 is past the clip's last frame 39"):
        measure_seams(stats, parse_seams("38-45"))
    with pytest.raises(ValueError, match="seam 1-38 has no interior frames"):
        measure_seams(stats, parse_seams("1-38"))
    for text in ("12-x", "16-12", ""):
        with pytest.raises(ValueError):
            parse_seams(text)


def test_static_stretches():
    still = np.full((30, 8, 8, 3), 100, np.uint8)
    assert measure_seams(frame_stats(still), parse_seams("10-14")).sjr_max == 1.0
    cut = still.copy()
    cut[12:] = 200
    report = measure_seams(frame_stats(cut), parse_seams("10-14"))
    assert report.sjr_max == math.inf and report.cuts == 1
    assert report.to_dict()["sjr_max"] is None  # JSON has no infinity


def test_no_seams_reads_nan():
    report = measure_seams(FrameStats(diffs=np.ones(9), stds=np.ones(10)), [])
    assert report.seams == () and report.placebos == () and report.cuts == 0
    assert math.isnan(report.sjr_max)


def test_cli_table_and_json(tmp_path, smooth, capsys):
    frames = smooth.copy()
    frames[26:] = pattern(np.arange(26, FRAMES), period=20.0, vertical=True)
    path = write(tmp_path / "cut.mkv", frames)
    assert main([str(path), "--chunks", "17,5"]) == 0
    table = capsys.readouterr().out
    assert "24-28" in table and "cut" in table and "cuts 1 (SJR >= 3)" in table
    assert main([str(path), "--seams", "24-28", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cuts"] == 1 and data["seams"][0]["span"] == [24, 28] and data["num_frames"] == FRAMES


def test_cli_errors(tmp_path, smooth, capsys):
    path = write(tmp_path / "smooth.mkv", smooth)
    assert main([str(tmp_path / "missing.mp4"), "--seams", "1-2"]) == 2
    assert main([str(path), "--seams", "90-99"]) == 2
    assert "past the clip's last frame 95" in capsys.readouterr().err
    assert main([str(path), "--chunks", "17"]) == 2
    assert "WINDOW,OVERLAP" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path)])  # --chunks or --seams is required


def test_docstring_examples():
    assert doctest.testmod(farm.io.seams).failed == 0
