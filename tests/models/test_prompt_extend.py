"""Prompt extension (``models.prompt_extend``): the template default, the merge rule that keeps
``@tags``, and an LLM extender on a tiny random chat model saved and loaded back like a hub one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    # One grammar (farm.domain.constants.TAG_PATTERN): "@" then word characters with single inner
    # hyphens; punctuation ends a tag ("@img.2" mentions @img), and "x@y" is an address, not a tag.
    assert prompt_tags("@a and @b-c, then @img.2. and @a again; mail x@y.z, @hero! @d--e") == [
        "@a",
        "@b-c",
        "@img",
        "@hero",
        "@d",
    ]


# Tags as the seed writes them (@actor1, @style, @shop-2), accented Latin letters too (not × or ÷).
TAGS = st.from_regex(
    r"@[A-Za-z0-9_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]{1,8}(?:-[A-Za-z0-9_]{1,4}){0,2}", fullmatch=True
)
AFTER_A_TAG = st.sampled_from(["", ".", "!", "?", ",", ";", ":", ")", "'s", " and", "\n", "\u2019s"])


@settings(max_examples=60, deadline=None)
@given(tag=TAGS, after=AFTER_A_TAG)
def test_a_tag_the_validator_accepts_is_exactly_the_tag_extension_keeps(tag, after):
    """The validator and the extender read tags with the same pattern: the reference's tag is the
    one the extender finds in the prompt, and a rewrite that keeps it replaces the prompt."""
    from farm.domain.constants import DEFAULT_MODEL
    from farm.domain.validation import parse_task

    prompt = f"A slow pan over {tag}{after} in the rain"
    task = parse_task(
        {
            "taskType": "videoInference",
            "taskUUID": "3b241101-e2bb-4255-8caf-4136c566a962",
            "model": DEFAULT_MODEL,
            "positivePrompt": prompt,
            "inputs": {
                "referenceImages": [{"type": "image", "images": ["f3a1c2d4-0000-4000-8000-000000000000"], "tag": tag}]
            },
        }
    )
    assert prompt_tags(task.positive_prompt) == [task.inputs.reference_images[0].tag] == [tag]
    rewrite = f"Rain falls as the camera glides past {tag}{after} at dusk."
    assert merge_extension(prompt, rewrite) == rewrite
    assert prompt_tags(TemplateExtender().extend(prompt, seed=3)) == [tag]


@pytest.mark.parametrize("text", ["@hero!", "@img.2", "@my-", "@a--b", "hero", "@", "x@y"])
def test_what_the_validator_refuses_as_a_tag_is_not_one_tag_to_the_extender(text):
    from farm.domain.constants import is_tag

    assert not is_tag(text)
    assert prompt_tags(text) != [text]


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
