"""Defaults and limits of the farm, in one place.

Every number a user can hit lives here, so the validator, the planner, the encoder and the docs
quote the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Output frame rate of every result (SkyReels V4 renders at 32 fps).
OUTPUT_FPS = 32

#: Audio sample rate of every delivered file (AAC, Opus and PCM all carry 48 kHz).
OUTPUT_SAMPLE_RATE = 48_000

#: The model identifier of the seed API; the embedded default profile answers to it.
DEFAULT_MODEL = "skywork:skyreels@v4"

#: Resolution presets for a 16:9 output (width, height).
RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {
    "480p": (848, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
}
DEFAULT_RESOLUTION = "1080p"

DURATION_MIN_S = 3.0
DURATION_MAX_S = 15.0
DURATION_DEFAULT_S = 5.0

OUTPUT_QUALITY_MIN = 20
OUTPUT_QUALITY_MAX = 99
OUTPUT_QUALITY_DEFAULT = 95

NUMBER_RESULTS_MIN = 1
NUMBER_RESULTS_MAX = 4

POSITIVE_PROMPT_MAX_CHARS = 5120

TTL_MIN_S = 60

#: Explicit width/height: each side within these bounds and even (yuv420p needs even sides),
#: and no more pixels than 1080p.
DIMENSION_MIN = 128
DIMENSION_MAX = 1920
MAX_PIXELS = 1920 * 1080



@dataclass(frozen=True)
class OutputFormat:
    """One ``outputFormat``: its file extension, HTTP content type and PyAV container name."""

    name: str
    extension: str
    content_type: str
    container: str


#: Every output format, the one table the validator, encoder, renderer and artifact store read.
FORMATS: dict[str, OutputFormat] = {
    "MP4": OutputFormat("MP4", "mp4", "video/mp4", "mp4"),
    "WEBM": OutputFormat("WEBM", "webm", "video/webm", "webm"),
    "MOV": OutputFormat("MOV", "mov", "video/quicktime", "mov"),
}
OUTPUT_FORMATS = tuple(FORMATS)


def output_format(name: str) -> OutputFormat:
    """The ``OutputFormat`` called ``name`` (case-insensitive); ``ValueError`` names the choices."""
    found = FORMATS.get(str(name).upper())
    if found is None:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {name!r}")
    return found


def frame_count(duration_s: float) -> int:
    """Frames of a clip: ``round(duration x 32)`` (3 s -> 96, 5 s -> 160, 15 s -> 480)."""
    return int(round(duration_s * OUTPUT_FPS))
