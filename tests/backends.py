"""Test-only video backends around the embedded tiny one, shipped to Ray workers by value."""

from __future__ import annotations

import sys

from ray import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class WrappedTinyBackend:
    """The embedded default's video backend behind the ``VideoBackend`` protocol; subclasses
    override ``render_chunk`` to watch or slow down what the real backend does."""

    def __init__(self):
        from models.profiles import tiny_video_backend

        self._inner = tiny_video_backend()
        self.temporal_stride = self._inner.temporal_stride
        self.supports_conditioning = self._inner.supports_conditioning

    def latent_frame_shape(self, height, width):
        return self._inner.latent_frame_shape(height, width)

    def encode_prompt(self, prompt, negative_prompt=None):
        return self._inner.encode_prompt(prompt, negative_prompt)

    def render_chunk(self, request, on_step=None):
        return self._inner.render_chunk(request, on_step)
