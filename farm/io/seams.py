"""Seam metrics: how visible are the joins between a clip's temporal chunks?

A chunked render blends overlapping chunks; where the chunks disagree, the join shows as a jump in
motion (a flash or a cut) or as a dip in contrast (two different pictures crossfaded: ghosting).
These metrics read any video file with PyAV, so they apply to any clip, not only the farm's.

Per frame ``t`` the file gives ``d(t) = mean |F(t+1) - F(t)|`` (all pixels and RGB channels, 0-255)
and ``c(t)``, the frame's standard deviation. Seams are frame spans ``[a, b]`` (inclusive, the
overlap of two chunks); the frames between seams are the chunks' interiors. Per seam:

- **SJR** (seam jump ratio): ``max d(t)`` over the span widened by one frame on each side
  (``t = a-1 .. b``: every frame difference that touches the span) over the median of ``d`` inside
  the two adjacent interiors (differences between interior frames only). About 1 where the join is
  invisible; a hard cut gives the cut's jump over the typical motion.
- **Placebo SJR**: the same statistic for a span of the seams' width (with its one-frame margin)
  in the middle of each chunk interior long enough to hold it, where there is no seam, over the
  median of that interior and its neighbours: what SJR reads on this clip by chance (the ``max``
  of a few differences over a median is above 1 even on a seamless clip).
- **Contrast dip**: ``c`` at the middle of the span (the mean of the two middle frames for an even
  width) over the median ``c`` of the two adjacent interiors. Below 1 means ghosting.
- **Cut**: ``SJR >= 3``, PySceneDetect's default content threshold.

Seams come from the planner (``--chunks WINDOW,OVERLAP[,TEMPORAL_STRIDE]``: the frames that two
or more of the plan's chunks cover) or are given (``--seams 12-16,24-28``). Used as ``farm seams``::

    farm seams out/clip.mp4 --chunks 17,5
    farm seams clip.mov --seams 12-16,24-28 --json

A static stretch (median difference 0) gives an infinite SJR for any change at the seam (``inf``
in the table, ``null`` in JSON) and 1.0 when the seam is static too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from farm.domain.planner import plan_clip

#: SJR at or above which a seam counts as a cut (PySceneDetect's ``ContentDetector`` default).
CUT_THRESHOLD = 3.0


@dataclass(frozen=True, kw_only=True)
class FrameStats:
    """Per-frame statistics of a clip: all the seam metrics need, whatever the clip's size."""

    #: ``diffs[t] = mean |F(t+1) - F(t)|`` over pixels and channels (float64, ``num_frames - 1``).
    diffs: np.ndarray
    #: ``stds[t]``: standard deviation of frame ``t`` over pixels and channels (float64).
    stds: np.ndarray

    @property
    def num_frames(self) -> int:
        """Frames in the clip."""
        return int(self.stds.shape[0])


@dataclass(frozen=True, kw_only=True)
class SeamSpan:
    """Frames ``first .. last`` (inclusive) where two chunks overlap."""

    first: int
    last: int

    @property
    def width(self) -> int:
        """Frames in the span."""
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True, kw_only=True)
class SeamMeasure:
    """The metrics of one seam (or of one placebo span)."""

    span: SeamSpan
    #: Seam jump ratio (``inf`` when the interiors are static and the span is not).
    sjr: float
    #: Contrast at the span's middle over the interiors' median (below 1: ghosting).
    contrast_dip: float
    #: The largest frame difference around the span, and the interiors' median one.
    peak_diff: float
    interior_diff: float


