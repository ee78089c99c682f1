"""The curation workload on each CPU backend, side by side in one run, with its agreement with transformers.

Workload: the 46 bundled demo seed pairs (real instruction/answer pairs) judged by the default model as
`curate` asks (the rubric, the candidate, `Score:`; the `expected` method reads P('1'..'5') at the next
token), and both IFD forward passes (the response's log-likelihood with and without the instruction).
Every backend runs the same calls in the same chunks as `curate`; the order of backends rotates per round
and each backend's median over rounds is reported, in seconds per candidate, with the speed-up against
the baseline (the reference runs once). Agreement against transformers (fp32, the reference every other
backend is held to):
largest and mean absolute difference of the choice probabilities, of the expected score (1-5), and of the
per-token reply log-probabilities; and for greedy generation (16 augmentation-like prompts, 48 new
tokens), the share of replies identical to transformers' and the mean share of the shared leading tokens.
Engine start-up (load, conversion excluded: converted models are cached) is reported apart.

    .venv/bin/python bench/curate_backends.py          # writes bench/results/curate_backends.json
    .venv/bin/python bench/curate_backends.py --rounds 3 --candidates ctranslate2:int8:8 openvino:int8:8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from record import write_record
from workloads import demo_segments, engine

from humback.config import SeedConfig
from humback.data.seed import seed_pairs
from humback.generation import load_generator
from humback.generation.base import SamplingParams
from humback.prompts import SCORE_PREFIX
from humback.records import read_jsonl
from humback.scoring import CHOICES, NO_INSTRUCTION, judge_messages
from humback.templates import backward_messages


def workload(gen, prompts, conts, choices, asked, replies) -> tuple[float, list, list]:
    """Seconds for the judge's and IFD's calls, chunked as `curate` does, and their answers."""
    start, probs, lps = time.perf_counter(), [], []
    step = gen.chunk_size
    for c in range(0, len(prompts), step):
        probs += gen.next_token_probs(prompts[c : c + step], conts[c : c + step], choices)
    for chats in (asked, [NO_INSTRUCTION] * len(asked)):
        for c in range(0, len(chats), step):
            lps += gen.reply_logprobs(chats[c : c + step], replies[c : c + step])
    return time.perf_counter() - start, probs, lps


def expected(d: dict) -> float:
    return sum(int(k) * p for k, p in d.items()) if d else float("nan")


def agreement(ref: tuple, got: tuple, choices: list[str]) -> dict:
    _, rp, rl = ref
    _, gp, gl = got
    prob = [abs(a[c] - b[c]) for a, b in zip(rp, gp) for c in choices]
    score = [
        abs(expected({k.strip(): v for k, v in a.items()}) - expected({k.strip(): v for k, v in b.items()}))
        for a, b in zip(rp, gp)
    ]
    lp = [
        abs(x - y) for a, b in zip(rl, gl) for x, y in zip(a["tokens"] + [a["end"]], b["tokens"] + [b["end"]])
    ]
    return {
        "prob_max_abs": round(max(prob), 4),
        "prob_mean_abs": round(statistics.fmean(prob), 5),
        "expected_score_max_abs": round(max(score), 4),
        "expected_score_mean_abs": round(statistics.fmean(score), 4),
        "reply_logprob_max_abs": round(max(lp), 4),
        "reply_logprob_mean_abs": round(statistics.fmean(lp), 5),
    }


def greedy_parity(ref_texts: list[str], texts: list[str], tokenizer) -> dict:
    shares = []
    for a, b in zip(ref_texts, texts):
        x, y = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (a, b))
        k = 0
        while k < min(len(x), len(y)) and x[k] == y[k]:
            k += 1
        shares.append(k / max(len(x), len(y), 1))
    return {
        "identical": round(sum(a == b for a, b in zip(ref_texts, texts)) / len(texts), 3),
        "shared_leading_tokens": round(statistics.fmean(shares), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference", default="transformers:8")
    ap.add_argument("--baseline", default="ctranslate2:int8:8")
    ap.add_argument("--candidates", nargs="+", default=["openvino:int8:8"])
    ap.add_argument("--out", default="bench/results/curate_backends.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        seed_pairs("demo", Path(tmp) / "seed.jsonl", SeedConfig(), seed=0, log=lambda s: None)
        pairs = list(read_jsonl(Path(tmp) / "seed.jsonl"))
    prompts = [judge_messages(p["instruction"], p["response"]) for p in pairs]
    conts, choices = [SCORE_PREFIX] * len(prompts), [" " + c for c in CHOICES]
    asked = [[{"role": "user", "content": p["instruction"]}] for p in pairs]
    replies = [p["response"] for p in pairs]
    greedy_prompts = [backward_messages(r["text"]) for r in demo_segments(16)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=48)

    specs = list(dict.fromkeys([args.reference, args.baseline] + args.candidates))
    gens, startup = {}, {}
    for s in specs:
        if s.startswith(("ctranslate2", "openvino")):
            load_generator(engine(s), "default")  # converts once (cached): start-up below is a warm load
        start = time.perf_counter()
        gens[s] = load_generator(engine(s), "default")
        startup[s] = round(time.perf_counter() - start, 1)
    seconds: dict[str, list[float]] = {s: [] for s in specs}
    answers: dict[str, tuple] = {}
    # The reference answers once (its seconds too, for scale); the timed sides rotate over the rounds.
    answers[args.reference] = workload(gens[args.reference], prompts, conts, choices, asked, replies)
    seconds[args.reference].append(answers[args.reference][0] / len(prompts))
    timed = [s for s in specs if s != args.reference]
    for r in range(args.rounds):
        for s in timed[r % len(timed) :] + timed[: r % len(timed)]:
            answers[s] = workload(gens[s], prompts, conts, choices, asked, replies)
            seconds[s].append(answers[s][0] / len(prompts))
            print(f"round {r + 1} {s:<22} {seconds[s][-1]:.3f} s/candidate", flush=True)
    texts = {s: gens[s].generate(greedy_prompts, greedy) for s in specs}
    tokenizer = gens[args.reference].tokenizer
    details = {}
    for s in specs:
        median = statistics.median(seconds[s])
        details[s] = {
            "seconds_per_candidate": round(median, 3),
            "rounds": [round(x, 3) for x in seconds[s]],
            "startup_s": startup[s],
            "fingerprint": gens[s].fingerprint.split(":")[:-1],
            "agreement_with_reference": agreement(answers[args.reference], answers[s], choices),
            "greedy_parity": greedy_parity(texts[args.reference], texts[s], tokenizer),
        }
    base = details[args.baseline]["seconds_per_candidate"]
    for s in specs:
        details[s]["speedup_vs_baseline"] = round(base / details[s]["seconds_per_candidate"], 2)
    best = min(args.candidates, key=lambda s: details[s]["seconds_per_candidate"])
    write_record(
        args.out,
        "curate_backends",
        "seconds per candidate (judge + IFD; lower is better)",
        base,
        details[best]["seconds_per_candidate"],
        details[best]["speedup_vs_baseline"],
        ratio_meaning="baseline / candidate (speed-up)",
        baseline_backend=args.baseline,
        candidate_backend=best,
        reference=args.reference,
        setup={
            "judge": "default (SmolLM2-135M-Instruct)",
            "method": "expected + IFD",
            "candidates": len(prompts),
            "rounds": args.rounds,
            "greedy_prompts": len(greedy_prompts),
        },
        details=details,
    )


if __name__ == "__main__":
    main()
