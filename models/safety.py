"""Content safety (``safety.checkContent``): flag rendered frames that show a banned concept.

A ``SafetyChecker`` looks at some frames of a result (the farm picks them: first, middle and last
of each chunk in mode ``fast``, every frame in mode ``full``) and answers a ``SafetyVerdict``; a
flagged result fails with ``SafetyError`` and is never delivered.

``ClipSafetyChecker`` is CLIP zero-shot classification. Each frame is compared with one text
prompt per concept (``"a photo of {concept}"``) and with a set of neutral prompts
(``safe_prompts``); the cosine similarities times CLIP's logit scale go through one softmax over
``concepts + safe_prompts``. A frame is flagged when a concept's probability is at least
``threshold``. The neutral prompts give the softmax somewhere to put the mass of an ordinary
frame, so a concept does not win just by being the least unlikely one; a threshold above 1 never
flags. This module imports neither torch nor transformers until a model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ClipSafetyChecker", "DEFAULT_SAFE_PROMPTS", "SafetyChecker", "SafetyVerdict"]

#: Neutral prompts of ``ClipSafetyChecker`` unless a profile gives its own: everyday subjects
#: that absorb the probability of frames showing none of the concepts.
DEFAULT_SAFE_PROMPTS = (
    "a photo of an ordinary scene",
    "a photo of a landscape",
    "a photo of people in everyday clothes",
    "a photo of an animal",
    "a photo of a city street",
    "a photo of a room",
)

#: How a concept becomes a CLIP text prompt.
CONCEPT_TEMPLATE = "a photo of {}"


@dataclass(frozen=True, kw_only=True)
class SafetyVerdict:
    """What a checker concluded about a batch of frames.

    ``score`` is the highest concept probability over all frames (flagged or not, so an operator
    can see the margin); ``concept`` and ``frame`` (its index within the frames given) name where
    it was reached when ``flagged`` and are None otherwise.
    """

    flagged: bool
    concept: str | None
    score: float
    frame: int | None


@runtime_checkable
class SafetyChecker(Protocol):
    """Checks frames for banned content."""

    def check(self, frames: np.ndarray) -> SafetyVerdict:
        """Verdict for ``uint8 [n, H, W, 3]`` RGB frames (``n`` may be 0: not flagged)."""
        ...


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ClipSafetyChecker:
    """CLIP zero-shot safety checker (see the module docstring for the scoring).

    ``model`` is a ``transformers.CLIPModel``; ``tokenizer`` and ``image_processor`` its text
    tokenizer and ``CLIPImageProcessor``. The text embeddings are computed once, here; ``check``
    embeds frames ``batch_size`` at a time.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        *,
        concepts: Sequence[str],
        threshold: float,
        safe_prompts: Sequence[str] = DEFAULT_SAFE_PROMPTS,
        batch_size: int = 16,
    ):
        import torch

        concepts = list(concepts)
        if not concepts or not all(isinstance(c, str) and c.strip() for c in concepts):
            raise ValueError(f"concepts must be a non-empty list of non-empty strings, got {concepts!r}")
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.concepts = concepts
        self.safe_prompts = list(safe_prompts)
        self.threshold = float(threshold)
        self.batch_size = batch_size
        texts = [CONCEPT_TEMPLATE.format(c) for c in concepts] + self.safe_prompts
        tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            text = model.get_text_features(**{k: v.to(model.device) for k, v in tokens.items()})
        text = getattr(text, "pooler_output", text)  # a tensor, or an output object in newer transformers
        self._text = torch.nn.functional.normalize(text.float(), dim=-1)
        self._scale = float(model.logit_scale.detach().exp())

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        concepts: Sequence[str],
        threshold: float,
        safe_prompts: Sequence[str] = DEFAULT_SAFE_PROMPTS,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
        batch_size: int = 16,
        **kwargs: Any,
    ) -> ClipSafetyChecker:
        """Load a CLIP checkpoint (model, tokenizer, image processor) from a folder or hub id.

        ``device`` defaults to the GPU when one is visible, ``torch_dtype`` to float16 there and
        float32 on the CPU; ``kwargs`` (e.g. ``local_files_only=True``) go to every ``from_pretrained``.
        """
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        device = torch.device(device or _default_device())
        if torch_dtype is None:
            torch_dtype = torch.float16 if device.type == "cuda" else torch.float32
        model = CLIPModel.from_pretrained(path_or_id, dtype=torch_dtype, **kwargs).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **kwargs)
        image_processor = AutoImageProcessor.from_pretrained(path_or_id, **kwargs)
        return cls(
            model,
            tokenizer,
            image_processor,
            concepts=concepts,
            threshold=threshold,
            safe_prompts=safe_prompts,
            batch_size=batch_size,
        )

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """``float32 [n, len(concepts)]``: each frame's softmax probability of each concept."""
        import torch

        _check_frames(frames)
        out = np.zeros((len(frames), len(self.concepts)), dtype=np.float32)
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                image = self.model.get_image_features(pixel_values=pixels.to(self.model.device, self.model.dtype))
            image = getattr(image, "pooler_output", image)
            image = torch.nn.functional.normalize(image.float(), dim=-1)
            logits = self._scale * image @ self._text.T
            probs = logits.softmax(dim=-1)[:, : len(self.concepts)]
            out[start : start + len(batch)] = probs.cpu().numpy()
        return out

    def check(self, frames: np.ndarray) -> SafetyVerdict:
        probs = self.probabilities(frames)
        if probs.size == 0:
            return SafetyVerdict(flagged=False, concept=None, score=0.0, frame=None)
        frame, concept = np.unravel_index(int(np.argmax(probs)), probs.shape)
        score = float(probs[frame, concept])
        if score >= self.threshold:
            return SafetyVerdict(flagged=True, concept=self.concepts[concept], score=score, frame=int(frame))
        return SafetyVerdict(flagged=False, concept=None, score=score, frame=None)

    def __repr__(self) -> str:
        return f"ClipSafetyChecker(concepts={self.concepts!r}, threshold={self.threshold})"


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"frames must be uint8 [n, H, W, 3] RGB, got {dtype} {shape}")
