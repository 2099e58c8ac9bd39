"""Tiny random-weight models built from configs in code: the embedded default of the farm.

Everything here is built offline (no hub downloads, no files read), deterministically from a
seed: ``torch.manual_seed`` is called right before each module is constructed, so two processes
building the same component get bit-identical weights. The architectures are the real diffusers
ones (Wan 2.1 for video, Stable Audio Open for audio), only shrunk, so the whole render path —
text encoding, denoising loop, VAE decode, ``save_pretrained``/``from_pretrained`` — is the same
code that runs with real weights. The pictures and sounds they make are noise.

The same goes for the prompt extender and the safety checker: a 2-layer Qwen2 chat model and a
2-layer CLIP, with byte-level tokenizers built in code (``tokenizers``, no vocabulary files). Their
prompts are gibberish and their verdicts meaningless; the mechanics are the real ones.

Sizes were picked so that on one CPU thread a 17-frame 112x64 chunk renders in a fraction of a
second (about 0.2 s) and 15 s of stereo 16 kHz audio in about 0.2 s too (see ``tests/models``).
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    AutoencoderOobleck,
    EDMDPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    StableAudioDiTModel,
    StableAudioPipeline,
    StableAudioProjectionModel,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel, T5Tokenizer, UMT5Config, UMT5EncoderModel

#: Seed of every tiny component unless a caller asks for another.
from models.weights import TINY_SEED as DEFAULT_SEED

#: Width of the tiny T5 text encoder; the Wan transformer's ``text_dim`` must match it.
TEXT_DIM = 32

#: Tokens the tiny T5 encodes per prompt (real Wan uses 512, Stable Audio 128). Longer prompts are
#: truncated: the tiny model has no use for them and attention cost grows with the length.
TINY_MAX_SEQUENCE_LENGTH = 64

#: Sample rate of the tiny audio VAE: a real rate (so a 15 s clip is 240 000 samples per channel),
#: low enough to keep the tiny decoder cheap; the farm resamples to 48 kHz when muxing.
TINY_AUDIO_SAMPLE_RATE = 16_000

#: Encoder strides of the tiny Oobleck VAE: product 256 = samples per audio latent frame.
TINY_AUDIO_DOWNSAMPLING = [2, 4, 4, 8]

#: Latent frames the tiny audio DiT denoises at once: 1024 x 256 / 16 kHz = 16.384 s, more than the
#: farm's 15 s maximum, so a clip's audio is one pipeline call.
TINY_AUDIO_SAMPLE_SIZE = 1024


def tiny_t5_tokenizer(model_max_length: int = TINY_MAX_SEQUENCE_LENGTH) -> T5Tokenizer:
    """A T5 (Unigram) tokenizer built in code: specials, ``▁``, then single characters.

    Every ASCII word tokenizes (character by character, ``▁`` marking word starts); anything else
    maps to ``<unk>``. Ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, as in real T5.
    """
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    # Word-initial pieces score higher than a bare "▁" + char pair so Unigram prefers them.
    vocab += [("▁" + c, -3.0) for c in chars]
    vocab += [(c, -4.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def tiny_t5_encoder(
    vocab_size: int, d_model: int = TEXT_DIM, seed: int = DEFAULT_SEED, *, umt5: bool = False
) -> T5EncoderModel | UMT5EncoderModel:
    """A 2-layer T5 encoder of width ``d_model`` with random weights from ``seed``.

    ``umt5=True`` builds the UMT5 variant Wan uses (umt5-xxl); Stable Audio uses plain T5 (t5-base).
    """
    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_class(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return model_class(config).eval()


def tiny_wan_transformer_config() -> dict:
    """The tiny Wan 2.1 transformer's shape, shared by the plain and the VACE transformer."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": TEXT_DIM,
        "freq_dim": 256,
        "ffn_dim": 32,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }


def tiny_wan_components(seed: int = DEFAULT_SEED) -> dict:
    """The components of a tiny Wan 2.1 text-to-video pipeline (see ``tiny_wan_pipeline``).

    VAE: z_dim 16, temporal stride 4, spatial stride 8 (the real Wan 2.1 strides, so chunk plans are
    the real ones); transformer: 2 layers, 2 heads x 12, patch (1, 2, 2).
    """
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**tiny_wan_transformer_config()).eval()
    tokenizer = tiny_t5_tokenizer()
    text_encoder = tiny_t5_encoder(len(tokenizer), seed=seed, umt5=True)
    # Wan 2.1 is a flow-matching model; shift 3.0 is what the 480p checkpoints use.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "transformer_2": None,
    }


