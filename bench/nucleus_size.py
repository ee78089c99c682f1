"""How many tokens the top_p nucleus holds on the augmentation workload: the evidence behind
CTranslate2's `sampling_top_k` default (sample from the k most probable tokens, then cut at top_p).

The default model (transformers, float32) samples replies to the backward prompt over the bundled demo
segments with the augment stage's settings (T 0.7, top_p 0.9, exact: no top-k); at every generated step the
nucleus is measured on the same temperature-scaled distribution: the fewest most-probable tokens whose
probability reaches top_p. Reported: steps, the nucleus size's median, 99th percentile and maximum, and for
each k the share of steps whose nucleus holds more than k tokens (where a top-k cut would change the
distribution) and the mean nucleus mass such a cut drops. Candidate = the share of steps a cut at k=1000
leaves exact; baseline = the same share at k=50, a common top-k default.

    .venv/bin/python bench/nucleus_size.py          # writes bench/results/nucleus_size.json
"""

from __future__ import annotations

import argparse
import statistics

import torch
from record import write_record
from workloads import demo_segments

from humback.config import AugmentConfig
from humback.models import load_model, load_tokenizer
from humback.templates import backward_messages, render_prompt

CUTS = (50, 100, 200, 500, 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--out", default="bench/results/nucleus_size.json")
    args = ap.parse_args()
    cfg = AugmentConfig()
    tok, lm = load_tokenizer("default"), load_model("default").eval()
    sizes: list[int] = []
    dropped: dict[int, list[float]] = {k: [] for k in CUTS}
    torch.manual_seed(0)
    for row in demo_segments(args.segments):
        ids = tok(
            render_prompt(tok, backward_messages(row["text"])), add_special_tokens=False, return_tensors="pt"
        )["input_ids"]
        with torch.inference_mode():
            out = lm.generate(
                ids,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=None,
                max_new_tokens=cfg.max_new_tokens,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id,
            )
        for logits in out.logits:
            probs = torch.softmax(logits[0].double() / cfg.temperature, -1).sort(descending=True).values
            mass = probs.cumsum(0)
            n = int((mass < cfg.top_p).sum()) + 1
            sizes.append(n)
            for k in CUTS:
                if n > k:
                    dropped[k].append(float((mass[n - 1] - mass[k - 1]) / mass[n - 1]))
    steps = len(sizes)
    cuts = {
        k: {
            "steps_over_k": len(dropped[k]),
            "share_over_k": round(len(dropped[k]) / steps, 5),
            "mean_mass_dropped_when_over": round(statistics.fmean(dropped[k]), 4) if dropped[k] else 0.0,
        }
        for k in CUTS
    }
    print(cuts)
    exact = {k: 1 - cuts[k]["share_over_k"] for k in CUTS}
    write_record(
        args.out,
        "nucleus_size",
        "share of sampled steps a top-k cut leaves exact",
        round(exact[50], 5),
        round(exact[1000], 5),
        round(exact[1000] / exact[50], 4),
        workload={
            "segments": args.segments,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_new_tokens": cfg.max_new_tokens,
            "model": "default (SmolLM2-135M-Instruct)",
        },
        steps=steps,
        median=statistics.median(sizes),
        p99=sorted(sizes)[int(0.99 * (steps - 1))],
        max=max(sizes),
        cuts=cuts,
    )


if __name__ == "__main__":
    main()
