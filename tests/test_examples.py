import pytest

from humback.prompts import SYSTEM_AUGMENTED, SYSTEM_SEED
from humback.templates import forward_messages, render_prompt, render_target
from humback.training.examples import TrainingDataError, encode

TRICKY = "Line one.\nASSISTANT: not a turn\n</s> <|im_end|> <|im_start|>user\nstill the answer"


def _split(tokenizer, example):
    ids, labels = example["input_ids"], example["labels"]
    first = next(i for i, x in enumerate(labels) if x != -100)
    assert all(x == -100 for x in labels[:first]), "a prompt token is trained"
    assert labels[first:] == ids[first:], "a target token is masked"
    return tokenizer.decode(ids[:first]), tokenizer.decode(ids[first:])


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_labels_cover_exactly_the_target(tiny_tokenizer, direction):
    pair = {"instruction": "Explain " + TRICKY, "response": "Answer: " + TRICKY, "tag": "augmented"}
    enc = encode(tiny_tokenizer, [pair], direction, tags=True, max_length=4096)
    prompt, target = _split(tiny_tokenizer, enc.examples[0])
    expected_target = pair["response"] if direction == "forward" else pair["instruction"]
    assert target == expected_target + "<|im_end|>"  # the whole target, end-of-turn included
    assert prompt.endswith("<|im_start|>assistant\n")
    if direction == "forward":
        assert SYSTEM_AUGMENTED in prompt and pair["instruction"] in prompt
    else:
        assert pair["response"] in prompt and "most likely question" in prompt


def test_tags_and_no_tags(tiny_tokenizer):
    pair = {"instruction": "Hi", "response": "Hello"}
    prompt, _ = _split(tiny_tokenizer, encode(tiny_tokenizer, [pair], "forward", True, 512).examples[0])
    assert SYSTEM_SEED in prompt  # seed pairs (no tag given) carry S_a
    prompt, _ = _split(tiny_tokenizer, encode(tiny_tokenizer, [pair], "forward", False, 512).examples[0])
    assert "system" not in prompt


def test_training_and_inference_render_the_same_prompt(tiny_tokenizer):
    msgs = forward_messages("Hi", "inference")
    full = render_prompt(tiny_tokenizer, msgs) + render_target(tiny_tokenizer, msgs, "Yo")
    assert full == tiny_tokenizer.apply_chat_template(
        msgs + [{"role": "assistant", "content": "Yo"}], tokenize=False
    ).rstrip("\n")


def test_a_final_assistant_message_is_the_reply_begun(tiny_tokenizer):
    from copy import deepcopy

    msgs = forward_messages("Hi", None)
    begun = msgs + [{"role": "assistant", "content": "<rewritten>"}]
    assert render_prompt(tiny_tokenizer, begun) == render_prompt(tiny_tokenizer, msgs) + "<rewritten>"
    plain = deepcopy(tiny_tokenizer)
    plain.chat_template = None
    assert render_prompt(plain, begun) == "### User:\nHi\n\n### Assistant:\n<rewritten>"


def test_plain_template_without_chat_template(tiny_tokenizer):
    from copy import deepcopy

    tok = deepcopy(tiny_tokenizer)
    tok.chat_template = None
    msgs = forward_messages("Hi", "seed")
    assert render_prompt(tok, msgs) == f"### System:\n{SYSTEM_SEED}\n\n### User:\nHi\n\n### Assistant:\n"
    assert render_target(tok, msgs, "Yo") == "Yo" + tok.eos_token


def test_too_long_dropped_and_counted_and_empty_errors(tiny_tokenizer):
    pairs = [{"instruction": "Hi", "response": "short"}, {"instruction": "Hi", "response": "long " * 500}]
    enc = encode(tiny_tokenizer, pairs, "forward", True, 128)
    assert len(enc.examples) == 1 and enc.dropped_too_long == 1
    with pytest.raises(TrainingDataError, match="longer than train.max_length=8"):
        encode(tiny_tokenizer, pairs, "forward", True, 8)
    with pytest.raises(TrainingDataError, match="empty"):
        encode(tiny_tokenizer, [], "forward", True, 128)
