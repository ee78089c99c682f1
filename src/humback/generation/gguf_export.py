"""A llama-architecture checkpoint (safetensors) written as one GGUF file, so engines that read GGUF
(OpenVINO GenAI's reader, llama.cpp) run the run's own fine-tuned models, not only the default one.

The layout follows the GGUF specification (ggml's docs/gguf.md) and llama.cpp's tensor names, which the
`gguf` package (already a dependency: transformers' GGUF loader) lists; its writer and quantizer do the
file format. Two facts the format fixes: q and k projections are stored with each head's rotary halves
interleaved (the inverse of what transformers undoes when it loads a GGUF), and a tied output head is
omitted (readers reuse the token embedding).
"""

from __future__ import annotations

import json
from pathlib import Path

from humback.models import ModelError

# Weight types humback writes, by the backend's compute_type (OpenVINO GenAI's GGUF reader takes no
# float32 matrices).
WEIGHT_TYPES = {"int8": "Q8_0", "float16": "F16"}
ARCHITECTURES = ("llama",)


def rotary_interleave(w, heads: int):
    """HF's q/k rows (per head: first half of rotary pairs, then second half) in GGUF's order (pairs side
    by side)."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _tokenizer_fields(writer, folder: Path, tokenizer) -> None:
    """Byte-level BPE vocabulary, merges and special ids as GGUF's 'gpt2' tokenizer model."""
    import gguf

    spec = json.loads((folder / "tokenizer.json").read_text())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ModelError(
            f"{folder}/tokenizer.json is a {model.get('type')} tokenizer: GGUF export handles byte-level"
            " BPE (Llama 3, SmolLM2) only; use generation.backend ctranslate2 or transformers"
        )
    vocab = tokenizer.get_vocab()
    tokens = [""] * (max(vocab.values()) + 1)
    for text, idx in vocab.items():
        tokens[idx] = text
    special = set(tokenizer.all_special_ids)
    added = {t["id"] for t in spec.get("added_tokens", [])}
    kinds = [
        gguf.TokenType.CONTROL
        if i in special
        else gguf.TokenType.USER_DEFINED
        if i in added
        else gguf.TokenType.NORMAL
        for i in range(len(tokens))
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges(merges)
    for add, idx in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if idx is not None:
            add(idx)
    writer.add_add_bos_token(False)  # humback renders prompts itself and passes token ids
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def write_gguf(folder: Path, out: Path, weights: str = "int8") -> Path:
    """Write the checkpoint in `folder` as the GGUF file `out` (`weights`: a key of WEIGHT_TYPES; norms
    stay float32, as llama.cpp's own converter keeps them)."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    if config.model_type not in ARCHITECTURES:
        raise ModelError(
            f"{folder} is a '{config.model_type}' model: the GGUF export handles {', '.join(ARCHITECTURES)}"
            " checkpoints; use generation.backend ctranslate2 or transformers for it"
        )
    qtype = gguf.GGMLQuantizationType[WEIGHT_TYPES[weights]]
    state: dict = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(f))  # torch: bf16 checkpoints too (numpy has no bf16)
    if not state:
        raise ModelError(f"{folder} holds no .safetensors weights to export")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ModelError(
            f"{folder} uses '{rope['rope_type']}' rotary scaling, which the GGUF export does not write;"
            " use generation.backend ctranslate2 or transformers"
        )

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(folder.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(
        {"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "F16": gguf.LlamaFileType.MOSTLY_F16}[qtype.name]
    )
    _tokenizer_fields(writer, folder, AutoTokenizer.from_pretrained(folder))

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for key, value in state.items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ModelError(
                f"{folder}: tensor '{key}' has no GGUF name for a llama model; export it with"
                " llama.cpp's converter or use generation.backend ctranslate2"
            )
        array = value.float().numpy()
        if key.endswith("q_proj.weight"):
            array = rotary_interleave(array, heads)
        elif key.endswith("k_proj.weight"):
            array = rotary_interleave(array, kv_heads)
        if array.ndim == 1:
            writer.add_tensor(name, np.ascontiguousarray(array))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
