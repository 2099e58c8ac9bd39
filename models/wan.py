"""``VideoBackend`` over a diffusers Wan 2.1-family pipeline (real weights or the tiny ones).

Three pipeline classes share the backend, picked by name (``VIDEO_PIPELINES``): ``WanPipeline``
(text-to-video), ``WanVACEPipeline`` (Wan 2.1 VACE) and ``SkyReelsV2DiffusionForcingPipeline``
(SkyReels V2 DF). All three take the same text encoding, noise latents and VAE, so the chunk path is
one. Only VACE takes conditioning (``ChunkRequest.conditioning``): known frames and masks become its
source ``video`` and ``mask``, reference images its ``reference_images``; ``WanPipeline`` and DF
run text-to-video and refuse conditioning.

VACE always conditions on a source video: a text-only chunk gets an all-zero one, which the VAE
encodes like any other. Those latents depend only on the chunk's shape, so the backend computes
them once per shape and reuses them (``conditioning_cache_info``); measured on the tiny default,
the encode was 45% of a text-only chunk's time.
"""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKLWan, WanPipeline

from models.base import ChunkConditioning, ChunkRequest, PromptEmbeds, StepCallback

#: Hub id of the smallest open Wan 2.1 text-to-video checkpoint in diffusers layout.
from models.weights import DEFAULT_WAN_WEIGHTS

#: Text tokens Wan 2.1 was trained with (``text_len`` of the original code).
WAN_MAX_SEQUENCE_LENGTH = 512


#: Blank conditioning latents a backend keeps (one per chunk shape; a worker renders few shapes:
#: the profile's window at each aspect ratio in use). 81 frames at 720p take 39 MB each.
CONDITIONING_CACHE_SIZE = 4


class CacheInfo(NamedTuple):
    """Counters of the blank-conditioning cache, shaped like ``functools.lru_cache``'s.

    ``misses`` is how many times the VAE encoded a blank conditioning video (once per shape while
    the shape stays cached); ``hits`` how many chunks reused one.
    """

    hits: int
    misses: int
    maxsize: int
    currsize: int


#: Pipeline classes (diffusers names) a Wan-family video backend can load, as named in profiles.
VIDEO_PIPELINES = ("WanPipeline", "WanVACEPipeline", "SkyReelsV2DiffusionForcingPipeline")


def pipeline_class(name: str) -> type:
    """The diffusers pipeline class called ``name``; ``ValueError`` unless it is in ``VIDEO_PIPELINES``."""
    if name not in VIDEO_PIPELINES:
        raise ValueError(f"unsupported video pipeline {name!r}; supported: {', '.join(VIDEO_PIPELINES)}")
    return getattr(diffusers, name)


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in ``[0, 1]`` to ``uint8`` (round half to even, like ``VaeImageProcessor``)."""
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def align_cpu_weights(pipeline: Any, alignment: int = 64) -> None:
    """Copy CPU parameters and buffers that are not ``alignment``-byte aligned into fresh storage.

    Weights loaded from safetensors can be views at arbitrary file offsets; CPU BLAS kernels pick
    different code paths (and so round differently, ~1e-7) for unaligned data. Realigning once at
    load makes results independent of the file layout: a loaded checkpoint renders bit-identically
    to the same weights built in memory. Tensors on a GPU were already copied and are left alone.
    """
    for component in pipeline.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in itertools.chain(component.parameters(), component.buffers()):
            if tensor.device.type == "cpu" and tensor.data_ptr() % alignment:
                tensor.data = tensor.data.clone()


def _df_prepare_latents(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``SkyReelsV2DiffusionForcingPipeline.prepare_latents`` that accepts given latents.

    In diffusers 0.42 the DF pipeline's ``prepare_latents`` returns a bare tensor when ``latents``
    are passed, but its caller unpacks four values, so the farm's noise could not be given. This
    returns what the no-latents branch returns for a short (single-window) video: the latents,
    their latent frame count, no prefix video and 0 prefix frames.
    """
    latents = kwargs.get("latents", args[8] if len(args) > 8 else None)
    if latents is None:
        return original(*args, **kwargs)
    dtype = kwargs.get("dtype", args[5] if len(args) > 5 else None)
    device = kwargs.get("device", args[6] if len(args) > 6 else None)
    return latents.to(device=device, dtype=dtype), latents.shape[2], None, 0


