"""Decode a delivered file with PyAV and report what a user (or ffprobe) would see."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class MediaInfo:
    video_codec: str
    frames: int
    fps: Fraction
    width: int
    height: int
    audio_codec: str | None
    audio_seconds: float | None
    audio_channels: int | None
    audio_rate: int | None


def probe(path: str | Path) -> MediaInfo:
    """Decode every frame and every audio sample of ``path``."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = 0
        samples = 0
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    frames += 1
                else:
                    samples += frame.samples
        return MediaInfo(
            video_codec=video.codec_context.name,
            frames=frames,
            fps=video.average_rate,
            width=video.codec_context.width,
            height=video.codec_context.height,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_seconds=samples / audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
        )


def decode_frames(path: str | Path) -> np.ndarray:
    """All video frames of ``path`` as uint8 RGB ``[n, H, W, 3]``."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
