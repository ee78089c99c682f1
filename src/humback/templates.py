"""One rendering of chat messages to text, shared by training and inference.

The model's own chat template is used when it has one. Without one (base models such as LLaMA-1),
this plain template is used, documented here and in the README:

    ### System:\\n{system}\\n\\n### User:\\n{user}\\n\\n### Assistant:\\n{target}{eos}

The earlier open re-implementation trained with one template and evaluated with another (docs/method.md §9);
keeping one function for both makes that impossible.
"""

from __future__ import annotations

from humback.prompts import BACKWARD_PROMPT, REWRITE_PROMPT, SYSTEM_AUGMENTED, SYSTEM_INFERENCE, SYSTEM_SEED

PLAIN_ROLES = {"system": "### System:", "user": "### User:", "assistant": "### Assistant:"}


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """Text of `messages` followed by the opening of the assistant's turn. A final assistant message is the
    reply begun: its text follows the opening, and the model continues it (the rewrite stage begins the
    rewriter's reply with its start marker)."""
    if messages and messages[-1]["role"] == "assistant":
        return render_prompt(tokenizer, messages[:-1]) + messages[-1]["content"]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{PLAIN_ROLES[m['role']]}\n{m['content']}\n\n" for m in messages]
    return "".join(parts) + PLAIN_ROLES["assistant"] + "\n"


def render_target(tokenizer, messages: list[dict], target: str) -> str:
    """The text that follows `render_prompt(messages)` when the assistant answers `target`, end-of-turn
    marker included, so the model learns to stop."""
    if tokenizer.chat_template:
        prompt = render_prompt(tokenizer, messages)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": target}], tokenize=False
        )
        if full.startswith(prompt) and target in full[len(prompt) :]:
            completion = full[len(prompt) :]
            # Keep the turn's end marker but not the template's trailing newline after it.
            return completion.rstrip("\n")
    return target + (tokenizer.eos_token or "")


def backward_messages(response: str) -> list[dict]:
    """M_yx input: the response in the backward prompt (no system tag: the task is in the prompt)."""
    return [{"role": "user", "content": BACKWARD_PROMPT.format(response=response)}]


def rewrite_messages(instruction: str, response: str, begin: str = "") -> list[dict]:
    """The rewriter's input: the instruction and the curated web response as the draft to rewrite, and the
    reply begun with `begin` when it is not empty."""
    ask = [{"role": "user", "content": REWRITE_PROMPT.format(instruction=instruction, response=response)}]
    return ask + ([{"role": "assistant", "content": begin}] if begin else [])


def forward_messages(instruction: str, tag: str | None) -> list[dict]:
    """Forward input: `tag` is 'seed' (S_a), 'augmented' (S_w), 'inference' (both) or None (no tag)."""
    system = {"seed": SYSTEM_SEED, "augmented": SYSTEM_AUGMENTED, "inference": SYSTEM_INFERENCE}.get(
        tag or ""
    )
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": instruction}]
