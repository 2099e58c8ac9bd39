"""A Wan 2.1 backend whose denoising loop the caller drives one step at a time (``chunkMode: codenoise``).

``WanSteppedBackend`` is a ``WanVideoBackend`` (same pipeline, same ``render_chunk`` for the other
modes) that is also a ``SteppedVideoBackend`` (``models.stepped``). Its steps are the pipeline's own
loop body, split where co-denoising fuses the overlaps:

- ``begin_window``: what ``WanPipeline.__call__`` / ``WanVACEPipeline.__call__`` do before their
  loop (timesteps on a per-window copy of the scheduler, prompt embeddings in the transformer's
  dtype, and for VACE the conditioning latents and masks of the window's frames);
- ``predict``: the transformer pass(es) of one step with classifier-free guidance, exactly the
  pipeline's ``noise_uncond + g * (noise_pred - noise_uncond)`` in the transformer's dtype,
  returned as float32;
- ``step``: the scheduler step, with the prediction cast back to the transformer's dtype as the
  pipeline's own prediction would be (a no-op in float32);
- ``decode``: the pipeline's VAE decode and post-processing.

So with nothing fused in between, the stepped loop gives bit-identical frames to ``render_chunk``
(``tests/models/test_wan_stepped.py`` checks it on the tiny default: text-to-video, with frames and
masks, and with reference images).

Supported: ``WanPipeline`` and ``WanVACEPipeline`` (text-to-video, and VACE keyframes, source frames,
masks and reference images). VACE gives each reference image one latent slot in front of the
window's frames, denoised with them and dropped before decoding. Every window of a result carries
its own slots (the same noise, from the result seed), so the driver never sees them:
- ``predict`` returns the window's frames only, and keeps the slots' part of the prediction;
- ``step`` puts that part back in front of the fused frames;
- ``latents`` is the whole state, slots first (``WanWindowState.reference_slots`` of them). A
  checkpoint therefore carries them, and ``begin_window`` takes such latents back;
- ``models.stepped.window_latents`` gives the frames alone, for the overlap checksums.

Refused with a ``ValueError``: ``SkyReelsV2DiffusionForcingPipeline`` (diffusion forcing gives
every latent frame its own timestep, so there is no one step to take in lockstep).

Each window holds a deep copy of the pipeline's scheduler, so windows of one worker never share a
step counter. With ``FlowMatchEulerDiscreteScheduler`` (Wan 2.1's flow matching, the tiny default's)
a step depends only on its index: ``step`` sets the copy's index, the backend is ``resumable`` and
a window restarts from a latent checkpoint bit-identically. Multistep schedulers (UniPC, DPM++)
keep a history of predictions: those windows step strictly in order (``ValueError`` otherwise) and
``resumable`` is False, so a lost worker restarts the result from its noise.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

from models.base import ChunkConditioning, ChunkRequest
from models.wan import WanVideoBackend, frames_to_uint8

#: Pipelines a stepped backend runs (the others raise in ``WanSteppedBackend``).
STEPPED_PIPELINES = ("WanPipeline", "WanVACEPipeline")


def _check_steppable(pipeline: Any) -> None:
    name = type(pipeline).__name__
    if name not in STEPPED_PIPELINES:
        raise ValueError(
            f"{name} cannot be denoised step by step (co-denoising); supported: {', '.join(STEPPED_PIPELINES)}"
        )


def _resumable(scheduler: Any) -> bool:
    """Flow-matching Euler without noise injection reads nothing but its step index."""
    return isinstance(scheduler, FlowMatchEulerDiscreteScheduler) and not bool(
        scheduler.config.get("stochastic_sampling", False)
    )


@dataclass(eq=False, kw_only=True)
class WanWindowState:
    """One window of ``WanSteppedBackend``: latents, its own scheduler, embeddings and VACE inputs."""

    chunk_index: int
    #: ``[1, C, T, h, w]`` on the model's device: float32 before the first step, then the dtype the
    #: scheduler returns (the transformer's), as in the pipeline's loop.
    latents: torch.Tensor
    #: A copy of the pipeline's scheduler with the window's timesteps set.
    scheduler: Any
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    guidance_scale: float
    #: VACE: conditioning latents with their masks, and the per-layer scale (None: ``WanPipeline``).
    control: torch.Tensor | None
    control_scale: torch.Tensor | None
    num_frames: int
    height: int
    width: int
    #: Multistep schedulers only: the step ``step`` must take next.
    next_step: int = 0
    #: VACE reference images: latent slots in front of the window's frames in ``latents``.
    reference_slots: int = 0
    #: The reference slots' part of the last prediction, and its step (``step`` puts it back).
    reference_prediction: torch.Tensor | None = None
    reference_step: int = -1


class WanSteppedBackend(WanVideoBackend):
    """A ``WanVideoBackend`` that is also a ``SteppedVideoBackend`` (see the module docstring).

    Build it from a pipeline (``WanSteppedBackend(pipe)``) or around a loaded backend, sharing its
    weights (``WanSteppedBackend.from_backend(backend)``, what a ``VideoWorker`` does).
    """

    def __init__(self, pipeline: WanPipeline, **kwargs: Any) -> None:
        """Wrap ``pipeline`` as ``WanVideoBackend`` does (same keyword arguments)."""
        _check_steppable(pipeline)
        super().__init__(pipeline, **kwargs)
        #: Whether a window restarts from a latent checkpoint bit-identically (see the module docstring).
        self.resumable: bool = _resumable(pipeline.scheduler)

    @classmethod
    def from_backend(cls, backend: WanVideoBackend) -> WanSteppedBackend:
        """The stepped twin of ``backend``: the same pipeline, settings and caches (nothing is
        loaded, copied or wrapped a second time)."""
        if isinstance(backend, cls):
            return backend
        _check_steppable(backend.pipeline)
        stepped = cls.__new__(cls)
        stepped.__dict__.update(backend.__dict__)
        stepped.resumable = _resumable(backend.pipeline.scheduler)
        return stepped

    # -- helpers -------------------------------------------------------------------------------

    @property
    def _transformer_dtype(self) -> torch.dtype:
        pipe = self.pipeline
        return pipe.transformer.dtype if pipe.transformer is not None else pipe.transformer_2.dtype

    @property
    def _is_vace(self) -> bool:
        return isinstance(self.pipeline, diffusers.WanVACEPipeline)

    def _model_and_guidance(self, state: WanWindowState, t: torch.Tensor) -> tuple[Any, float]:
        """The transformer and guidance of timestep ``t`` (Wan 2.2 switches experts at a boundary)."""
        pipe = self.pipeline
        ratio = pipe.config.get("boundary_ratio")
        if ratio is None or t >= ratio * state.scheduler.config.num_train_timesteps:
            return pipe.transformer, state.guidance_scale
        return pipe.transformer_2, state.guidance_scale

    def _vace_control(self, request: ChunkRequest, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``WanVACEPipeline.__call__``'s conditioning latents (with masks) and scale for the window."""
        pipe, device = self.pipeline, self.device
        video = mask = None
        conditioning = request.conditioning
        if conditioning is not None and not conditioning.empty:
            dense_video, dense_mask = conditioning.dense(request.num_frames, request.height, request.width)
            # The very arrays ``WanVideoBackend._vace_inputs`` gives the pipeline.
            video = dense_video[None]
            mask = np.repeat(dense_mask[None, ..., None], 3, axis=-1)
        images = None
        if conditioning is not None and conditioning.reference_images:
            from PIL import Image

            # The very images ``WanVideoBackend._vace_inputs`` gives the pipeline.
            images = [Image.fromarray(np.ascontiguousarray(image)) for image in conditioning.reference_images]
        video, mask, references = pipe.preprocess_conditions(
            video, mask, images, 1, request.height, request.width, request.num_frames, torch.float32, device
        )
        # Unused by the argmax encodings; seeded as render_chunk's call is.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        latents = pipe.prepare_video_latents(video, mask, references, generator, device)
        masks = pipe.prepare_masks(mask, references, generator)
        control = torch.cat([latents, masks], dim=1).to(dtype)
        layers = (pipe.transformer if pipe.transformer is not None else pipe.transformer_2).config.vace_layers
        scale = torch.tensor([1.0] * len(layers)).to(device=device, dtype=dtype)
        return control, scale

    # -- SteppedVideoBackend -------------------------------------------------------------------

    @torch.inference_mode()
    def begin_window(self, request: ChunkRequest) -> WanWindowState:
        """Check ``request`` as ``render_chunk`` does and set up the window (see the module docstring).

        With reference images, ``request.latents`` is either the window's noise (the slots' noise
        is drawn here, as ``render_chunk`` draws it) or a checkpoint with the slots in front."""
        conditioning: ChunkConditioning | None = request.conditioning
        slots = len(conditioning.reference_images) if conditioning is not None and self._is_vace else 0
        latents = request.latents.to(device=self.device, dtype=torch.float32, copy=True)
        if slots:
            frames = self.latent_shape(request.num_frames, request.height, request.width)[2]
            if latents.shape[2] == frames + slots:  # a checkpoint: slots first
                request = dataclasses.replace(request, latents=request.latents[:, :, slots:])
            else:
                latents = torch.cat([self.reference_noise(request, slots).to(latents.device), latents], dim=2)
        self._check(request)
        device, dtype = self.device, self._transformer_dtype
        embeds = request.prompt
        guided = request.guidance_scale > 1.0
        if guided and embeds.negative_prompt_embeds is None:
            raise ValueError(f"guidance_scale > 1 needs negative prompt embeddings (chunk {request.chunk_index})")
        scheduler = copy.deepcopy(self.pipeline.scheduler)
        scheduler.set_timesteps(request.num_inference_steps, device=device)
        scheduler.set_begin_index(0)
        control = scale = None
        if self._is_vace:
            control, scale = self._vace_control(request, dtype)
        negative = embeds.negative_prompt_embeds
        return WanWindowState(
            chunk_index=request.chunk_index,
            latents=latents,
            scheduler=scheduler,
            prompt_embeds=embeds.prompt_embeds.to(device).to(dtype),
            negative_embeds=negative.to(device).to(dtype) if guided and negative is not None else None,
            guidance_scale=request.guidance_scale,
            control=control,
            control_scale=scale,
            num_frames=request.num_frames,
            height=request.height,
            width=request.width,
            reference_slots=slots,
        )

    def num_steps(self, state: WanWindowState) -> int:
        """Timesteps of the window's schedule."""
        return len(state.scheduler.timesteps)

    def _forward(self, model: Any, state: WanWindowState, latents: torch.Tensor, t: torch.Tensor, step: int, embeds):
        if self._is_vace:
            with model.cache_context("cond" if embeds is state.prompt_embeds else "uncond"):
                return model(
                    hidden_states=latents,
                    timestep=t.expand(latents.shape[0]),
                    encoder_hidden_states=embeds,
                    control_hidden_states=state.control,
                    control_hidden_states_scale=state.control_scale,
                    attention_kwargs=None,
                    return_dict=False,
                )[0]
        if self.pipeline.config.get("expand_timesteps", False):
            mask = torch.ones(state.latents.shape, dtype=torch.float32, device=latents.device)
            timestep = (mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0).expand(latents.shape[0], -1)
        else:
            timestep = t.expand(latents.shape[0])
        context = {
            "step_index": step,
            "sigma": float(state.scheduler.sigmas[step]),
            "num_inference_steps": len(state.scheduler.timesteps),
        }
        with model.cache_context("cond" if embeds is state.prompt_embeds else "uncond", **context):
            return model(
                hidden_states=latents,
                timestep=timestep,
                encoder_hidden_states=embeds,
                attention_kwargs=None,
                return_dict=False,
            )[0]

    @torch.inference_mode()
    def predict(self, state: WanWindowState, step: int) -> torch.Tensor:
        """The guided prediction (a flow velocity) at ``step`` of the window's frames: float32, a new
        tensor on the model's device (the reference slots' part stays in ``state``)."""
        t = state.scheduler.timesteps[step]
        model, guidance = self._model_and_guidance(state, t)
        latents = state.latents.to(self._transformer_dtype)
        prediction = self._forward(model, state, latents, t, step, state.prompt_embeds)
        if state.negative_embeds is not None:
            uncond = self._forward(model, state, latents, t, step, state.negative_embeds)
            prediction = uncond + guidance * (prediction - uncond)
        prediction = prediction.to(torch.float32, copy=True)
        slots = state.reference_slots
        if not slots:
            return prediction
        state.reference_prediction, state.reference_step = prediction[:, :, :slots].clone(), step
        return prediction[:, :, slots:].clone()

    @torch.inference_mode()
    def step(self, state: WanWindowState, step: int, prediction: torch.Tensor) -> None:
        """The scheduler step ``step`` with ``prediction`` (cast to the transformer's dtype, as the
        pipeline's own prediction is), replacing the window's latents. ``prediction`` covers the
        window's frames; the reference slots take their part of ``predict``'s of the same step."""
        slots = state.reference_slots
        expected = (*state.latents.shape[:2], state.latents.shape[2] - slots, *state.latents.shape[3:])
        if tuple(prediction.shape) != tuple(expected):
            raise ValueError(
                f"prediction of chunk {state.chunk_index} has shape {tuple(prediction.shape)}, expected {tuple(expected)}"
            )
        if slots:
            if state.reference_prediction is None or state.reference_step != step:
                raise ValueError(f"chunk {state.chunk_index} must predict step {step} before taking it")
            prediction = torch.cat(
                [state.reference_prediction, prediction.to(state.reference_prediction.device)], dim=2
            )
            state.reference_prediction = None
        scheduler = state.scheduler
        if self.resumable:
            # Euler reads nothing but its index: setting it makes the step a function of ``step``.
            scheduler._step_index = step
        elif step != state.next_step:
            raise ValueError(
                f"{type(scheduler).__name__} is a multistep scheduler: chunk {state.chunk_index} must take step "
                f"{state.next_step} next, not {step}"
            )
        output = prediction.to(device=state.latents.device, dtype=self._transformer_dtype)
        state.latents = scheduler.step(output, scheduler.timesteps[step], state.latents, return_dict=False)[0]
        state.next_step = step + 1

    def latents(self, state: WanWindowState) -> torch.Tensor:
        """The current latents as float32, reference slots first (the tensor itself when it is
        float32 already): a checkpoint ``begin_window`` takes back."""
        return state.latents if state.latents.dtype == torch.float32 else state.latents.float()

    @torch.inference_mode()
    def decode(self, state: WanWindowState) -> np.ndarray:
        """The pipeline's VAE decode: ``uint8 [num_frames, height, width, 3]``."""
        vae = self.pipeline.vae
        # VACE drops the reference slots before decoding.
        latents = state.latents[:, :, state.reference_slots :]
        latents = latents.to(device=next(vae.parameters()).device, dtype=vae.dtype)
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
        video = vae.decode(latents / std + mean, return_dict=False)[0]
        frames = self.pipeline.video_processor.postprocess_video(video, output_type="np")
        return frames_to_uint8(frames[0])


__all__ = ["STEPPED_PIPELINES", "WanSteppedBackend", "WanWindowState"]