@dataclass(frozen=True, kw_only=True)
class SeamReport:
    """Seam metrics of one clip: per seam, per placebo span, and the summary a user reads."""

    num_frames: int
    seams: tuple[SeamMeasure, ...]
    placebos: tuple[SeamMeasure, ...]
    cut_threshold: float = CUT_THRESHOLD

    @property
    def sjr_max(self) -> float:
        """The worst seam's SJR (nan without seams)."""
        return max((s.sjr for s in self.seams), default=math.nan)

    @property
    def sjr_median(self) -> float:
        """The median seam's SJR: the typical join, less sensitive to chance than ``sjr_max``."""
        return float(np.median([s.sjr for s in self.seams])) if self.seams else math.nan

    @property
    def placebo_median(self) -> float:
        """The median placebo SJR, to compare with ``sjr_median``."""
        return float(np.median([s.sjr for s in self.placebos])) if self.placebos else math.nan

    @property
    def placebo_max(self) -> float:
        """The largest placebo SJR: what ``sjr_max`` would read on this clip with no seam at all."""
        return max((s.sjr for s in self.placebos), default=math.nan)

    @property
    def dip_min(self) -> float:
        """The worst (lowest) contrast dip over the seams (nan without seams)."""
        return min((s.contrast_dip for s in self.seams), default=math.nan)

    @property
    def dip_mean(self) -> float:
        """The mean contrast dip over the seams (nan without seams)."""
        return float(np.mean([s.contrast_dip for s in self.seams])) if self.seams else math.nan

    @property
    def cuts(self) -> int:
        """Seams whose SJR reaches ``cut_threshold``."""
        return sum(s.sjr >= self.cut_threshold for s in self.seams)

    def to_dict(self) -> dict:
        """A JSON-ready dict: the summary and every seam and placebo (non-finite numbers as None)."""

        def measure(m: SeamMeasure) -> dict:
            row = asdict(m)
            row["span"] = [m.span.first, m.span.last]
            return {k: _finite(v) for k, v in row.items()}

        return {
            "num_frames": self.num_frames,
            "sjr_max": _finite(self.sjr_max),
            "sjr_median": _finite(self.sjr_median),
            "placebo_max": _finite(self.placebo_max),
            "placebo_median": _finite(self.placebo_median),
            "dip_min": _finite(self.dip_min),
            "dip_mean": _finite(self.dip_mean),
            "cuts": self.cuts,
            "cut_threshold": self.cut_threshold,
            "seams": [measure(m) for m in self.seams],
            "placebos": [measure(m) for m in self.placebos],
        }