class _BlankConditioningCache:
    """``WanVACEPipeline.prepare_video_latents`` that encodes a blank source video once per shape.

    A chunk without keyframes, masks or reference images reaches VACE as an all-zero video
    (``preprocess_conditions``). Its latents are then ``vae.encode(0 * (1 - mask))`` and
    ``vae.encode(0 * mask)``: both encode the same zeros whatever the mask, so they depend only
    on the video's shape, dtype and device, and the cached tensor is exactly what the call would
    return. Anything else (a frame, a reference image) goes to the pipeline's own method.
    The pipeline only reads the result (``torch.cat`` makes the next tensor), so it is shared.
    """

    def __init__(self, original: Callable[..., torch.Tensor], maxsize: int) -> None:
        self._original = original
        self._latents: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0

    def __call__(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        reference_images: list[list[torch.Tensor]] | None = None,
        generator: Any = None,
        device: Any = None,
    ) -> torch.Tensor:
        # ``reference_images`` is one list per video: [[]] when the chunk has none. The encode
        # samples with argmax, so ``generator`` changes nothing.
        if any(reference_images or ()) or self.maxsize < 1 or bool(torch.any(video)):
            return self._original(video, mask, reference_images, generator, device)
        key = (tuple(video.shape), video.dtype, str(video.device), str(device))
        latents = self._latents.get(key)
        if latents is not None:
            self.hits += 1
            self._latents.move_to_end(key)
            return latents
        self.misses += 1
        latents = self._original(video, mask, reference_images, generator, device)
        self._latents[key] = latents
        while len(self._latents) > self.maxsize:
            self._latents.popitem(last=False)
        return latents

    def info(self) -> CacheInfo:
        return CacheInfo(hits=self.hits, misses=self.misses, maxsize=self.maxsize, currsize=len(self._latents))


