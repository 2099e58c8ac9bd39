"""A toy video model whose seams are measurable on a CPU: an exact Gaussian-process denoiser.

``ToyGPBackend`` has no weights. Its "model" is the closed-form posterior mean of a Gaussian prior
over a window's clean latents, so it denoises like a real video diffusion model in the one respect
that makes chunk seams: every output frame depends on the whole window, the way attention makes it.
Two overlapping windows denoised independently therefore disagree on their shared frames, a window
covering the whole clip is the seamless reference, and co-denoising (fusing the overlap predictions
at every step) can be checked against both in seconds. It implements ``VideoBackend`` (the farm's
``parallel`` path; not ``sequential``, which conditions a chunk on its predecessor's frames and the
toy takes no conditioning) and ``SteppedVideoBackend`` (``codenoise``).

The model, per channel ``c`` and latent pixel ``(y, x)``, over a window's ``T`` latent frames:

- **Prior** on the clean latents: ``x0 ~ N(mu, K)``, independent across channels and pixels, with
  ``K[i, j] = a_s * exp(-(i-j)^2 / (2 l_s^2)) + a_f * exp(-(i-j)^2 / (2 l_f^2)) + eps * [i == j]``:
  a smooth component (long length scale ``l_s``: slow colour drift) plus a fast one (short ``l_f``:
  frame-to-frame motion). ``mu`` is a static field derived from the prompt embeddings (a colour per
  channel plus one low-frequency spatial wave, ``prompt_mean``).
- **Noising** (rectified flow, as Wan): ``x_s = (1 - s) x0 + s * noise`` for ``s`` from 1 to 0.
- **Prediction**: the exact posterior mean ``E[x0 | x_s] = mu + A_s (x_s - (1 - s) mu)`` with
  ``A_s = (1 - s) K ((1 - s)^2 K + s^2 I)^-1`` (a ``T x T`` matrix mixing the window's frames),
  returned as the flow velocity ``v = (x_s - E[x0 | x_s]) / s``.
- **Scheduler**: Euler on the flow, ``x <- x + (s_{i+1} - s_i) v`` over ``s_i = shift(1 - i/N)``
  with Wan's time shift ``shift(s) = k s / (1 + (k - 1) s)``; the last step lands on ``s = 0``.
- **Guidance**: ``guidance_scale`` is accepted and ignored. Classifier-free guidance would only
  rescale the prompt's mean field here (the posterior mean is affine in ``mu``), which adds
  nothing to what the toy is for; the prediction is the conditional one.
- **Decoder**: a fixed linear map of the channels to RGB, ``rgb = 0.5 + g * M x``; time expands
  like Wan's causal VAE (pixel frame 0 is latent frame 0; latent frame ``j >= 1`` covers pixel
  frames ``4(j-1)+1 .. 4j``, interpolated linearly from latent ``j-1`` to ``j``, so frame ``4j``
  is latent ``j`` exactly and motion is smooth); space is upsampled bilinearly (pixel centres,
  edges clamped) from the ``/8`` latent grid to the requested size.

Everything is float32 torch on the CPU except the ``T x T`` gain matrices (float64 numpy, cast
once), one window at a time, so a window renders bit-identically in any process on the same kind
of machine (torch build and CPU). Latents are ``ceil(size / 8)`` on a
side, so any size renders; any frame count renders too (the decode is cut to ``num_frames``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from models.base import ChunkRequest, PromptEmbeds, StepCallback

# The profile, its model id and constants live in a torch-free module (the scheduler reads
# profiles without loading torch); re-exported here.
from models.toy_profile import TOY_AUDIO_STEPS as TOY_AUDIO_STEPS
from models.toy_profile import TOY_GP_MODEL as TOY_GP_MODEL
from models.toy_profile import TOY_NATIVE_AREA as TOY_NATIVE_AREA
from models.toy_profile import TOY_STEPS as TOY_STEPS
from models.toy_profile import toy_gp_profile as toy_gp_profile

#: Shape of ``PromptEmbeds.prompt_embeds``: ``[1, tokens, dim]`` hashed from the text.
TOY_EMBED_TOKENS = 4
TOY_EMBED_DIM = 16

#: Channels -> RGB of the decoder (rows: R, G, B), fixed. The fourth channel is luminance-like.
_DECODER = np.array(
    [
        [0.55, 0.25, -0.20, 0.45],
        [-0.15, 0.55, 0.30, 0.45],
        [0.25, -0.30, 0.55, 0.45],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True, kw_only=True)
class ToyGPConfig:
    """The toy model's constants. Lengths are in latent frames (4 pixel frames each at 32 fps).

    The defaults are tuned with ``benchmarks/seams_toy.py`` (15 s, 224x128, 39 seams) so that
    independent 17-frame windows crossfaded over 5-frame overlaps show a clear seam (SJR max about
    1.29, median 1.21) while one full-clip window shows none (max about 1.07, median 1.02). A longer
    ``smooth_length`` or a larger ``smooth_variance`` makes windows disagree more (``l_s = 6``,
    ``a_s = 0.7``: parallel SJR about 2).
    """

    #: Latent channels (at most 4) and spatial compression: ``latent_frame_shape`` is
    #: ``(C, ceil(h/8), ceil(w/8))``.
    channels: int = 4
    spatial_stride: int = 8
    #: Smooth component of the temporal kernel: variance ``a_s`` and length scale ``l_s`` (12 pixel
    #: frames: a 5-latent-frame window sees about one and a half of them, so windows disagree).
    smooth_variance: float = 0.5
    smooth_length: float = 3.0
    #: Fast component: variance ``a_f`` and length scale ``l_f`` (the frame-to-frame motion).
    fast_variance: float = 0.5
    fast_length: float = 1.0
    #: Diagonal jitter ``eps`` (keeps ``K`` well conditioned for long windows).
    jitter: float = 1e-4
    #: Wan-style time shift ``k`` of the flow-matching schedule (1: linear sigmas).
    shift: float = 1.0
    #: Amplitude of the prompt's spatial wave in the mean field, and the decoder gain ``g`` (0.25:
    #: frames of standard deviation ~34 grey levels moving ~4 levels a frame, <0.1% clipped).
    mean_amplitude: float = 0.5
    decoder_gain: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= _DECODER.shape[1]:
            raise ValueError(f"channels must be within 1..{_DECODER.shape[1]} (the decoder's), got {self.channels}")
        if self.spatial_stride < 1:
            raise ValueError(f"spatial_stride must be >= 1, got {self.spatial_stride}")
        if self.mean_amplitude < 0:
            raise ValueError(f"mean_amplitude must be >= 0, got {self.mean_amplitude}")
        for name in (
            "smooth_variance",
            "smooth_length",
            "fast_variance",
            "fast_length",
            "jitter",
            "shift",
            "decoder_gain",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def temporal_kernel(num_latent_frames: int, config: ToyGPConfig) -> np.ndarray:
    """The prior covariance ``K`` (float64 ``[T, T]``) of one latent pixel over ``T`` frames.

    >>> K = temporal_kernel(3, ToyGPConfig())
    >>> K.shape, bool(np.allclose(K, K.T)), round(float(K[0, 0]), 4)
    ((3, 3), True, 1.0001)
    """
    index = np.arange(num_latent_frames, dtype=np.float64)
    squared = (index[:, None] - index[None, :]) ** 2
    return (
        config.smooth_variance * np.exp(-squared / (2 * config.smooth_length**2))
        + config.fast_variance * np.exp(-squared / (2 * config.fast_length**2))
        + config.jitter * np.eye(num_latent_frames)
    )


def flow_sigmas(num_steps: int, shift: float) -> tuple[float, ...]:
    """Noise levels ``s_0 = 1 > s_1 > ... > s_N = 0`` of an ``N``-step schedule with Wan's time shift.

    >>> flow_sigmas(2, 1.0)
    (1.0, 0.5, 0.0)
    """
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    linear = 1.0 - np.arange(num_steps + 1, dtype=np.float64) / num_steps
    return tuple(float(s) for s in shift * linear / (1.0 + (shift - 1.0) * linear))


def posterior_gain(kernel: np.ndarray, sigma: float) -> np.ndarray:
    """``A_s = (1-s) K ((1-s)^2 K + s^2 I)^-1``: ``E[x0 | x_s] - mu = A_s (x_s - (1-s) mu)``.

    ``K`` and ``(1-s)^2 K + s^2 I`` commute, so ``A_s`` is symmetric; it is 0 at ``s = 1`` (pure
    noise says nothing) and tends to the identity as ``s -> 0``.
    """
    alpha = 1.0 - sigma
    size = kernel.shape[0]
    return np.linalg.solve(alpha**2 * kernel + sigma**2 * np.eye(size), alpha * kernel)


def hash_embeddings(text: str) -> torch.Tensor:
    """Deterministic ``[1, TOY_EMBED_TOKENS, TOY_EMBED_DIM]`` float32 in ``[-1, 1]`` from ``text``
    (SHAKE-256 of its UTF-8 bytes, two bytes per value)."""
    count = TOY_EMBED_TOKENS * TOY_EMBED_DIM
    raw = np.frombuffer(hashlib.shake_256(text.encode("utf-8")).digest(2 * count), dtype="<u2")
    values = raw.astype(np.float64) / 65535.0 * 2.0 - 1.0
    return torch.from_numpy(values.astype(np.float32).reshape(1, TOY_EMBED_TOKENS, TOY_EMBED_DIM))


def prompt_mean(prompt_embeds: torch.Tensor, channels: int, height: int, width: int, amplitude: float) -> torch.Tensor:
    """The prior mean ``mu`` (float32 ``[1, C, 1, h, w]``) a prompt's embeddings select.

    From ``v``, the token sum of the embeddings over ``sqrt(tokens)`` (about unit spread): channel
    ``c`` gets the colour ``0.8 tanh(v_c)`` plus a wave ``amplitude * cos(2 pi (f_y y' + f_x x') +
    pi v_{C+2+c})`` over the normalised latent grid ``(y', x')`` in ``[0, 1)``, with frequencies
    ``f = 1 + v/2`` from ``v_C`` and ``v_{C+1}``: the same picture at any size.
    """
    embeds = prompt_embeds.detach().to("cpu", torch.float64).numpy().reshape(-1, prompt_embeds.shape[-1])
    v = embeds.sum(axis=0) / math.sqrt(embeds.shape[0])
    y = (np.arange(height, dtype=np.float64) + 0.5) / height
    x = (np.arange(width, dtype=np.float64) + 0.5) / width
    freq_y, freq_x = 1.0 + v[channels] / 2, 1.0 + v[channels + 1] / 2
    phase = 2 * np.pi * (freq_y * y[:, None] + freq_x * x[None, :])
    mean = np.stack(
        [0.8 * np.tanh(v[c]) + amplitude * np.cos(phase + np.pi * v[channels + 2 + c]) for c in range(channels)]
    )
    return torch.from_numpy(mean.astype(np.float32)).reshape(1, channels, 1, height, width)


def _bilinear_matrix(out_size: int, in_size: int, stride: int) -> np.ndarray:
    """``[out, in]`` bilinear weights from ``in`` cells of ``stride`` pixels to ``out`` pixels
    (sampling at pixel centres, edges clamped, rows sum to 1)."""
    position = np.clip((np.arange(out_size, dtype=np.float64) + 0.5) / stride - 0.5, 0.0, in_size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    frac = position - low
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    matrix[np.arange(out_size), low] += 1.0 - frac
    matrix[np.arange(out_size), high] += frac
    return matrix


def _temporal_matrix(num_frames: int, num_latent_frames: int, stride: int) -> np.ndarray:
    """``[num_frames, T]`` causal expansion: frame 0 is latent 0, frame ``s(j-1)+r`` (``r = 1..s``)
    is ``((s-r) z_{j-1} + r z_j) / s`` (``num_frames <= s(T-1) + 1``)."""
    matrix = np.zeros((num_frames, num_latent_frames), dtype=np.float64)
    matrix[0, 0] = 1.0
    for frame in range(1, num_frames):
        j, r = (frame - 1) // stride + 1, (frame - 1) % stride + 1
        matrix[frame, j - 1] = (stride - r) / stride
        matrix[frame, j] = r / stride
    return matrix


@dataclass(eq=False, kw_only=True)
class ToyWindowState:
    """One window of ``ToyGPBackend``: latents (updated in place), prior mean and schedule."""

    chunk_index: int
    latents: torch.Tensor
    mean: torch.Tensor
    sigmas: tuple[float, ...]
    num_frames: int
    height: int
    width: int


class ToyGPBackend:
    """The analytic Gaussian-process denoiser (see the module docstring for the formulas).

    Both a ``VideoBackend`` and a ``SteppedVideoBackend``; ``render_chunk`` is the stepped loop.
    Noise comes only from ``request.latents``; ``request.seed`` is not used.
    """

    temporal_stride: int = 4
    supports_conditioning: bool = False
    #: Euler steps read nothing but their index: a window restarts from a latent checkpoint exactly.
    resumable: bool = True

    def __init__(self, config: ToyGPConfig | None = None) -> None:
        self.config = config or ToyGPConfig()
        # (T, sigma) -> float32 gain; frame counts and sizes -> decoder matrices. Windows of a plan
        # share one length, so a render computes each of these once per worker.
        self._gains: dict[tuple[int, float], torch.Tensor] = {}
        self._decoders: dict[tuple[int, int, int, int, int, int], tuple[torch.Tensor, ...]] = {}

    # -- VideoBackend ---------------------------------------------------------------------------

    def latent_frame_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(C, ceil(height / 8), ceil(width / 8))``."""
        stride = self.config.spatial_stride
        return (self.config.channels, -(-height // stride), -(-width // stride))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """``[1, C, T, h, w]`` for ``num_frames`` pixel frames: ``T = ceil((num_frames - 1) / 4) + 1``."""
        channels, h, w = self.latent_frame_shape(height, width)
        return (1, channels, -(-(num_frames - 1) // self.temporal_stride) + 1, h, w)

    def encode_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        """Hash ``prompt`` (and ``negative_prompt``, ``""`` when None) into embeddings; no model."""
        return PromptEmbeds(
            prompt_embeds=hash_embeddings(prompt), negative_prompt_embeds=hash_embeddings(negative_prompt or "")
        )

    def render_chunk(self, request: ChunkRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """Denoise ``request.latents`` and decode: ``uint8 [num_frames, height, width, 3]``.

        ``on_step(i, total)`` is called after each step (it may raise to cancel).
        """
        state = self.begin_window(request)
        total = self.num_steps(state)
        for i in range(total):
            self.step(state, i, self.predict(state, i))
            if on_step is not None:
                on_step(i, total)
        return self.decode(state)

    # -- SteppedVideoBackend --------------------------------------------------------------------

    def begin_window(self, request: ChunkRequest) -> ToyWindowState:
        """Check ``request`` and start its window from a float32 copy of ``request.latents``."""
        where = f"(chunk {request.chunk_index})"
        if request.num_frames < 1 or request.height < 1 or request.width < 1:
            raise ValueError(
                f"num_frames, height and width must be >= 1, got {request.num_frames} frames at "
                f"{request.width}x{request.height} {where}"
            )
        if request.conditioning is not None and not request.conditioning.empty:
            raise ValueError(f"the toy GP model cannot take keyframes, masks or reference images {where}")
        expected = self.latent_shape(request.num_frames, request.height, request.width)
        if tuple(request.latents.shape) != expected:
            raise ValueError(
                f"latents {where} have shape {tuple(request.latents.shape)}, expected {expected} for "
                f"{request.num_frames} frames at {request.width}x{request.height}"
            )
        _, channels, _, h, w = expected
        return ToyWindowState(
            chunk_index=request.chunk_index,
            latents=request.latents.to(device="cpu", dtype=torch.float32, copy=True),
            mean=prompt_mean(request.prompt.prompt_embeds, channels, h, w, self.config.mean_amplitude),
            sigmas=flow_sigmas(request.num_inference_steps, self.config.shift),
            num_frames=request.num_frames,
            height=request.height,
            width=request.width,
        )

    def num_steps(self, state: ToyWindowState) -> int:
        """``num_inference_steps`` of the window's request."""
        return len(state.sigmas) - 1

    def predict(self, state: ToyWindowState, step: int) -> torch.Tensor:
        """The flow velocity ``(x_s - E[x0 | x_s]) / s`` at ``s = sigmas[step]`` (float32, new tensor)."""
        sigma = state.sigmas[step]
        x = state.latents
        offset = x - (1.0 - sigma) * state.mean
        batch, channels, frames, h, w = x.shape
        # The T x T gain mixes the window's frames: [T, T] @ [B*C, T, h*w], contiguous operands.
        mixed = torch.matmul(self._gain(frames, sigma), offset.reshape(batch * channels, frames, h * w))
        denoised = state.mean + mixed.reshape(x.shape)
        return (x - denoised) / sigma

    def step(self, state: ToyWindowState, step: int, prediction: torch.Tensor) -> None:
        """Euler step ``x <- x + (s_{i+1} - s_i) v`` in place."""
        if tuple(prediction.shape) != tuple(state.latents.shape):
            raise ValueError(
                f"prediction of chunk {state.chunk_index} has shape {tuple(prediction.shape)}, "
                f"expected {tuple(state.latents.shape)}"
            )
        state.latents.add_(prediction.to(torch.float32), alpha=state.sigmas[step + 1] - state.sigmas[step])

    def latents(self, state: ToyWindowState) -> torch.Tensor:
        """The window's current latents (a view)."""
        return state.latents

    def decode(self, state: ToyWindowState) -> np.ndarray:
        """Latents to ``uint8 [num_frames, height, width, 3]`` RGB (see the module docstring)."""
        _, _, latent_frames, h, w = state.latents.shape
        colour, temporal, rows, cols = self._decoder(state.num_frames, latent_frames, state.height, state.width, h, w)
        z = state.latents[0]  # [C, T, h, w]
        rgb = torch.einsum("kc,cthw->kthw", colour, z)
        rgb = torch.einsum("ft,kthw->fhwk", temporal, rgb)  # [F, h, w, 3]
        rgb = torch.matmul(rows, rgb.movedim(-1, 1))  # [F, 3, H, w]
        rgb = torch.matmul(rgb, cols.T).movedim(1, -1)  # [F, H, W, 3]
        pixels = (0.5 + rgb).clamp_(0.0, 1.0).mul_(255.0).round_()  # round half to even
        return pixels.to(torch.uint8).contiguous().numpy()

    # -- cached matrices ------------------------------------------------------------------------

    def _gain(self, latent_frames: int, sigma: float) -> torch.Tensor:
        key = (latent_frames, sigma)
        if key not in self._gains:
            gain = posterior_gain(temporal_kernel(latent_frames, self.config), sigma)
            self._gains[key] = torch.from_numpy(gain.astype(np.float32))
        return self._gains[key]

    def _decoder(self, num_frames: int, latent_frames: int, height: int, width: int, h: int, w: int):
        key = (num_frames, latent_frames, height, width, h, w)
        if key not in self._decoders:
            stride = self.config.spatial_stride
            colour = self.config.decoder_gain * _DECODER[:, : self.config.channels]
            matrices = (
                colour,
                _temporal_matrix(num_frames, latent_frames, self.temporal_stride),
                _bilinear_matrix(height, h, stride),
                _bilinear_matrix(width, w, stride),
            )
            self._decoders[key] = tuple(torch.from_numpy(m.astype(np.float32)) for m in matrices)
        return self._decoders[key]
