"""Shared fixtures: a tiny random Llama with a real BPE tokenizer and a chat template, built offline."""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Converted checkpoints (CTranslate2 copies of test models) go to a throwaway cache, not the user's.
os.environ["HUMBACK_CACHE"] = tempfile.mkdtemp(prefix="humback-test-cache-")

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor "
    "%}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from humback.data.segment import demo_corpus_path

    corpus = [p.read_text() for p in sorted(demo_corpus_path().glob("*.html"))[:6]]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Digits split one per token, as in SmolLM2, Llama and Qwen tokenizers.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        pad_token="<pad>",
    )
    fast.chat_template = chat_template
    return fast


# Four chats of different lengths that the generation tests ask every backend.
CHATS = [
    [{"role": "user", "content": f"Tell me about {topic}."}]
    for topic in (
        "bread",
        "sourdough starters and their care over many weeks",
        "tea",
        "the history of printing presses",
    )
]


def build_tiny_model(path: Path, chat_template: str | None = CHATML, **shape) -> Path:
    """A random llama model on the tiny tokenizer; `shape` overrides its config (an engine's head sizes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(chat_template)
    torch.manual_seed(0)
    config = LlamaConfig(
        **{
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "tie_word_embeddings": True,
            **shape,
        }
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from humback.models import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory) -> str:
    """A random two-layer BERT saved as a sentence-transformers folder (mean pooling): what diversity-aware
    selection loads, at test size. Its similarities mean nothing; identical texts still embed identically."""
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("embedder")
    # Words the tests embed, so different texts tokenise differently (unknown words all become [UNK]).
    said = "explain how bread rises yeast makes gas from name a river in france the loire knead dough let it"
    words = sorted(
        {*said.split(), *(w for chat in CHATS for m in chat for w in m["content"].lower().split())}
    )
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *string.ascii_lowercase,
        *string.digits,
        ".",
        ",",
        *words,
    ]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder / "bert", safe_serialization=True)
    BertTokenizerFast(vocab=vocab).save_pretrained(folder / "bert")
    encoder = models.Transformer(str(folder / "bert"), max_seq_length=64)
    model = SentenceTransformer(modules=[encoder, models.Pooling(32, pooling_mode="mean")], device="cpu")
    model.save(str(folder / "st"))
    return str(folder / "st")
