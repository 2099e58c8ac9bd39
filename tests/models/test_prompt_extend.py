"""Prompt extension (``models.prompt_extend``): the template default, the merge rule that keeps
``@tags``, and an LLM extender on a tiny random chat model saved and loaded back like a hub one."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.prompt_extend import (
    MAX_PROMPT_CHARS,
    PromptExtender,
    TemplateExtender,
    TransformersExtender,
    merge_extension,
    prompt_tags,
)

PROMPT = "@hero walks a dog past @shop-2 in the rain"


# --- the template extender --------------------------------------------------------------------------


def test_template_keeps_the_prompt_verbatim_and_adds_detail():
    extended = TemplateExtender().extend(PROMPT, seed=7)
    assert isinstance(TemplateExtender(), PromptExtender)
    assert extended.startswith(PROMPT + ", ") and len(extended) > len(PROMPT) + 40
    assert prompt_tags(extended) == ["@hero", "@shop-2"]


def test_template_is_deterministic_per_prompt_and_seed():
    extender = TemplateExtender()
    assert extender.extend(PROMPT, seed=7) == TemplateExtender().extend(PROMPT, seed=7)
    assert len({extender.extend(PROMPT, seed=s) for s in range(8)}) > 1
    assert extender.extend("a quiet lake.", seed=1).startswith("a quiet lake. ")


def test_template_never_exceeds_the_prompt_limit():
    long_prompt = "@hero " + "word " * 1020  # 5106 characters: only a phrase or two fit
    extended = TemplateExtender().extend(long_prompt, seed=3)
    assert extended.startswith(long_prompt.rstrip()) and len(extended) <= MAX_PROMPT_CHARS
    full = "x" * MAX_PROMPT_CHARS
    assert TemplateExtender().extend(full, seed=3) == full


# --- the merge rule -----------------------------------------------------------------------------------


def test_prompt_tags_are_found_like_the_task_validator_mentions_them():
    assert prompt_tags("@a and @b-c, then @img.2. and @a again; mail x@y.z") == ["@a", "@b-c", "@img.2"]


def test_a_rewrite_that_keeps_every_tag_replaces_the_prompt():
    rewrite = "In pouring rain, @hero walks a scruffy dog past the neon sign of @shop-2."
    assert merge_extension(PROMPT, rewrite) == rewrite


def test_a_rewrite_that_drops_a_tag_is_appended_to_the_prompt():
    rewrite = "In pouring rain, @hero walks a scruffy dog past a shop."  # @shop-2 lost
    assert merge_extension(PROMPT, rewrite) == f"{PROMPT} {rewrite}"
    # "@shop-23" is another tag, not a mention of @shop-2.
    assert merge_extension(PROMPT, "@hero at @shop-23") == f"{PROMPT} @hero at @shop-23"


def test_merge_caps_the_length_and_never_loses_the_prompt():
    assert merge_extension(PROMPT, "   ") == PROMPT
    merged = merge_extension(PROMPT, "rain " * 2000)
    assert merged.startswith(PROMPT) and len(merged) <= MAX_PROMPT_CHARS
    full = "@hero " + "y" * (MAX_PROMPT_CHARS - 6)
    assert merge_extension(full, "more detail") == full
    assert len(merge_extension("no tags here", "detail " * 2000, max_chars=100)) <= 100


# --- the LLM extender on a tiny random chat model ---------------------------------------------------


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory) -> Path:
    from models.tiny import save_tiny_chat_lm

    return save_tiny_chat_lm(tmp_path_factory.mktemp("chat") / "tiny-chat")


@pytest.fixture(scope="module")
def sampling(chat_model_dir) -> TransformersExtender:
    return TransformersExtender.from_pretrained(str(chat_model_dir), max_new_tokens=24, temperature=1.0)


def test_llm_extender_round_trips_and_is_deterministic_per_seed(sampling, chat_model_dir):
    assert isinstance(sampling, PromptExtender)
    first = sampling.extend(PROMPT, seed=11)
    assert first != PROMPT and first == sampling.extend(PROMPT, seed=11)
    # A second load of the same folder gives the same extension: weights and tokenizer round-trip.
    again = TransformersExtender.from_pretrained(str(chat_model_dir), max_new_tokens=24, temperature=1.0)
    assert again.extend(PROMPT, seed=11) == first
    assert len({sampling.extend(PROMPT, seed=s) for s in range(4)}) > 1


def test_greedy_decoding_ignores_the_seed(chat_model_dir):
    greedy = TransformersExtender.from_pretrained(str(chat_model_dir), max_new_tokens=16)
    assert greedy.extend(PROMPT, seed=1) == greedy.extend(PROMPT, seed=2)


def test_llm_extender_keeps_tags_and_cleans_its_output(sampling):
    # Random weights never write "@hero @shop-2": the output is appended to the original prompt.
    extended = sampling.extend(PROMPT, seed=5)
    assert extended.startswith(PROMPT + " ")
    assert set(prompt_tags(PROMPT)) <= set(prompt_tags(extended))
    generated = sampling.generate(PROMPT, seed=5)
    assert generated == generated.strip() and "\ufffd" not in generated and "\n" not in generated
    assert "<|im_end|>" not in extended


def test_llm_extender_caps_a_long_prompt(sampling):
    long_prompt = "@hero " + "rain " * 1020
    extended = sampling.extend(long_prompt, seed=2)
    assert extended.startswith(long_prompt.rstrip()) and len(extended) <= MAX_PROMPT_CHARS


def test_an_empty_answer_gives_back_the_prompt(chat_model_dir):
    silent = TransformersExtender.from_pretrained(str(chat_model_dir), max_new_tokens=8)
    # Only special tokens may be generated: the decoded answer is empty.
    silent.model.generation_config.suppress_tokens = list(range(256))
    assert silent.generate(PROMPT, seed=0) == ""
    assert silent.extend(PROMPT, seed=0) == PROMPT


def test_a_model_without_chat_template_is_refused(chat_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        TransformersExtender(AutoModelForCausalLM.from_pretrained(chat_model_dir), tokenizer)
