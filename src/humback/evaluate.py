"""`humback eval`: evidence that each stage worked, on held-out pairs the run never trained on.

- Backward model: mean per-token NLL of the true instruction given its response (the backward prompt)
  under the base model and under M_yx, and ROUGE-L (rouge-score, LCS F-measure) of instructions they
  sample (augment's settings) against the truth.
- Judge: `humback calibrate` numbers for each iteration's judge M_{t-1}, on negatives built from the
  held-out pairs, with the run's curation settings.
- Forward models (base, M0..MT): mean per-token NLL of the held-out reference answers; greedy answers to
  held-out instructions, exported in AlpacaEval's format; pairwise win rates judged in both orders, and a
  length-controlled win rate (Dubois et al. 2024, "Length-Controlled AlpacaEval", arXiv 2404.04475: a
  logistic model of the preference on the length difference, read at equal length).
- Optional: lm-evaluation-harness tasks on each saved model (`pip install 'humback[lm-eval]'`).

Every model call goes through the run's response cache, so a killed eval reruns from where it stopped.
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

from humback.calibrate import calibrate, read_pairs
from humback.config import EvalConfig, RunConfig
from humback.errors import HumbackError
from humback.files import atomic_write, ensure_dir
from humback.generation import open_generator
from humback.generation.base import Generator, SamplingParams, row_seed
from humback.prompts import PAIRWISE_PREFIX, PAIRWISE_PROMPT
from humback.records import RecordError
from humback.rundir import RunDir
from humback.templates import backward_messages, forward_messages


class EvalError(HumbackError):
    """An evaluation that cannot run as asked (no held-out data, a model missing from the run)."""


def mean_nll(generator: Generator, prompts: list[list[dict]], replies: list[str]) -> float:
    """Token-weighted mean negative log-likelihood (nats per token) of `replies` given `prompts`."""
    scored = generator.reply_logprobs(prompts, replies)
    total = sum(-sum(s["tokens"]) for s in scored)
    count = sum(len(s["tokens"]) for s in scored)
    return round(total / count, 4) if count else math.nan


def rouge_l(predictions: list[str], references: list[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return round(sum(scores) / len(scores), 4) if scores else math.nan


def answers(generator: Generator, instructions: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers with both system tags, as the trained models are meant to be used (paper Table 8)."""
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    return generator.generate([forward_messages(i, "inference") for i in instructions], params)


def preferences(
    judge: Generator, instructions: list[str], first: list[str], second: list[str], method: str = "expected"
) -> list[float | None]:
    """P(`first[i]` is better than `second[i]`), averaged over both presentation orders. 'expected' reads
    the judge's next-token probability of A vs B; 'sample' parses a greedy reply (1, 0, or 0.5 for a
    tie or an unreadable verdict in one order; None when neither order was readable)."""

    def ask(a: list[str], b: list[str]) -> list[float | None]:
        prompts = [
            [{"role": "user", "content": PAIRWISE_PROMPT.format(instruction=i, a=x, b=y)}]
            for i, x, y in zip(instructions, a, b)
        ]
        if method == "expected":
            return [
                d.get(" A") if d else None
                for d in judge.next_token_probs(prompts, [PAIRWISE_PREFIX] * len(prompts), [" A", " B"])
            ]
        replies = judge.generate(prompts, SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=8))
        return [parse_verdict(r) for r in replies]

    forward, backward = ask(first, second), ask(second, first)
    out: list[float | None] = []
    for p, q in zip(forward, backward):
        both = [v for v in (p, None if q is None else 1 - q) if v is not None]
        out.append(round(sum(both) / len(both), 4) if both else None)
    return out


def parse_verdict(text: str) -> float | None:
    """1.0 for A, 0.0 for B, from a reply that starts with (or only states) one letter; else None."""
    import re

    letters = re.findall(r"\b([AB])\b", text or "")
    return None if len(set(letters)) != 1 else (1.0 if letters[0] == "A" else 0.0)