class WanVideoBackend:
    """Renders temporal chunks with a Wan-family pipeline from the noise the farm gives it.

    The pipeline never draws its own noise: every chunk starts from ``request.latents`` (its
    slice of the result's global seeded noise), so a chunk renders bit-identically whichever
    worker renders it. Build it from a ready pipeline (``WanVideoBackend(pipe)``, as the tiny
    profile does) or from weights (``WanVideoBackend.from_pretrained(path_or_hub_id)``).
    """

    def __init__(
        self,
        pipeline: WanPipeline,
        *,
        max_sequence_length: int | None = None,
        conditioning_cache_size: int = CONDITIONING_CACHE_SIZE,
    ) -> None:
        """Wrap ``pipeline`` (already on its device and dtype).

        ``max_sequence_length`` is the number of text tokens per prompt; by default the
        tokenizer's ``model_max_length`` capped at Wan's 512 (the tiny tokenizer says 64).
        ``conditioning_cache_size`` is how many chunk shapes keep their blank VACE conditioning
        latents (0: encode them for every chunk, as the bare pipeline does).
        """
        if conditioning_cache_size < 0:
            raise ValueError(f"conditioning_cache_size must be >= 0, got {conditioning_cache_size}")
        self.pipeline = pipeline
        pipeline.set_progress_bar_config(disable=True)
        self.supports_conditioning: bool = isinstance(pipeline, diffusers.WanVACEPipeline)
        self._blank_cache: _BlankConditioningCache | None = None
        if self.supports_conditioning:
            # Instance attribute, so other users of the class are untouched.
            self._blank_cache = _BlankConditioningCache(pipeline.prepare_video_latents, conditioning_cache_size)
            pipeline.prepare_video_latents = self._blank_cache
        if isinstance(pipeline, diffusers.SkyReelsV2DiffusionForcingPipeline):
            # Instance attribute, so other users of the class are untouched.
            pipeline.prepare_latents = functools.partial(_df_prepare_latents, pipeline.prepare_latents)
        vae_config = pipeline.vae.config
        # Strides and latent channels come from the VAE config (Wan 2.2's TI2V VAE has other
        # values), never from constants.
        self.temporal_stride: int = int(vae_config.scale_factor_temporal)
        self._spatial_stride = int(vae_config.scale_factor_spatial)
        self._latent_channels = int(vae_config.z_dim)
        transformer = pipeline.transformer if pipeline.transformer is not None else pipeline.transformer_2
        # height/width must be multiples of VAE stride x transformer patch, else the pipeline
        # silently crops them, and the frames would no longer match the planned size.
        self._size_multiple = self._spatial_stride * int(transformer.config.patch_size[1])
        if max_sequence_length is None:
            max_sequence_length = min(int(pipeline.tokenizer.model_max_length), WAN_MAX_SEQUENCE_LENGTH)
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str = DEFAULT_WAN_WEIGHTS,
        *,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        max_sequence_length: int | None = None,
        pipeline: str = "WanPipeline",
        **kwargs: Any,
    ) -> WanVideoBackend:
        """Load a Wan-family checkpoint (diffusers layout) from a local folder or hub id.

        ``pipeline`` names the diffusers class (one of ``VIDEO_PIPELINES``): ``WanPipeline`` for Wan
        2.1 text-to-video, ``WanVACEPipeline`` for Wan 2.1 VACE, ``SkyReelsV2DiffusionForcingPipeline``
        for SkyReels V2 DF.

        ``torch_dtype`` defaults to bfloat16 on a GPU and float32 on the CPU; the VAE always loads
        in float32, as Wan's authors recommend (bf16 decoding bands the colours). Hub downloads
        follow the usual ``HF_HOME``/``HF_HUB_OFFLINE`` settings; extra ``kwargs`` (e.g.
        ``local_files_only=True``, ``revision``) go to ``WanPipeline.from_pretrained``.
        """
        device = torch.device(device or default_device())
        if torch_dtype is None:
            torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        vae = AutoencoderKLWan.from_pretrained(path_or_hub_id, subfolder="vae", dtype=torch.float32, **kwargs)
        pipe = pipeline_class(pipeline).from_pretrained(path_or_hub_id, vae=vae, dtype=torch_dtype, **kwargs)
        pipe.to(device)
        align_cpu_weights(pipe)
        return cls(pipe, max_sequence_length=max_sequence_length)

    @property
    def device(self) -> torch.device:
        """Where the denoising runs."""
        return self.pipeline._execution_device

    def prime(self, num_frames: int, height: int, width: int) -> None:
        """Encode the blank VACE conditioning of a ``num_frames`` x ``height`` x ``width`` chunk now.

        A worker that calls this at load for its profile's window renders its first text-only
        chunk as fast as the next ones (the encode was ~45% of a tiny chunk). Nothing happens for
        pipelines without conditioning or with the cache off.
        """
        cache = self._blank_cache
        if cache is None or cache.maxsize < 1:
            return
        with torch.inference_mode():
            # What ``preprocess_conditions`` builds for a chunk without conditioning.
            video = torch.zeros((1, 3, num_frames, height, width), dtype=torch.float32, device=self.device)
            cache(video, torch.ones_like(video), [[]], None, self.device)

    def conditioning_cache_info(self) -> CacheInfo:
        """How often a chunk's blank VACE conditioning was encoded (``misses``) or reused (``hits``).

        All zero for pipelines that take no conditioning.
        """
        if self._blank_cache is None:
            return CacheInfo(hits=0, misses=0, maxsize=0, currsize=0)
        return self._blank_cache.info()

    def latent_frame_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, h, w)`` of one latent frame for a native ``height`` x ``width`` clip."""
        return (self._latent_channels, height // self._spatial_stride, width // self._spatial_stride)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """``[1, C, T, h, w]`` of the noise for a chunk of ``num_frames`` pixel frames."""
        channels, h, w = self.latent_frame_shape(height, width)
        return (1, channels, (num_frames - 1) // self.temporal_stride + 1, h, w)

    @torch.inference_mode()
    def encode_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        """Encode ``prompt`` and ``negative_prompt`` (``""`` when None) in one text-encoder pass each.

        Both are always returned so any chunk may use classifier-free guidance; the tensors are on
        the CPU so they travel through Ray's object store to workers on any device.
        """
        if isinstance(self.pipeline, WanPipeline):
            prompt_embeds, negative_embeds = self.pipeline.encode_prompt(
                prompt=prompt,
                negative_prompt=negative_prompt or "",
                do_classifier_free_guidance=True,
                max_sequence_length=self.max_sequence_length,
                device=self.device,
            )
        else:
            # The VACE and SkyReels V2 modules (diffusers 0.42) call ``ftfy`` in their prompt
            # cleaning without checking it is installed; WanPipeline's identical T5 encoding (same
            # text encoder, same cleaning when ftfy is there) guards it. Called unbound on this
            # pipeline so it uses this pipeline's tokenizer and text encoder.
            prompt_embeds, negative_embeds = (
                WanPipeline._get_t5_prompt_embeds(
                    self.pipeline, prompt=text, max_sequence_length=self.max_sequence_length, device=self.device
                )
                for text in (prompt, negative_prompt or "")
            )
        return PromptEmbeds(prompt_embeds=prompt_embeds.cpu(), negative_prompt_embeds=negative_embeds.cpu())

    def _check(self, request: ChunkRequest) -> None:
        """Refuse what the pipeline would silently round: the frames must match the plan."""
        if request.num_frames < 1 or (request.num_frames - 1) % self.temporal_stride:
            raise ValueError(
                f"num_frames must be {self.temporal_stride}k+1, got {request.num_frames} (chunk {request.chunk_index})"
            )
        m = self._size_multiple
        if request.height % m or request.width % m:
            raise ValueError(
                f"height and width must be multiples of {m}, got {request.width}x{request.height} "
                f"(chunk {request.chunk_index})"
            )
        expected = self.latent_shape(request.num_frames, request.height, request.width)
        conditioning = request.conditioning
        if conditioning is not None and not conditioning.empty and not self.supports_conditioning:
            raise ValueError(
                f"{type(self.pipeline).__name__} cannot take keyframes, masks or reference images "
                f"(chunk {request.chunk_index}); use a WanVACEPipeline profile"
            )
        if tuple(request.latents.shape) != expected:
            raise ValueError(
                f"latents of chunk {request.chunk_index} have shape {tuple(request.latents.shape)}, expected "
                f"{expected} for {request.num_frames} frames at {request.width}x{request.height}"
            )

    def render_chunk(self, request: ChunkRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """Denoise ``request.latents`` and decode them: ``uint8 [num_frames, height, width, 3]`` RGB.

        ``on_step(i, total)`` is called after each denoising step (it may raise to cancel).
        """
        self._check(request)

        def step_end(pipe: WanPipeline, i: int, t: torch.Tensor, tensors: dict) -> dict:
            if on_step is not None:
                on_step(i, pipe.num_timesteps)
            return {}

        embeds = request.prompt
        negative = embeds.negative_prompt_embeds
        # Float32 noise, copied so the pipeline can never write into the caller's slice.
        latents = request.latents.to(device=self.device, dtype=torch.float32, copy=True)
        extra: dict[str, Any] = {}
        if request.conditioning is not None and not request.conditioning.empty:
            extra, latents = self._vace_inputs(request, latents)
        if isinstance(self.pipeline, diffusers.SkyReelsV2DiffusionForcingPipeline):
            # Diffusion forcing denoises in base_num_frames windows (97 by default): one window the
            # size of the chunk makes it a single synchronous pass over exactly the farm's noise.
            # Its ``prompt`` has no default, hence the explicit None.
            extra = {"prompt": None, "base_num_frames": request.num_frames}
        output = self.pipeline(
            **extra,
            prompt_embeds=embeds.prompt_embeds.to(self.device),
            negative_prompt_embeds=None if negative is None else negative.to(self.device),
            latents=latents,
            num_frames=request.num_frames,
            height=request.height,
            width=request.width,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            # Unused while latents are given; seeded anyway so nothing in the call is unseeded.
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
            callback_on_step_end=step_end,
            callback_on_step_end_tensor_inputs=[],
        )
        frames = output.frames[0]
        return frames_to_uint8(frames)

    def _vace_inputs(self, request: ChunkRequest, latents: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
        """VACE's ``video``, ``mask`` and ``reference_images`` for the chunk, and its noise.

        Each reference image takes one extra latent frame in front of the chunk's (VACE drops it
        after denoising); its noise is drawn from the result seed, so every chunk of a result, on
        any worker, starts its reference slots from the same noise.
        """
        from PIL import Image

        conditioning: ChunkConditioning = request.conditioning  # type: ignore[assignment]  # checked non-None by the caller
        video, mask = conditioning.dense(request.num_frames, request.height, request.width)
        extra: dict[str, Any] = {
            "video": video[None],  # [1, F, H, W, 3] in [0, 1]
            "mask": np.repeat(mask[None, ..., None], 3, axis=-1),
        }
        references = conditioning.reference_images
        if references:
            extra["reference_images"] = [Image.fromarray(np.ascontiguousarray(image)) for image in references]
            channels, h, w = self.latent_frame_shape(request.height, request.width)
            generator = torch.Generator("cpu").manual_seed((request.seed * 7919 + 17) % 2**63)
            slots = torch.randn((1, channels, len(references), h, w), generator=generator, dtype=torch.float32)
            latents = torch.cat([slots.to(latents.device), latents], dim=2)
        return extra, latents