def tiny_wan_pipeline(seed: int = DEFAULT_SEED) -> WanPipeline:
    """A tiny random-weight ``WanPipeline`` on the CPU, float32, deterministic from ``seed``."""
    pipe = WanPipeline(**tiny_wan_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_vace_pipeline(seed: int = DEFAULT_SEED):
    """A tiny random-weight ``WanVACEPipeline``: the tiny Wan components with a 2-layer VACE transformer.

    ``vace_in_channels`` 96 = 16 (inactive latents) + 16 (reactive latents) + 64 (the mask folded
    over the VAE's 8x8 spatial stride), as in the real model.
    """
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    components = tiny_wan_components(seed)
    torch.manual_seed(seed)
    components["transformer"] = WanVACETransformer3DModel(
        **tiny_wan_transformer_config(), vace_layers=[0, 1], vace_in_channels=96
    ).eval()
    pipe = WanVACEPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_stable_audio_components(seed: int = DEFAULT_SEED) -> dict:
    """The components of a tiny Stable Audio pipeline (see ``tiny_stable_audio_pipeline``).

    Oobleck VAE: stereo, 16 kHz, 256 samples per latent frame, 4 latent channels; DiT: 2 layers,
    2 heads x 8, 1024 latent frames (16.4 s). The scheduler is ``EDMDPMSolverMultistepScheduler``
    with Stable Audio's sigma settings (v-prediction, exponential schedule, sigma_data 1): the same
    solver family as Stable Audio Open's ``CosineDPMSolverMultistepScheduler`` but deterministic ODE
    steps that need no ``torchsde``, which the farm does not install.
    """
    latent_channels = 4
    conditioning_dim = 16
    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(
        sample_size=TINY_AUDIO_SAMPLE_SIZE,
        in_channels=latent_channels,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=latent_channels,
        cross_attention_dim=16,
        time_proj_dim=16,
        # The global condition is the start and end seconds embeddings side by side.
        global_states_input_dim=2 * conditioning_dim,
        cross_attention_input_dim=conditioning_dim,
    ).eval()
    torch.manual_seed(seed)
    vae = AutoencoderOobleck(
        # The encoder emits mean and scale, hence twice the latent channels.
        encoder_hidden_size=2 * latent_channels,
        downsampling_ratios=TINY_AUDIO_DOWNSAMPLING,
        channel_multiples=[1, 2, 2, 2],
        decoder_channels=4,
        decoder_input_channels=latent_channels,
        audio_channels=2,
        sampling_rate=TINY_AUDIO_SAMPLE_RATE,
    ).eval()
    tokenizer = tiny_t5_tokenizer()
    text_encoder = tiny_t5_encoder(len(tokenizer), seed=seed)
    torch.manual_seed(seed)
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=text_encoder.config.d_model,
        conditioning_dim=conditioning_dim,
        min_value=0,
        max_value=512,
    ).eval()
    scheduler = EDMDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500.0,
        sigma_data=1.0,
        sigma_schedule="exponential",
        prediction_type="v_prediction",
        solver_order=2,
        algorithm_type="dpmsolver++",
        final_sigmas_type="zero",
    )
    return {
        "transformer": transformer,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "projection_model": projection_model,
    }


