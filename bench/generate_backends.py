"""The augmentation workload on each CPU backend against transformers' generate, side by side in one run.

Workload: one instruction for each of N segments (default 128) with the default model, as `augment` asks
it (the paper's backward prompt, T 0.7, top_p 0.9, up to 128 new tokens, a seed per row). Segments are the
bundled demo corpus's (90 after filtering), cycled to N. The work is cut into slices; every slice runs on
every backend in turn, the order rotating per slice (rows sorted by length first, as `augment` does), so a
machine that speeds up or slows down affects all sides
alike. Reported: generated tokens/s (tokens of the decoded replies, counted with the model's
tokenizer, so every backend is counted the same way) and segments/s, per backend; the ratio to the
baseline over the whole run and the median of per-slice ratios. The machine's ceiling for this token mix
is measured in the same run (bench/cpu_ceiling.py: fp32 and int8 matmuls at the model's shapes, decoding
as many rows at once as the backend that keeps the most in flight), and each backend's processed tokens/s
(prompt + generated) is reported as a fraction of it (int8 backends against the int8 limit, the others
against fp32).

    .venv/bin/python bench/generate_backends.py                 # writes bench/results/generate_backends.json
    .venv/bin/python bench/generate_backends.py --segments 32 \
        --candidates ctranslate2:int8:8 ctranslate2:int8:8:1:0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from cpu_ceiling import ceiling
from record import write_record
from workloads import demo_segments, engine

from humback.config import AugmentConfig
from humback.generation import load_generator
from humback.generation.base import SamplingParams, row_seed
from humback.templates import backward_messages, render_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=128)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=AugmentConfig().max_new_tokens)
    ap.add_argument("--baseline", default="transformers:8")
    ap.add_argument("--candidates", nargs="+", default=["ctranslate2:int8:8"])
    ap.add_argument("--out", default="bench/results/generate_backends.json")
    args = ap.parse_args()

    rows = demo_segments(args.segments)
    cfg = AugmentConfig(max_new_tokens=args.max_new_tokens)
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, 0)
    specs = [args.baseline] + args.candidates
    gens, startup = {}, {}
    for s in specs:  # the first load converts the model once (cached); start-up is the second, warm load
        if s.startswith(("ctranslate2", "openvino")):
            load_generator(engine(s), "default")
        start = time.perf_counter()
        gens[s] = load_generator(engine(s), "default")
        startup[s] = round(time.perf_counter() - start, 1)
    tokenizer = gens[args.baseline].tokenizer
    rows.sort(key=lambda r: len(r["text"]))  # as `augment` hands rows over: shortest first
    size = -(-len(rows) // args.slices)
    slices = [rows[i : i + size] for i in range(0, len(rows), size)]
    per = {s: {"seconds": [], "tokens": [], "replies": 0, "empty": 0} for s in specs}
    prompt_tokens = {
        r["id"]: len(
            tokenizer(render_prompt(tokenizer, backward_messages(r["text"])), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for r in rows
    }
    for k, part in enumerate(slices):
        prompts = [backward_messages(r["text"]) for r in part]
        seeds = [row_seed(0, r["id"]) for r in part]
        for spec in specs[k % len(specs) :] + specs[: k % len(specs)]:  # rotate who goes first
            gen, start, texts = gens[spec], time.perf_counter(), []
            for c in range(0, len(prompts), gen.chunk_size):  # as `augment` calls it
                texts += gen.generate(prompts[c : c + gen.chunk_size], params, seeds[c : c + gen.chunk_size])
            seconds = time.perf_counter() - start
            tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
            per[spec]["seconds"].append(seconds)
            per[spec]["tokens"].append(tokens)
            per[spec]["replies"] += len(texts)
            per[spec]["empty"] += sum(not t for t in texts)
            print(
                f"slice {k + 1}/{len(slices)} {spec:<24} {seconds:7.1f} s {tokens:6d} tokens "
                f"{tokens / seconds:7.1f} tok/s",
                flush=True,
            )

    # The ceiling, measured in the same run (bench/cpu_ceiling.py) for this workload's token mix: generated
    # tokens as the baseline produced them (every backend gets the same prompts, and about as many).
    # Decoding's limit depends on the rows decoded at once: every backend is held against the limit at the
    # most rows in flight any of them keeps (batch size x batches side by side), the machine's best here.
    mean_prompt = sum(prompt_tokens.values()) / len(rows)
    mean_generated = sum(per[args.baseline]["tokens"]) / len(rows)
    # vLLM schedules every request of a call at once (a slice: `size` rows).
    rows_in_flight = {
        s: getattr(g, "batch_size", size if s == "vllm" else 1) * getattr(g, "workers", 1)
        for s, g in gens.items()
    }
    limit = ceiling(mean_prompt, mean_generated, decode_rows=max(rows_in_flight.values()))
    print(json.dumps(limit, indent=1), flush=True)

    def summary(spec: str) -> dict:
        p = per[spec]
        secs, toks = sum(p["seconds"]), sum(p["tokens"])
        processed = (sum(prompt_tokens.values()) + toks) / secs  # prompt + generated tokens per second
        # Quantised engines against the int8 limit (llama.cpp's Q4_1 dot products run on int8 too).
        # OpenVINO's int8 weights run int8 matmuls (activations quantised per call, as CTranslate2's).
        precision = "int8" if spec.startswith(("ctranslate2:int8", "llamacpp", "openvino:int8")) else "fp32"
        return {
            "rows_in_flight": rows_in_flight[spec],
            "startup_s": startup[spec],
            "seconds": round(secs, 1),
            "tokens": toks,
            "tokens_per_s": round(toks / secs, 2),
            "processed_tokens_per_s": round(processed, 1),
            "limit_precision": precision,
            "fraction_of_limit": round(processed / limit[precision]["processed_tokens_per_s"], 3),
            "segments_per_s": round(p["replies"] / secs, 3),
            "empty_replies": p["empty"],
            "slice_tokens_per_s": [round(t / s, 2) for t, s in zip(p["tokens"], p["seconds"])],
        }

    base = summary(args.baseline)
    results = {s: summary(s) for s in specs}
    for s in args.candidates:
        r = results[s]
        r["ratio_tokens_per_s"] = round(r["tokens_per_s"] / base["tokens_per_s"], 3)
        r["ratio_segments_per_s"] = round(r["segments_per_s"] / base["segments_per_s"], 3)
        r["median_slice_ratio"] = round(
            statistics.median(c / b for c, b in zip(r["slice_tokens_per_s"], base["slice_tokens_per_s"])), 3
        )
    best = args.candidates[0]
    write_record(
        args.out,
        "generate_backends",
        "generated tokens/s",
        base["tokens_per_s"],
        results[best]["tokens_per_s"],
        results[best]["ratio_tokens_per_s"],
        baseline_backend=args.baseline,
        candidate_backend=best,
        workload={
            "segments": len(rows),
            "slices": len(slices),
            "max_new_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "model": "default (SmolLM2-135M-Instruct)",
        },
        details=results,
        limit=limit,
    )


if __name__ == "__main__":
    main()
