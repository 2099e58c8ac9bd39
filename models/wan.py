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

Speed options (``SpeedOptions``, the ``speed:`` section of a YAML profile, docs/profiles.md) are
applied once, when the backend is built, each by its own function so ``benchmarks/gpu.py`` times
the very same code: half precision for the transformer and the VAE (on CUDA only), VAE tiling
(``enable_vae_tiling``), diffusers' First Block Cache (``enable_first_block_cache``, with a
correction for VACE's control hints) and ``torch.compile`` of the transformer
(``compile_transformer``). All are off unless asked for; the embedded tiny default asks for none.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

#: ``SpeedOptions.half_precision`` values (``speed.half_precision``; ``models.profiles`` keeps the same list).
HALF_PRECISIONS = ("bfloat16", "float16")

#: ``SpeedOptions.compile_mode`` values: ``torch.compile``'s modes, ``default`` being its ``mode=None``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: Pipelines whose transformer blocks diffusers 0.42's First Block Cache knows (``WanTransformerBlock``;
#: SkyReels V2's blocks are not in its registry, so it cannot hook them).
FIRST_BLOCK_CACHE_PIPELINES = ("WanPipeline", "WanVACEPipeline")


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


@dataclass(frozen=True, kw_only=True)
class SpeedOptions:
    """Opt-in speed-ups a ``WanVideoBackend`` applies once, when it is built; all off by default.

    The ``speed:`` section of a YAML profile (docs/profiles.md lists the rules and the drift each
    one was measured to cause on the tiny models):

    - ``half_precision``: ``"bfloat16"`` or ``"float16"``: the transformer and the VAE run in it on
      CUDA. On any other device they stay in float32 (a warning says so), so a GPU profile still
      renders, unchanged, on a CPU worker;
    - ``compile_mode``: compile the transformer with ``torch.compile`` in this mode (one of
      ``COMPILE_MODES``); each new chunk shape compiles on its first forward;
    - ``first_block_cache``: diffusers' First Block Cache with this threshold (> 0): a step whose
      first block changed its residual by less than the threshold (relative mean absolute
      difference) reuses the other blocks' residual from the step before;
    - ``vae_tiling``: ``(tile, stride)`` in pixels: the VAE decodes (and encodes) frames larger
      than ``tile`` in overlapping tiles, ``stride`` apart, to bound its memory at 1080p.
    """

    half_precision: str | None = None
    compile_mode: str | None = None
    first_block_cache: float | None = None
    vae_tiling: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.half_precision is not None and self.half_precision not in HALF_PRECISIONS:
            raise ValueError(f"half_precision must be one of {', '.join(HALF_PRECISIONS)}, got {self.half_precision!r}")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if self.first_block_cache is not None and not self.first_block_cache > 0:
            raise ValueError(f"first_block_cache must be > 0, got {self.first_block_cache}")
        if self.vae_tiling is not None:
            tile, stride = self.vae_tiling
            if not 0 < stride < tile:
                raise ValueError(
                    f"vae_tiling needs 0 < stride < tile (tiles must overlap), got tile {tile}, stride {stride}"
                )


def half_precision_dtype(speed: SpeedOptions, device: str | torch.device) -> torch.dtype | None:
    """The dtype ``speed.half_precision`` gives the transformer and the VAE on ``device``: None
    (float32 kept) unless it is asked for and ``device`` is CUDA."""
    if speed.half_precision is None or torch.device(device).type != "cuda":
        return None
    return getattr(torch, speed.half_precision)


def enable_vae_tiling(vae: AutoencoderKLWan, tile: int, stride: int) -> None:
    """Decode (and encode) frames larger than ``tile`` pixels in ``tile`` x ``tile`` tiles ``stride`` apart.

    Neighbouring tiles overlap by ``tile - stride`` pixels and are blended linearly there. Both must
    be multiples of the VAE's spatial stride (8 for Wan 2.1): diffusers divides them by it and
    would otherwise round the tiles silently.
    """
    spatial = int(vae.config.scale_factor_spatial)
    if tile % spatial or stride % spatial or not 0 < stride < tile:
        raise ValueError(
            f"vae_tiling needs tile and stride multiples of the VAE's spatial stride ({spatial}) with "
            f"0 < stride < tile, got tile {tile}, stride {stride}"
        )
    vae.enable_tiling(
        tile_sample_min_height=tile,
        tile_sample_min_width=tile,
        tile_sample_stride_height=stride,
        tile_sample_stride_width=stride,
    )


