"""What each chunk of a result is conditioned on, built from a task's decoded media inputs.

``build_conditioning`` turns ``farm.io.media.ResolvedInputs`` into a ``ClipConditioning``: known
frames and masks indexed by **render-grid frame**, plus the reference images every chunk gets.
``ClipConditioning.for_chunk`` cuts out one chunk's share (``models.base.ChunkConditioning``, in
chunk-local frame indices), which the video worker hands to its backend (VACE: ``video``, ``mask``,
``reference_images``).

The inputs, and where they land (``N`` frames delivered, all sizes at the profile's native size):

* ``frameImages``: each image, scaled to cover the frame and centre-cropped, is a known frame at
  its position (``farm.io.media.frame_positions``); every chunk whose window holds that position
  receives it, so overlapping chunks agree on it.
* ``referenceImages``: every group's images (a ``grid`` collage is one image) are reference images
  of every chunk, scaled to fit the native frame; a group's ``audio`` is the audio model's voice
  reference.
* ``referenceVideos`` of type ``reference``: output frame ``i`` is steered by the input frame
  shown at time ``i / 32`` s (a control video; the model regenerates it, mask white), as long as
  the input lasts; the input's audio track becomes the output's audio.
  With ``inputs.mask`` (white = regenerate) only the white area is regenerated and the rest of
  each frame is kept from the input video (inpainting/editing); a mask image applies to every
  frame, a mask video frame by frame at the same times.
* ``referenceVideos`` of type ``extend``: the input's last ``lead_frames`` frames (the profile's
  chunk overlap) are prepended to the render grid as known frames, so the first chunk continues
  the input's motion; after stitching those frames are dropped. The delivered file holds only the
  new ``N`` frames, starting right after the input's last frame (it does not repeat the input).

With media inputs the output size follows the input's aspect ratio when the task gave a
``resolution`` preset (``output_size``): the preset's pixel area, the input's shape.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from farm.domain.constants import OUTPUT_FPS
from farm.io.media import ResolvedInputs, VideoClip, mask_plane
from farm.workers.messages import ClipConditioning

__all__ = ["ClipConditioning", "build_conditioning", "extend_lead_frames", "output_size", "cover", "contain"]

#: Output sizes are rounded to multiples of this (even sizes for every codec; 1080 stays 1080).
SIZE_MULTIPLE = 8


def output_size(width: int, height: int, resolution: str | None, inputs: ResolvedInputs | None) -> tuple[int, int]:
    """The delivered ``(width, height)``: with a ``resolution`` preset and a visual input (the
    reference video, else the first frame image), the preset's area in the input's aspect ratio;
    otherwise ``width`` x ``height`` unchanged (explicit sizes are never overridden)."""
    if resolution is None or inputs is None:
        return width, height
    if inputs.reference_video is not None:
        shape = inputs.reference_video.clip.width, inputs.reference_video.clip.height
    elif inputs.frame_images:
        image = inputs.frame_images[0].image
        shape = image.shape[1], image.shape[0]
    else:
        return width, height
    aspect = shape[0] / shape[1]
    # The preset itself (or turned to portrait) when the input has its shape, within 1%.
    for w, h in ((width, height), (height, width)):
        if abs(aspect / (w / h) - 1) < 0.01:
            return w, h
    area = width * height
    out_h = max(SIZE_MULTIPLE, round(math.sqrt(area / aspect) / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    out_w = max(SIZE_MULTIPLE, round(out_h * aspect / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    return out_w, out_h


def cover(image: np.ndarray, width: int, height: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """``image`` scaled to cover ``width`` x ``height`` and centre-cropped to it."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    scaled = Image.fromarray(image).resize((new_w, new_h), resample)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return np.asarray(scaled.crop((left, top, left + width, top + height)))


def contain(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled down (never up) to fit inside ``width`` x ``height``, aspect kept."""
    h, w = image.shape[:2]
    scale = min(1.0, width / w, height / h)
    if scale == 1.0:
        return image
    size = max(1, round(w * scale)), max(1, round(h * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def _source_index(frame: int, clip: VideoClip) -> int | None:
    """The input frame shown at output frame ``frame``'s time, or None past the input's end."""
    index = math.floor(frame / OUTPUT_FPS * clip.fps + 1e-6)
    return index if index < clip.num_frames else None


def extend_lead_frames(profile) -> int:
    """How many of an ``extend`` video's last frames lead the render grid: the profile's chunk
    overlap (at least 1), so the first chunk continues the input like any chunk its predecessor."""
    return max(1, profile.overlap_frames)


def build_conditioning(
    inputs: ResolvedInputs | None, *, num_frames: int, native_width: int, native_height: int, extend_frames: int
) -> ClipConditioning:
    """The render-grid conditioning of a clip of ``num_frames`` delivered frames.

    ``extend_frames`` is how many of an ``extend`` video's last frames lead the render grid
    (``extend_lead_frames``); a shorter input leads with all its frames.
    """
    if inputs is None or inputs.empty:
        return ClipConditioning()
    size = (native_width, native_height)
    frames: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    lead = 0
    carried = None
    video = inputs.reference_video
    if video is not None and video.type == "extend":
        tail = video.clip.last_frames(extend_frames, size)
        lead = len(tail)
        for g, frame in enumerate(tail):
            frames[g] = np.ascontiguousarray(frame)
    elif video is not None:
        clip = video.clip
        sources = {f: _source_index(f, clip) for f in range(num_frames)}
        wanted = {s for s in sources.values() if s is not None}
        decoded = (
            {
                i: np.ascontiguousarray(frame)
                for i, frame in enumerate(clip.frames(size, 0, max(wanted) + 1))
                if i in wanted
            }
            if wanted
            else {}
        )
        mask_of = _mask_lookup(inputs.mask, size)
        for f, source in sources.items():
            if source is None or source not in decoded:
                continue
            frames[f] = decoded[source]
            masks[f] = mask_of(f)
        if clip.has_audio and clip.audio is not None:
            carried = (clip.audio, int(clip.audio_rate))
    for positioned in inputs.frame_images:
        g = lead + positioned.frame
        frames[g] = cover(positioned.image, native_width, native_height)
        masks.pop(g, None)  # a frame image is kept whole, even inside an edited video
    references = tuple(
        contain(image, native_width, native_height) for group in inputs.reference_images for image in group.images
    )
    voice = next(((g.audio.samples, int(g.audio.rate)) for g in inputs.reference_images if g.audio is not None), None)
    return ClipConditioning(
        lead_frames=lead, frames=frames, masks=masks, reference_images=references, carried_audio=carried, voice=voice
    )


def _mask_lookup(mask: np.ndarray | VideoClip | None, size: tuple[int, int]):
    """Output frame -> ``uint8 [H, W]`` mask at ``size`` (all 255, regenerate everything, without one)."""
    width, height = size
    if mask is None:
        full = np.full((height, width), 255, dtype=np.uint8)
        return lambda frame: full
    if isinstance(mask, np.ndarray):
        plane = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
        return lambda frame: plane
    planes = [mask_plane(frame) for frame in mask.frames(size)]
    full = np.full((height, width), 255, dtype=np.uint8)

    def lookup(frame: int) -> np.ndarray:
        index = _source_index(frame, mask)
        if index is None or not planes:
            return full
        return planes[min(index, len(planes) - 1)]

    return lookup
