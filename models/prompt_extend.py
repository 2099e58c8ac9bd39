"""Prompt extension (``settings.promptExtend``): turn a short prompt into a richer one.

A ``PromptExtender`` is called once per result, before the prompt is encoded, with the result's
seed; the farm renders the extended prompt and reports it as ``extendedPrompt``. Two extenders:

* ``TemplateExtender`` — the embedded default: appends cinematic detail phrases picked
  deterministically from the prompt text and the seed. No model, no weights, microseconds.
* ``TransformersExtender`` — a chat LLM (``AutoModelForCausalLM`` + a tokenizer with a chat
  template) asked to rewrite the prompt; configured by a profile's ``prompt_extender.model``.

Both follow one contract, enforced by ``merge_extension``: the result keeps every ``@tag`` of the
prompt (tags link the prompt to reference inputs), is at most ``MAX_PROMPT_CHARS`` characters and
is never empty. A tag is what ``farm.domain.constants.TAG_PATTERN`` reads, the grammar the task
validator accepts and checks mentions with. This module imports neither torch nor transformers
until a model is loaded.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from farm.domain.constants import POSITIVE_PROMPT_MAX_CHARS, prompt_tags

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "MAX_PROMPT_CHARS",
    "PromptExtender",
    "TemplateExtender",
    "TransformersExtender",
    "merge_extension",
    "prompt_tags",
]

#: Longest prompt the task API accepts (``positivePrompt``); an extension never exceeds it.
MAX_PROMPT_CHARS = POSITIVE_PROMPT_MAX_CHARS

#: What ``TransformersExtender`` asks the LLM to do unless a profile says otherwise.
DEFAULT_SYSTEM_PROMPT = (
    "You rewrite prompts for a text-to-video model. Expand the user's prompt into one vivid paragraph "
    "of at most 120 words: describe the subject, action, setting, lighting, camera movement and style. "
    "Keep every word that starts with @ exactly as written (they name reference images). "
    "Do not add dialogue or on-screen text. Answer with the rewritten prompt only."
)


def _clip(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, at the last space when there is one in the last 10%."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space >= max_chars * 0.9:
        cut = cut[:space]
    return cut.rstrip()


def _clean(text: str) -> str:
    """Generated text made prompt-shaped: undecodable bytes and control characters dropped,
    whitespace runs folded into one space, surrounding quotes and blanks stripped."""
    text = "".join(" " if c.isspace() else c for c in text.replace("\ufffd", "") if c.isprintable() or c.isspace())
    text = " ".join(text.split())
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def merge_extension(prompt: str, extension: str, *, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """The extended prompt for ``prompt`` given an extender's cleaned ``extension``.

    The rule, in order:

    1. an empty extension -> ``prompt`` unchanged;
    2. the extension (cut to ``max_chars`` at a word boundary) if it still mentions every ``@tag``
       of ``prompt`` -> the extension: the rewrite replaces the prompt;
    3. otherwise ``prompt + " " + extension``, the extension cut so the whole fits ``max_chars``:
       the original text carries the tags verbatim, the extension only adds detail;
    4. if nothing of the extension fits (``prompt`` is already ``max_chars`` long) -> ``prompt``.

    >>> merge_extension("a @fox in snow", "A red fox leaps through deep snow at dawn.")
    'a @fox in snow A red fox leaps through deep snow at dawn.'
    >>> merge_extension("a @fox in snow", "@fox leaps through deep snow at dawn.")
    '@fox leaps through deep snow at dawn.'
    """
    extension = extension.strip()
    if not extension:
        return prompt
    rewrite = _clip(extension, max_chars)
    if rewrite and set(prompt_tags(prompt)) <= set(prompt_tags(rewrite)):
        return rewrite
    room = max_chars - len(prompt) - 1
    addition = _clip(extension, room) if room > 0 else ""
    return f"{prompt} {addition}" if addition else prompt


@runtime_checkable
class PromptExtender(Protocol):
    """Extends a prompt; the same ``prompt`` and ``seed`` always give the same result."""

    def extend(self, prompt: str, *, seed: int) -> str:
        """The extended prompt: keeps every ``@tag`` of ``prompt``, at most ``MAX_PROMPT_CHARS`` long."""
        ...


# Detail phrases of the template extender, one list per aspect; one phrase of each is appended.
_TEMPLATE_ASPECTS: tuple[tuple[str, ...], ...] = (
    (
        "cinematic wide shot",
        "cinematic medium shot",
        "slow dolly-in",
        "smooth tracking shot",
        "gentle handheld camera",
        "low-angle shot",
        "aerial establishing shot",
        "slow pan across the scene",
    ),
    (
        "soft golden-hour light",
        "dramatic rim lighting",
        "diffuse overcast light",
        "warm practical lighting",
        "cool blue-hour light",
        "high-contrast chiaroscuro",
        "volumetric light through haze",
        "natural daylight",
    ),
    (
        "shallow depth of field",
        "35mm lens",
        "anamorphic lens flare",
        "50mm prime lens",
        "deep focus",
        "subtle film grain",
        "wide-angle lens",
        "telephoto compression",
    ),
    (
        "rich color grading",
        "muted earthy palette",
        "vibrant saturated colors",
        "teal and orange grade",
        "pastel tones",
        "moody desaturated palette",
        "natural color palette",
        "high dynamic range",
    ),
    (
        "highly detailed",
        "photorealistic textures",
        "smooth natural motion",
        "crisp fine detail",
        "realistic physics",
        "fluid lifelike movement",
        "sharp focus on the subject",
        "coherent motion",
    ),
)


class TemplateExtender:
    """The embedded default extender: the prompt, verbatim, followed by one cinematic detail
    phrase per aspect (camera, light, lens, colour, quality).

    The phrases are picked from ``sha256(f"{seed}:{prompt}")``, so the same prompt and seed always
    get the same phrases and another seed usually other ones. Whole phrases are dropped from the
    end until the result fits ``max_chars``; a prompt already that long comes back unchanged.

    >>> TemplateExtender().extend("a @fox runs through snow", seed=1).startswith("a @fox runs through snow, ")
    True
    """

    def __init__(self, max_chars: int = MAX_PROMPT_CHARS):
        self.max_chars = max_chars

    def extend(self, prompt: str, *, seed: int) -> str:
        digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
        phrases = [options[digest[i] % len(options)] for i, options in enumerate(_TEMPLATE_ASPECTS)]
        base = prompt.rstrip()
        separator = " " if base.endswith((",", ";", ":")) else ", "
        if base.endswith((".", "!", "?")):
            separator = " "
            phrases[0] = phrases[0][0].upper() + phrases[0][1:]
        while phrases:
            extended = base + separator + ", ".join(phrases)
            if len(extended) <= self.max_chars:
                return extended
            phrases.pop()
        return prompt

    def __repr__(self) -> str:
        return f"TemplateExtender(max_chars={self.max_chars})"


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersExtender:
    """An LLM extender: a chat model rewrites the prompt, ``merge_extension`` keeps the contract.

    The model sees ``[system_prompt, prompt]`` through the tokenizer's chat template and generates
    at most ``max_new_tokens``. ``temperature`` 0 (the default) decodes greedily: the extension
    depends on the prompt only. Above 0 it samples (``top_p`` nucleus) from a generator seeded with
    the result's seed: the same prompt and seed give the same extension, other seeds others.
    The output is cleaned (see ``_clean``) and merged with the prompt by ``merge_extension``: a
    rewrite that drops an ``@tag`` is appended to the original prompt instead of replacing it.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 0.9,
        max_chars: int = MAX_PROMPT_CHARS,
    ):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat_template: an instruction-tuned (chat) model is required")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.max_chars = max_chars

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TransformersExtender:
        """Load a chat model from a local folder or hub id (``kwargs``, e.g. ``local_files_only=True``
        or ``revision``, go to both ``from_pretrained`` calls).

        ``device`` defaults to the GPU when one is visible; ``torch_dtype`` to bfloat16 on a GPU and
        float32 on the CPU.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = torch.device(device or _default_device())
        if torch_dtype is None:
            torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=torch_dtype, **kwargs).to(device)
        return cls(
            model, tokenizer, system_prompt=system_prompt, max_new_tokens=max_new_tokens, temperature=temperature
        )

    def generate(self, prompt: str, *, seed: int) -> str:
        """The model's cleaned answer for ``prompt`` (before ``merge_extension``)."""
        import torch

        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        options: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad_id}
        if self.temperature > 0:
            options.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        # generate() samples from torch's global generator: seed a forked copy so the result depends
        # on this seed only and the caller's random state is left as it was.
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(**inputs, **options)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return _clean(self.tokenizer.decode(new_tokens, skip_special_tokens=True))

    def extend(self, prompt: str, *, seed: int) -> str:
        return merge_extension(prompt, self.generate(prompt, seed=seed), max_chars=self.max_chars)

    def __repr__(self) -> str:
        name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__
        return f"TransformersExtender({name!r}, max_new_tokens={self.max_new_tokens}, temperature={self.temperature})"