def _finite(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


# -- statistics ---------------------------------------------------------------------------------


def frame_stats(frames: np.ndarray) -> FrameStats:
    """``FrameStats`` of ``uint8 [n, H, W, C]`` frames held in memory."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"frames must be [n, H, W, C] with n >= 1, got shape {frames.shape}")
    stats = _StatsAccumulator()
    for frame in frames:
        stats.add(frame)
    return stats.result()


def read_frame_stats(path: str | Path) -> FrameStats:
    """``FrameStats`` of the first video stream of the file at ``path``, decoded one frame at a time
    (memory holds two frames, whatever the clip's length). ``ValueError`` if it has no video."""
    stats = _StatsAccumulator()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        for frame in container.decode(video=0):
            stats.add(frame.to_ndarray(format="rgb24"))
    if stats.count == 0:
        raise ValueError(f"{path} has no decodable video frames")
    return stats.result()


class _StatsAccumulator:
    def __init__(self) -> None:
        self.diffs: list[float] = []
        self.stds: list[float] = []
        self._previous: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.stds)

    def add(self, frame: np.ndarray) -> None:
        current = frame.astype(np.int16)
        if self._previous is not None:
            if current.shape != self._previous.shape:
                raise ValueError(f"frame {self.count} has shape {current.shape}, the clip {self._previous.shape}")
            self.diffs.append(float(np.abs(current - self._previous).mean(dtype=np.float64)))
        self.stds.append(float(current.std(dtype=np.float64)))
        self._previous = current

    def result(self) -> FrameStats:
        return FrameStats(diffs=np.asarray(self.diffs, dtype=np.float64), stds=np.asarray(self.stds, dtype=np.float64))


# -- seam positions -----------------------------------------------------------------------------


def parse_seams(text: str) -> list[SeamSpan]:
    """``"12-16,24-28"`` (inclusive frame ranges; a single frame ``"40"`` is allowed) to spans.

    >>> [str(s) for s in parse_seams("12-16, 24-28")]
    ['12-16', '24-28']
    """
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("-")
        try:
            span = SeamSpan(first=int(first), last=int(last) if sep else int(first))
        except ValueError:
            raise ValueError(f"seam {part!r} is not a frame range like 12-16") from None
        if span.first < 0 or span.last < span.first:
            raise ValueError(f"seam {part!r} must be A-B with 0 <= A <= B")
        spans.append(span)
    if not spans:
        raise ValueError(f"no seams in {text!r}")
    return spans


def parse_chunks(text: str) -> tuple[int, int, int]:
    """``"WINDOW,OVERLAP[,TEMPORAL_STRIDE]"`` to ``(window, overlap, temporal_stride)`` (stride 4 by
    default, Wan's).

    >>> parse_chunks("17,5")
    (17, 5, 4)
    """
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--chunks must be WINDOW,OVERLAP[,TEMPORAL_STRIDE], got {text!r}") from None
    if len(values) not in (2, 3):
        raise ValueError(f"--chunks must be WINDOW,OVERLAP[,TEMPORAL_STRIDE], got {text!r}")
    return (values[0], values[1], values[2] if len(values) == 3 else 4)


def planned_seams(num_frames: int, window_frames: int, overlap_frames: int, temporal_stride: int = 4) -> list[SeamSpan]:
    """The seams of the planner's cut of a ``num_frames`` clip: maximal runs of delivered frames
    that two or more chunks cover. Raises the planner's ``PlanError`` for an impossible cut."""

    plan = plan_clip(
        num_frames, window_frames=window_frames, overlap_frames=overlap_frames, temporal_stride=temporal_stride
    )
    cover = np.zeros(plan.render_frames, dtype=np.int64)
    for chunk in plan.chunks:
        cover[chunk.start : chunk.end] += 1
    return _runs(cover[:num_frames] >= 2)


def _runs(mask: np.ndarray) -> list[SeamSpan]:
    spans, start = [], None
    for i, on in enumerate(mask.tolist() + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append(SeamSpan(first=start, last=i - 1))
            start = None
    return spans


def _merge(spans: Sequence[SeamSpan], num_frames: int) -> list[SeamSpan]:
    """Sorted spans with touching or overlapping ones merged; ``ValueError`` past the clip's end."""
    merged: list[SeamSpan] = []
    for span in sorted(spans, key=lambda s: (s.first, s.last)):
        if span.last >= num_frames:
            raise ValueError(f"seam {span} is past the clip's last frame {num_frames - 1}")
        if merged and span.first <= merged[-1].last + 1:
            merged[-1] = SeamSpan(first=merged[-1].first, last=max(merged[-1].last, span.last))
        else:
            merged.append(span)
    return merged


# -- the metrics --------------------------------------------------------------------------------


def measure_seams(stats: FrameStats, seams: Sequence[SeamSpan], *, cut_threshold: float = CUT_THRESHOLD) -> SeamReport:
    """Per seam SJR and contrast dip, placebo SJRs in the chunk interiors, and the cut count.

    Overlapping or touching seams are merged (three chunks over one frame make one seam). Raises
    ``ValueError`` for a seam past the clip's end or next to an interior without a single frame
    difference to compare with (chunks shorter than the seams around them).
    """
    n = stats.num_frames
    spans = _merge(seams, n)
    # Interiors: the frames between seams; interior k precedes seam k.
    bounds = [-1] + [x for s in spans for x in (s.first, s.last)] + [n]
    interiors = [(bounds[2 * k] + 1, bounds[2 * k + 1] - 1) for k in range(len(spans) + 1)]

    def interior_diffs(first: int, last: int) -> np.ndarray:
        return stats.diffs[first:last] if last > first else stats.diffs[:0]

    measures = []
    for k, span in enumerate(spans):
        around = [interiors[k], interiors[k + 1]]
        diffs = np.concatenate([interior_diffs(*r) for r in around])
        stds = np.concatenate([stats.stds[r[0] : r[1] + 1] for r in around if r[1] >= r[0]] or [stats.stds[:0]])
        if diffs.size == 0:
            raise ValueError(f"seam {span} has no interior frames around it to compare with")
        measures.append(_measure(stats, span, diffs, stds))

    placebos = []
    widths = sorted(s.width for s in spans)
    width = widths[(len(widths) - 1) // 2] if widths else 0
    for k, (first, last) in enumerate(interiors if spans else []):
        # A span of the seams' (median) width centred in the interior, its one-frame margin inside
        # the interior too, so it reads the same number of differences as a seam and no seam frame.
        if last - first + 1 < width + 2:
            continue
        start = (first + last + 1 - width) // 2
        span = SeamSpan(first=start, last=start + width - 1)
        # The denominator pools the interior with its neighbours, as a seam pools the two chunks
        # around it (an interior is often just the span and its margin: stride 12, overlap 5).
        around = interiors[max(k - 1, 0) : k + 2]
        diffs = np.concatenate([interior_diffs(*r) for r in around])
        stds = np.concatenate([stats.stds[r[0] : r[1] + 1] for r in around if r[1] >= r[0]])
        placebos.append(_measure(stats, span, diffs, stds))
    return SeamReport(num_frames=n, seams=tuple(measures), placebos=tuple(placebos), cut_threshold=cut_threshold)


def _measure(stats: FrameStats, span: SeamSpan, interior_diffs: np.ndarray, interior_stds: np.ndarray) -> SeamMeasure:
    # Every difference touching the span: (first-1, first) .. (last, last+1), clipped to the clip.
    peak = float(stats.diffs[max(span.first - 1, 0) : span.last + 1].max(initial=0.0))
    base = float(np.median(interior_diffs))
    if base > 0:
        sjr = peak / base
    else:
        sjr = math.inf if peak > 0 else 1.0
    middle = (span.first + span.last) / 2
    centre = float(np.mean(stats.stds[math.floor(middle) : math.ceil(middle) + 1]))
    contrast = float(np.median(interior_stds)) if interior_stds.size else math.nan
    dip = centre / contrast if contrast > 0 else (1.0 if centre == 0 else math.inf)
    return SeamMeasure(span=span, sjr=sjr, contrast_dip=dip, peak_diff=peak, interior_diff=base)


def measure_file(
    path: str | Path,
    *,
    seams: Sequence[SeamSpan] | None = None,
    chunks: tuple[int, int, int] | None = None,
    cut_threshold: float = CUT_THRESHOLD,
) -> SeamReport:
    """Read ``path`` and measure its seams, given either explicitly or as the planner's ``chunks``
    ``(window, overlap, temporal_stride)`` for the file's frame count."""
    if (seams is None) == (chunks is None):
        raise ValueError("give exactly one of seams and chunks")
    stats = read_frame_stats(path)
    if chunks is not None:
        seams = planned_seams(stats.num_frames, *chunks)
    return measure_seams(stats, seams, cut_threshold=cut_threshold)


# -- command line -------------------------------------------------------------------------------


def format_report(report: SeamReport) -> str:
    """The report as a table a user reads: one row per seam, then the placebos and a summary."""

    def number(value: float) -> str:
        return "inf" if value == math.inf else f"{value:.3f}"

    lines = [f"{'seam':>5}  {'frames':>11}  {'SJR':>7}  {'dip':>7}  {'jump':>7}  {'motion':>7}"]
    for i, m in enumerate(report.seams):
        cut = "  cut" if m.sjr >= report.cut_threshold else ""
        lines.append(
            f"{i:>5}  {str(m.span):>11}  {number(m.sjr):>7}  {number(m.contrast_dip):>7}  "
            f"{m.peak_diff:>7.2f}  {m.interior_diff:>7.2f}{cut}"
        )
    if report.placebos:
        lines.append(
            f"placebo SJR over {len(report.placebos)} chunk interiors: max {number(report.placebo_max)}, "
            f"median {number(report.placebo_median)}"
        )
    lines.append(
        f"{report.num_frames} frames, {len(report.seams)} seams: SJR max {number(report.sjr_max)} "
        f"median {number(report.sjr_median)} (placebo max {number(report.placebo_max)} median "
        f"{number(report.placebo_median)}), contrast dip min {number(report.dip_min)} "
        f"mean {number(report.dip_mean)}, cuts {report.cuts} (SJR >= {report.cut_threshold:g})"
    )
    return "\n".join(lines)


def build_parser(prog: str = "farm seams") -> argparse.ArgumentParser:
    """The ``farm seams`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure how visible the joins between a clip's temporal chunks are "
        "(seam jump ratio, contrast dip, cuts).",
    )
    parser.add_argument("file", help="any video file PyAV can read")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--chunks",
        metavar="WINDOW,OVERLAP[,TEMPORAL_STRIDE]",
        help="seams of the farm's plan for this many frames, e.g. 17,5 (temporal stride 4)",
    )
    where.add_argument("--seams", metavar="A-B,...", help="overlap frame ranges, inclusive, e.g. 12-16,24-28")
    parser.add_argument(
        "--cut-threshold",
        type=float,
        default=CUT_THRESHOLD,
        help=f"SJR counted as a cut (default {CUT_THRESHOLD:g}, PySceneDetect's)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``farm seams``: print the seam report of a file; 0 on success, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        report = measure_file(
            args.file,
            seams=parse_seams(args.seams) if args.seams is not None else None,
            chunks=parse_chunks(args.chunks) if args.chunks is not None else None,
            cut_threshold=args.cut_threshold,
        )
    except (ValueError, OSError) as error:  # PlanError is a ValueError; av errors are OSErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