def tiny_stable_audio_pipeline(seed: int = DEFAULT_SEED) -> StableAudioPipeline:
    """A tiny random-weight ``StableAudioPipeline`` on the CPU, float32, deterministic from ``seed``."""
    pipe = StableAudioPipeline(**tiny_stable_audio_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_wan(directory: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Build the tiny Wan pipeline and ``save_pretrained`` it to ``directory``; returns the path.

    The directory then loads like a hub checkpoint: ``WanPipeline.from_pretrained(directory)``.
    """
    path = Path(directory)
    tiny_wan_pipeline(seed).save_pretrained(path)
    return path


def save_tiny_stable_audio(directory: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Build the tiny Stable Audio pipeline and ``save_pretrained`` it to ``directory``; returns the path."""
    path = Path(directory)
    tiny_stable_audio_pipeline(seed).save_pretrained(path)
    return path


# --- prompt extension and safety: a tiny chat LM and a tiny CLIP ----------------------------------

#: Special tokens of the tiny chat tokenizer (ChatML, as Qwen2.5's).
CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: ChatML: what Qwen2.5-Instruct's template renders for plain system/user messages.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Special tokens of the tiny CLIP tokenizer (those of openai/clip-vit-*).
CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")

#: Side of the square images the tiny CLIP sees (4x4 patches of 8 pixels).
TINY_CLIP_IMAGE_SIZE = 32

#: Tokens per text of the tiny CLIP (real CLIP: 77).
TINY_CLIP_MAX_LENGTH = 77


def _byte_level_tokenizer(specials: tuple[str, ...]):
    """A ``tokenizers`` byte-level BPE with no merges: the 256 byte symbols (ids 0-255), then
    ``specials``. Any text encodes (one token per UTF-8 byte) and decodes back exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def tiny_chat_tokenizer():
    """A byte-level chat tokenizer built in code with Qwen2.5's ChatML template and specials."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_tokenizer(CHAT_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(CHAT_SPECIALS[1:]),
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_causal_lm(vocab_size: int, seed: int = DEFAULT_SEED, *, eos_token_id: int, pad_token_id: int):
    """A 2-layer Qwen2 causal LM of width 16 with random weights from ``seed`` (its text is gibberish).

    ``max_position_embeddings`` covers a 5120-character prompt (one token per byte) plus the
    system prompt and the generated tokens.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def save_tiny_chat_lm(directory: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Save a tiny chat LM and its tokenizer (``save_pretrained``) in ``directory``; returns the path.

    It loads like a hub chat model: ``TransformersExtender.from_pretrained(directory)``.
    """
    path = Path(directory)
    tokenizer = tiny_chat_tokenizer()
    model = tiny_causal_lm(
        len(tokenizer), seed, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer built in code: ``<|startoftext|> text <|endoftext|>``, padded
    with ``<|endoftext|>`` (CLIP pools the text at the first end token)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = _byte_level_tokenizer(CLIP_SPECIALS)
    bos, eos = CLIP_SPECIALS
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, 256), (eos, 257)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=eos, model_max_length=TINY_CLIP_MAX_LENGTH
    )


def tiny_clip_image_processor():
    """CLIP's image preprocessing (resize, centre crop, CLIP mean/std) at ``TINY_CLIP_IMAGE_SIZE``."""
    from transformers import CLIPImageProcessorPil

    size = TINY_CLIP_IMAGE_SIZE
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_clip_model(vocab_size: int, seed: int = DEFAULT_SEED):
    """A tiny random ``CLIPModel``: 2-layer text and vision towers of width 32, 16-d projections.

    ``logit_scale`` starts at 0 (scale 1, real CLIP learns about 100): similarities of random
    embeddings stay in ``[-1, 1]``, so zero-shot probabilities stay near uniform and a tiny checker
    does not flag frames by accident (see ``models.profiles.TINY_SAFETY_THRESHOLD``).
    """
    from transformers import CLIPConfig, CLIPModel

    bos_id, eos_id = vocab_size - 2, vocab_size - 1
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TINY_CLIP_MAX_LENGTH,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        ),
        vision_config=dict(
            image_size=TINY_CLIP_IMAGE_SIZE,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
        ),
        projection_dim=16,
        logit_scale_init_value=0.0,
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval()


def tiny_clip(seed: int = DEFAULT_SEED) -> tuple:
    """``(model, tokenizer, image_processor)`` of the tiny CLIP, deterministic from ``seed``."""
    tokenizer = tiny_clip_tokenizer()
    return tiny_clip_model(len(tokenizer), seed), tokenizer, tiny_clip_image_processor()


def save_tiny_clip(directory: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Save the tiny CLIP (model, tokenizer, image processor) in ``directory``; returns the path.

    It loads like a hub CLIP: ``ClipSafetyChecker.from_pretrained(directory, ...)``.
    """
    path = Path(directory)
    for part in tiny_clip(seed):
        part.save_pretrained(path)
    return path
