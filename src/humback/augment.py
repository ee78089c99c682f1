"""Self-augmentation (paper §2.2): the backward model M_yx writes one instruction for every segment.

Instructions are generated once; M_yx is not retrained. Rows are appended as produced, so a killed run
resumes where it stopped and the final file has exactly one row per segment, in segment order.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from humback.config import AugmentConfig
from humback.generation.base import Generator, SamplingParams, row_seed
from humback.generation.cache import generator_stats
from humback.prompts import BACKWARD_PROMPT
from humback.records import RowWriter, read_jsonl
from humback.stats import AugmentStats
from humback.templates import backward_messages


def clean_instruction(text: str) -> str:
    """Model output is untrusted: strip a leading label the model may echo, and surrounding quotes."""
    text = text.strip()
    for label in ("Question:", "Instruction:", "Q:"):
        if text.startswith(label):
            text = text[len(label):].strip()
    return text.strip('"').strip()


def augment(segments: str | Path, generator: Generator, out: str | Path, cfg: AugmentConfig,
            seed: int = 0) -> AugmentStats:
    rows = list(read_jsonl(segments, required=("id", "text"), unique_ids=True))
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    # What a row depends on: a rerun with another model or sampling starts the partial file over.
    writer = RowWriter(out, {"model": generator.fingerprint, "params": params.as_dict(), "prompt": BACKWARD_PROMPT})
    # Shortest first: batches of similar length waste little on padding (or, in CTranslate2, on prompt
    # tails fed token by token); the output file is put back in segment order at the end.
    todo = sorted((r for r in rows if r["id"] not in writer.done), key=lambda r: len(r["text"]))
    resumed = len(rows) - len(todo)
    empty = 0
    chunk_size = generator.chunk_size
    try:
        with tqdm(total=len(rows), initial=resumed, desc="augment", unit="seg") as bar:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start:start + chunk_size]
                seeds = [row_seed(seed, r["id"]) for r in chunk]
                texts = generator.generate([backward_messages(r["text"]) for r in chunk], params, seeds)
                out_rows = []
                for r, text, s in zip(chunk, texts, seeds):
                    instruction = clean_instruction(text)
                    empty += not instruction
                    out_rows.append({
                        "id": r["id"], "instruction": instruction, "response": r["text"], "segment_id": r["id"],
                        "generator": {"model": generator.model, "params": {**params.as_dict(), "seed": s}},
                    })
                writer.write(out_rows)
                bar.update(len(chunk))
        n = writer.finish(order=[r["id"] for r in rows])
    finally:
        writer.close()
    return {"rows": n, "resumed_rows": resumed, "empty_instructions": empty, **generator_stats(generator)}