def win_rates(prefs: list[float | None], first: list[str], second: list[str]) -> dict:
    """Win rate of `first` (ties and probabilities count fractionally), and the length-controlled one."""
    keep = [i for i, p in enumerate(prefs) if p is not None]
    if not keep:
        return {"win_rate": None, "lc_win_rate": None, "n": 0, "unreadable": len(prefs)}
    p = [prefs[i] for i in keep]
    out = {
        "win_rate": round(sum(p) / len(p), 4),
        "n": len(keep),
        "unreadable": len(prefs) - len(keep),
        "mean_chars_first": round(sum(len(first[i]) for i in keep) / len(keep), 1),
        "mean_chars_second": round(sum(len(second[i]) for i in keep) / len(keep), 1),
    }
    out["lc_win_rate"] = length_controlled(p, [len(first[i]) - len(second[i]) for i in keep])
    return out


def length_controlled(prefs: list[float], length_diff: list[int]) -> float | None:
    """Win rate at equal length: logistic regression of the preference on the (scaled) length difference,
    the intercept read through the sigmoid. Each preference p is one win of weight p and one loss of
    weight 1 - p."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if len(prefs) < 4:
        return None
    scale = float(np.std(length_diff)) or 1.0
    x = np.array([[d / scale] for d in length_diff] * 2)
    y = np.array([1] * len(prefs) + [0] * len(prefs))
    w = np.array(list(prefs) + [1 - p for p in prefs])
    if w[y == 1].sum() == 0 or w[y == 0].sum() == 0:
        return round(float(w[y == 1].sum() > 0), 4)
    model = LogisticRegression(C=1.0).fit(x, y, sample_weight=w)
    return round(1 / (1 + math.exp(-float(model.intercept_[0]))), 4)


def alpaca_eval_records(instructions: list[dict], outputs: list[str], generator_name: str) -> list[dict]:
    """AlpacaEval's model-output format: [{instruction, output, generator, dataset}]."""
    return [
        {
            "instruction": r["instruction"],
            "output": o,
            "generator": generator_name,
            "dataset": r.get("dataset", "humback-heldout"),
        }
        for r, o in zip(instructions, outputs)
    ]


def run_lm_eval(model_path: str, tasks: list[str], limit: int | None = None) -> dict:
    """lm-evaluation-harness on a saved checkpoint; its per-task metrics."""
    try:
        import lm_eval
    except ImportError:
        raise EvalError(
            "eval.lm_eval_tasks needs lm-evaluation-harness: pip install 'humback[lm-eval]'"
        ) from None
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_path}", tasks=tasks, limit=limit)
    return {
        task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        for task, metrics in res["results"].items()
    }


def _heldout(cfg: EvalConfig) -> list[dict]:
    if not cfg.heldout:
        raise EvalError(
            "no held-out data: pass --heldout FILE (JSONL with instruction and response columns;"
            " never data the run trained on) or set eval.heldout"
        )
    try:
        return read_pairs(cfg.heldout, cfg.response_field)
    except RecordError as e:
        raise EvalError(str(e)) from None