class _VaceHintCorrection:
    """Takes VACE's control hints back out of the blocks First Block Cache skipped.

    ``WanVACETransformer3DModel`` adds a control hint to the hidden states after each block of
    ``vace_layers``, outside the blocks. First Block Cache reuses the residual between the first
    block's output and the last block's, which already holds the hints of every VACE layer but the
    last; in a skipped step the skipped blocks pass their input through, and the transformer adds
    those hints again. Measured on the tiny VACE (12 steps, threshold 0.05), that doubled the drift
    of a cached render (mean 1.07 levels of 255 instead of 0.14 with this correction, the
    ``WanPipeline`` level). So after a skipped block ``j`` this subtracts the hint the transformer
    added after block ``j - 1`` (the current step's, recorded from ``vace_blocks``), which leaves
    exactly the cached residual plus the last layer's fresh hint.

    A skipped block returns its input tensor itself (diffusers' ``FBCBlockHook``); a computed one
    never does: that identity is how a skip is recognised, without reading the hooks' state.
    """

    def __init__(self, transformer: torch.nn.Module) -> None:
        self._layers = [int(layer) for layer in transformer.config.vace_layers]
        self._hints: dict[int, torch.Tensor] = {}
        self._scales: Any = None
        transformer.register_forward_pre_hook(self._begin, with_kwargs=True)
        for index, block in enumerate(transformer.vace_blocks):
            block.register_forward_hook(functools.partial(self._record, index))
        for index, block in enumerate(transformer.blocks):
            if index >= 1 and index - 1 in self._layers:
                block.register_forward_hook(functools.partial(self._take_back, index - 1))

    def _begin(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self._hints.clear()
        self._scales = kwargs.get("control_hidden_states_scale")

    def _record(self, index: int, module: torch.nn.Module, args: tuple, output: Any) -> None:
        # vace_blocks[k] makes the hint of vace_layers[k] (the transformer pops them in that order).
        scale = 1.0 if self._scales is None else self._scales[index]
        self._hints[self._layers[index]] = output[0] * scale

    def _take_back(self, layer: int, module: torch.nn.Module, args: tuple, output: Any) -> Any:
        if output is not args[0]:
            return None  # computed: the hint belongs there
        return output - self._hints[layer].to(output.device)


def enable_first_block_cache(transformer: torch.nn.Module, threshold: float) -> None:
    """diffusers' First Block Cache on ``transformer`` (a Wan or Wan VACE transformer) at ``threshold``.

    Each denoising call (``cache_context("cond")`` / ``("uncond")``) keeps its own cache; reset it
    between chunks with ``reset_step_cache``. VACE transformers get ``_VaceHintCorrection``.
    """
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    if not isinstance(transformer, diffusers.WanTransformer3DModel | diffusers.WanVACETransformer3DModel):
        raise ValueError(
            f"first_block_cache needs a Wan 2.1 transformer ({', '.join(FIRST_BLOCK_CACHE_PIPELINES)}); "
            f"diffusers has no First Block Cache for {type(transformer).__name__}"
        )
    apply_first_block_cache(transformer, FirstBlockCacheConfig(threshold=threshold))
    if isinstance(transformer, diffusers.WanVACETransformer3DModel):
        _VaceHintCorrection(transformer)


def reset_step_cache(transformer: torch.nn.Module) -> None:
    """Forget what First Block Cache remembered of the previous steps (a no-op without it)."""
    from diffusers.hooks import HookRegistry

    HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks()


def compile_transformer(transformer: torch.nn.Module, mode: str) -> None:
    """``torch.compile`` ``transformer`` in place (``mode`` one of ``COMPILE_MODES``).

    In place (``nn.Module.compile``), so the pipeline keeps the same module, with its config,
    dtype and cache hooks. Compiling is lazy: each new input shape compiles on its first forward.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    transformer.compile(mode=None if mode == "default" else mode)


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
        speed: SpeedOptions | None = None,
    ) -> None:
        """Wrap ``pipeline`` (already on its device and dtype).

        ``max_sequence_length`` is the number of text tokens per prompt; by default the
        tokenizer's ``model_max_length`` capped at Wan's 512 (the tiny tokenizer says 64).
        ``conditioning_cache_size`` is how many chunk shapes keep their blank VACE conditioning
        latents (0: encode them for every chunk, as the bare pipeline does). ``speed`` options
        are applied to the pipeline here (see ``SpeedOptions``); none by default.
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
        #: The speed options asked for (``SpeedOptions``); ``half_precision`` only takes effect on CUDA.
        self.speed: SpeedOptions = speed or SpeedOptions()
        self._apply_speed(self.speed)

    def _transformers(self) -> list[torch.nn.Module]:
        pipe = self.pipeline
        return [model for model in (pipe.transformer, getattr(pipe, "transformer_2", None)) if model is not None]

    def _apply_speed(self, speed: SpeedOptions) -> None:
        """Apply ``speed`` to the pipeline: precision first, then the VAE tiles, the step cache
        (its hooks must be in place before the transformer is traced) and the compile."""
        pipe, applied = self.pipeline, []
        half = half_precision_dtype(speed, self.device)
        if speed.half_precision is not None and half is None:
            log.warning(
                "speed.half_precision %s applies on CUDA only: on %s the transformer and VAE stay in float32",
                speed.half_precision,
                self.device,
            )
        elif half is not None:
            for module in (*self._transformers(), pipe.vae):
                module.to(dtype=half)
            applied.append(f"transformer and VAE in {speed.half_precision}")
        if speed.vae_tiling is not None:
            enable_vae_tiling(pipe.vae, *speed.vae_tiling)
            applied.append("VAE tiles {} px, stride {}".format(*speed.vae_tiling))
        if speed.first_block_cache is not None:
            for model in self._transformers():
                enable_first_block_cache(model, speed.first_block_cache)
            applied.append(f"First Block Cache, threshold {speed.first_block_cache:g}")
        if speed.compile_mode is not None:
            for model in self._transformers():
                compile_transformer(model, speed.compile_mode)
            applied.append(f"torch.compile ({speed.compile_mode})")
        if applied:
            log.info("%s: %s", type(pipe).__name__, "; ".join(applied))

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str = DEFAULT_WAN_WEIGHTS,
        *,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        max_sequence_length: int | None = None,
        pipeline: str = "WanPipeline",
        speed: SpeedOptions | None = None,
        **kwargs: Any,
    ) -> WanVideoBackend:
        """Load a Wan-family checkpoint (diffusers layout) from a local folder or hub id.

        ``pipeline`` names the diffusers class (one of ``VIDEO_PIPELINES``): ``WanPipeline`` for Wan
        2.1 text-to-video, ``WanVACEPipeline`` for Wan 2.1 VACE, ``SkyReelsV2DiffusionForcingPipeline``
        for SkyReels V2 DF.

        ``torch_dtype`` defaults to bfloat16 on a GPU and float32 on the CPU; the VAE loads in
        float32, as Wan's authors recommend (bf16 decoding bands the colours), unless
        ``speed.half_precision`` asks otherwise on CUDA. Hub downloads
        follow the usual ``HF_HOME``/``HF_HUB_OFFLINE`` settings; extra ``kwargs`` (e.g.
        ``local_files_only=True``, ``revision``) go to ``WanPipeline.from_pretrained``.

        ``speed`` (``SpeedOptions``) is applied once the pipeline is on its device. Its
        ``half_precision``, on CUDA, loads the transformer and the VAE straight in that dtype
        (the text encoder keeps ``torch_dtype``).
        """
        device = torch.device(device or default_device())
        speed = speed or SpeedOptions()
        if torch_dtype is None:
            torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        half = half_precision_dtype(speed, device)
        dtypes: torch.dtype | dict[str, torch.dtype] = torch_dtype
        if half is not None:
            dtypes = {"default": torch_dtype, "transformer": half, "transformer_2": half}
        vae = AutoencoderKLWan.from_pretrained(path_or_hub_id, subfolder="vae", dtype=half or torch.float32, **kwargs)
        pipe = pipeline_class(pipeline).from_pretrained(path_or_hub_id, vae=vae, dtype=dtypes, **kwargs)
        pipe.to(device)
        align_cpu_weights(pipe)
        return cls(pipe, max_sequence_length=max_sequence_length, speed=speed)

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
        if self.speed.first_block_cache is not None:
            # The pipeline resets the cache when a call ends, not when one raised (a cancelled
            # chunk): a chunk never compares its steps with another chunk's.
            for model in self._transformers():
                reset_step_cache(model)
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
            slots = self.reference_noise(request, len(references))
            latents = torch.cat([slots.to(latents.device), latents], dim=2)
        return extra, latents

    def reference_noise(self, request: ChunkRequest, count: int) -> torch.Tensor:
        """The float32 noise ``[1, C, count, h, w]`` of ``count`` reference-image latent slots,
        drawn from the result seed: every chunk or window of a result starts them the same."""
        channels, h, w = self.latent_frame_shape(request.height, request.width)
        generator = torch.Generator("cpu").manual_seed((request.seed * 7919 + 17) % 2**63)
        return torch.randn((1, channels, count, h, w), generator=generator, dtype=torch.float32)
