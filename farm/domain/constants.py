"""Defaults and limits of the farm, in one place.

Every number a user can hit lives here, with the other rules more than one layer applies (the
URL fields, the prompt-tag grammar), so the validator, the planner, the encoder, prompt extension,
the media fetcher, the gateway and the docs quote the same values.
"""

from __future__ import annotations

import re
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

#: Longest ``positivePrompt``; an extended prompt (``settings.promptExtend``) never exceeds it either.
POSITIVE_PROMPT_MAX_CHARS = 5120

TTL_MIN_S = 60

#: Explicit width/height: each side within these bounds and even (yuv420p needs even sides),
#: and no more pixels than 1080p.
DIMENSION_MIN = 128
DIMENSION_MAX = 1920
MAX_PIXELS = 1920 * 1080

#: Largest ``seed`` (the extension field): a signed 64-bit integer. Result ``i`` renders with
#: ``seed + i``, so the base seed of a task with N results is at most ``SEED_MAX - (N - 1)``.
SEED_MAX = 2**63 - 1

#: The ``priority`` extension: higher runs first within its API key's fair share; absent is 0.
PRIORITY_MIN = -100
PRIORITY_MAX = 100

#: Items of the ``inputs`` arrays (the seed's limits).
REFERENCE_IMAGES_MAX = 3
REFERENCE_IMAGES_PER_GROUP_MAX = 5
FRAME_IMAGES_MAX = 8
REFERENCE_VIDEOS_COUNT = 1

MiB = 1024 * 1024
#: Largest media input: the bytes of an upload, a download or a decoded data URI, and the
#: characters of a media string inside a task (a data URI or bare base64).
MAX_MEDIA_BYTES = 50 * MiB
#: Largest request body the gateway reads: one task may carry up to ``MAX_MEDIA_BYTES`` of inline
#: media, plus the JSON around it.
MAX_REQUEST_BYTES = 64 * MiB
#: Submits up to this size (serialised) are validated on the gateway's event loop; larger ones
#: carry media, whose validation runs in a thread (both faces).
INLINE_SUBMIT_BYTES = 64 * 1024

#: The task fields that hold a URL the farm itself calls (upload with PUT, webhook with POST):
#: each must pass the URL guard before a task is accepted.
URL_FIELDS = ("webhookURL", "uploadEndpoint")

#: A prompt tag (``inputs.referenceImages[].tag``, ``inputs.referenceVideos[].tag``): ``@`` then a
#: name of word characters, with single inner hyphens (``@actor1``, ``@style``, ``@shop-2``, as in
#: the seed's examples). In a prompt a tag starts after anything but a word character or ``@`` (so
#: ``x@y`` is no tag) and ends before the first character that cannot continue it: ``@hero!`` and
#: ``@hero.`` mention ``@hero``; ``@heroes`` and ``@hero-2`` are other tags. The validator accepts
#: exactly the tags this pattern reads and prompt extension keeps exactly these. ``TAG_NAME`` is the
#: part after the ``@`` (the published JSON Schema's tag pattern is ``^@`` + it + ``$``).
TAG_NAME = r"\w+(?:-\w+)*"
# Written "@ then look behind it" rather than "(?<![\w@])@": a pattern that starts with a literal is
# searched for that character first, 100x faster over a 5120-character prompt.
TAG_PATTERN = re.compile(rf"@(?<![\w@]@){TAG_NAME}")


def prompt_tags(text: str) -> list[str]:
    """The ``@tags`` mentioned in ``text``, in order of first mention, without duplicates.

    >>> prompt_tags("@hero meets @shop-2, then @hero again! mail x@y.z; @hero.")
    ['@hero', '@shop-2']
    """
    return list(dict.fromkeys(TAG_PATTERN.findall(text)))


def is_tag(text: str) -> bool:
    """Whether ``text`` is one whole tag (what a reference's ``tag`` field must be).

    >>> [is_tag(t) for t in ("@actor1", "@shop-2", "@hero!", "@my actor", "@", "hero", "@a-")]
    [True, True, False, False, False, False, False]
    """
    return TAG_PATTERN.fullmatch(text) is not None


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