def evaluate(run_dir: str | Path, cfg: RunConfig, log=print) -> dict:
    """Evaluate a finished run into run_dir/eval/ (metrics.json, answers/*.json, calibration/). One model
    in memory at a time: each part loads, uses and drops its models in turn."""
    run = RunDir(run_dir)
    pairs = _heldout(cfg.eval)
    forward = {"base": cfg.model, **{f"m{t}": str(run.model(f"m{t}")) for t in range(cfg.iterations + 1)}}
    missing = [str(run.model(n)) for n in ["myx", *list(forward)[1:]] if not run.model(n).is_dir()]
    if missing:
        raise EvalError(
            f"models missing from {run_dir}: {', '.join(missing)} (run `humback run` to finish it)"
        )
    unknown = {m for pair in cfg.eval.comparisons(cfg.iterations) for m in pair} - set(forward)
    if unknown:
        raise EvalError(
            f"eval.compare names unknown model(s) {', '.join(sorted(unknown))}"
            f" (accepted: {', '.join(forward)})"
        )
    cache = run.cache_file(cfg.generation.cache)

    def load(role: str, model: str) -> Generator:
        log(f"[eval] loading {model} ({role})")
        return open_generator(cfg.generation.role(role), model, cache)

    ev = cfg.eval
    nll_pairs, ask = pairs[: ev.nll_pairs], pairs[: ev.answer_pairs]
    metrics: dict = {"heldout": str(ev.heldout), "nll_pairs": len(nll_pairs), "answer_pairs": len(ask)}
    metrics["backward"] = _backward(cfg, run, nll_pairs, load)
    metrics["forward"], outputs = _forward(cfg, forward, nll_pairs, ask, run.eval_dir, load)
    metrics["win_rates"] = _win_rates(cfg, ask, outputs, load)
    metrics["judges"] = _judges(cfg, run, pairs[: ev.calibration_pairs], load)
    if ev.lm_eval_tasks:
        metrics["lm_eval"] = {
            name: run_lm_eval(model, ev.lm_eval_tasks, ev.lm_eval_limit)
            for name, model in forward.items()
            if name != "base" or Path(model).is_dir()
        }
    atomic_write(run.eval_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def _backward(cfg: RunConfig, run: RunDir, pairs: list[dict], load) -> dict:
    """Base vs M_yx as backward models: NLL of the true instruction, ROUGE-L of sampled ones."""
    prompts = [backward_messages(p["response"]) for p in pairs]
    truth = [p["instruction"] for p in pairs]
    params = SamplingParams(
        cfg.augment.temperature, cfg.augment.top_p, cfg.augment.max_new_tokens, cfg.random_seed
    )
    out = {}
    for name, model in (("base", cfg.model), ("myx", str(run.model("myx")))):
        gen = load("backward", model)
        sampled = gen.generate(prompts, params, [row_seed(cfg.random_seed, p["id"]) for p in pairs])
        out[name] = {"instruction_nll": mean_nll(gen, prompts, truth), "rouge_l": rouge_l(sampled, truth)}
        del gen
        gc.collect()
    return out


def _forward(
    cfg: RunConfig, models: dict[str, str], nll_pairs: list[dict], ask: list[dict], out_dir: Path, load
) -> tuple[dict, dict[str, list[str]]]:
    """Each forward model's NLL of the reference answers and its greedy answers (written in AlpacaEval's
    format to out_dir/answers/<name>.json)."""
    prompts = [forward_messages(p["instruction"], "inference") for p in nll_pairs]
    metrics, outputs = {}, {}
    ensure_dir(out_dir / "answers")
    for name, model in models.items():
        gen = load("answerer", model)
        outputs[name] = answers(gen, [p["instruction"] for p in ask], cfg.eval.max_new_tokens)
        metrics[name] = {
            "reference_nll": mean_nll(gen, prompts, [p["response"] for p in nll_pairs]),
            "mean_answer_chars": round(sum(map(len, outputs[name])) / max(1, len(ask)), 1),
        }
        atomic_write(
            out_dir / "answers" / f"{name}.json",
            json.dumps(
                alpaca_eval_records(ask, outputs[name], f"humback-{cfg.name}-{name}"),
                indent=1,
                ensure_ascii=False,
            ),
        )
        del gen
        gc.collect()
    return metrics, outputs


def _win_rates(cfg: RunConfig, ask: list[dict], outputs: dict[str, list[str]], load) -> dict:
    """Pairwise win rates, both orders, by the referee (generation.referee; the base model unless named)."""
    model = cfg.generation.role("referee").model or cfg.model
    judge = load("referee", model)
    result: dict = {"judge": model, "method": cfg.eval.pairwise_method, "pairs": {}}
    for a, b in cfg.eval.comparisons(cfg.iterations):
        prefs = preferences(
            judge, [p["instruction"] for p in ask], outputs[a], outputs[b], cfg.eval.pairwise_method
        )
        result["pairs"][f"{a} vs {b}"] = win_rates(prefs, outputs[a], outputs[b])
    del judge
    gc.collect()
    return result


def _judges(cfg: RunConfig, run: RunDir, pairs: list[dict], load) -> dict:
    """Each iteration's judge, calibrated on negatives built from the held-out `pairs` with the run's
    curation settings."""
    out = {}
    for t in range(1, cfg.iterations + 1):
        name = run.judge(t, cfg.generation.role("judge").model)
        gen = load("judge", name)
        res = calibrate(
            pairs, gen, run.calibration(t), cfg.curate, seed=cfg.random_seed, source=str(cfg.eval.heldout)
        )
        out[f"iter{t}"] = {
            "judge": name,
            "parse_failure_rate": res.get("parse_failure_rate", 0.0),
            "signals": res["signals"],
            "selection": res["selection"],
        }
        del gen
        gc.collect()
    return out
