"""Supervised fine-tuning of the backward model M_yx and the forward models M0..Mt, through TRL + PEFT.

Recipe facts (paper Table 18, docs/method.md §7): lr 1e-5 decaying *linearly to 9e-6* (ratio 0.9, not to
zero: the earlier re-implementation applied the floor as a multiplier and decayed to ~0), weight decay
0.1, dropout 0.1, batch 32 (8 below 3,000 examples), steps by data size.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from humback.config import TrainConfig
from humback.files import atomic_write, check_replaceable, ensure_dir, make_owned_dir, publish, remove_owned
from humback.records import read_jsonl
from humback.stats import Hardware, TrainStats
from humback.training.examples import Direction, encode

TRAINED = "humback_train.json"  # in every checkpoint humback trains: its config, stats and loss curve
RESUME_KEY = "trainer/humback_resume_key"  # in <out>.tmp: what the checkpoints there were trained on

# Paper Table 18: (data size N, steps, batch size).
TABLE18 = [
    (100, 30, 8),
    (800, 300, 8),
    (1600, 600, 8),
    (3200, 500, 32),
    (6400, 600, 32),
    (12800, 600, 32),
    (25600, 1200, 32),
    (51200, 1600, 32),
]


def paper_steps(n: int) -> int:
    """Steps for n examples: the first Table 18 row whose N is at least n (the last row beyond it)."""
    return next((steps for size, steps, _ in TABLE18 if n <= size), TABLE18[-1][1])


def paper_batch_size(n: int) -> int:
    return 8 if n < 3000 else 32


def _hardware(cfg: TrainConfig) -> Hardware:
    """Precision and checkpointing by hardware: bf16 only where the GPU has it (on a CPU without native
    bf16 one step took >10 min vs 28 s in fp32); checkpointing on GPU only (on CPU it costs a third more
    time and memory is not the limit at these sizes)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    # Padding-free batches (all sequences of a batch in one row, split by position ids) need FlashAttention's
    # variable-length kernels; elsewhere batches are grouped by length, so little is padded either way.
    padding_free = bool(cuda and importlib.util.find_spec("flash_attn"))
    if cfg.gradient_checkpointing == "auto":
        checkpointing = cuda
    else:
        checkpointing = cfg.gradient_checkpointing == "on"
    return {
        "device": "cuda" if cuda else "cpu",
        "bf16": bf16,
        "gradient_checkpointing": checkpointing,
        "padding_free": padding_free,
    }


def resume_key(base_model: str, direction: str, cfg: TrainConfig, seed: int, examples: list[dict]) -> str:
    """What a checkpoint must have been trained on to be resumed: same base, direction, settings, data."""
    import hashlib

    h = hashlib.sha256(json.dumps([base_model, direction, cfg.model_dump(), seed], sort_keys=True).encode())
    for ex in examples:
        h.update(json.dumps(ex["input_ids"]).encode())
        h.update(json.dumps(ex["labels"]).encode())
    return h.hexdigest()


def last_checkpoint(trainer_dir: Path, key: str) -> str | None:
    """The newest complete checkpoint left by a killed run with the same resume key, else None. The
    Trainer writes trainer_state.json last, so a checkpoint the kill cut short lacks a readable one."""
    marker = trainer_dir / Path(RESUME_KEY).name
    if not marker.is_file() or marker.read_text() != key:
        return None
    found = []
    for ckpt in trainer_dir.glob("checkpoint-*"):
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            found.append((int(ckpt.name.split("-")[1]), ckpt))
        except (OSError, ValueError, IndexError):
            continue
    return str(max(found)[1]) if found else None


@dataclass(frozen=True)
class Plan:
    """How many steps of how many examples, and how a step's batch is split over micro-batches and
    processes (examples per step = batch, whatever the hardware)."""

    examples: int
    steps: int
    batch: int
    micro: int
    accumulate: int
    processes: int


def plan(n: int, cfg: TrainConfig, processes: int) -> Plan:
    batch = cfg.batch_size or paper_batch_size(n)
    micro = min(cfg.micro_batch_size, batch)
    return Plan(
        examples=n,
        steps=cfg.max_steps or paper_steps(n),
        batch=batch,
        micro=micro,
        accumulate=max(1, math.ceil(batch / (micro * processes))),
        processes=processes,
    )


def train(
    data: Sequence[str | Path],
    base_model: str,
    out: str | Path,
    cfg: TrainConfig,
    *,
    direction: Direction,
    seed: int = 0,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> TrainStats:
    """Fine-tune `base_model` on the (instruction, response) pairs of the `data` files and save a plain
    checkpoint (LoRA merged) to `out`. With a `deadline` (time.time() seconds, a budget's max_hours) it
    stops at the last step that ends before it, checkpointed, and raises budget.TimeUp: the same call
    later resumes there."""
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from humback.models import load_tokenizer

    text = ("instruction", "response")
    pairs = [row for f in data for row in read_jsonl(f, required=text, strings=text)]
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    # Refused now, not after hours of training: an --out that is someone's folder is never replaced.
    check_replaceable(out, also=(TRAINED,))
    check_replaceable(tmp, also=(RESUME_KEY,))
    # Under `accelerate launch` every process runs this function; files are written by the main one.
    hw = _hardware(cfg)
    # cpu=True makes a CPU launch with WORLD_SIZE > 1 data-parallel over gloo, as TrainingArguments does.
    state = PartialState(cpu=hw["device"] == "cpu")
    set_seed(seed)
    tokenizer = load_tokenizer(base_model)
    encoded = encode(tokenizer, pairs, direction, cfg.tags, cfg.max_length)
    p = plan(len(encoded.examples), cfg, state.num_processes)
    log(
        f"[train {direction}] {p.examples} examples ({encoded.dropped_too_long} dropped > {cfg.max_length} "
        f"tokens), "
        f"{p.steps} steps x batch {p.batch} ({p.micro} x {p.accumulate} accumulated x {p.processes} "
        f"processes), "
        f"{cfg.method}, {hw['device']} {'bf16' if hw['bf16'] else 'fp32'}, gradient checkpointing "
        f"{'on' if hw['gradient_checkpointing'] else 'off'},"
        f" {'padding-free' if hw['padding_free'] else 'length-grouped'} batches"
    )
    model, peft_config = _model(base_model, cfg, hw)
    # The run trains in <out>.tmp and checkpoints there; a killed run with the same key resumes from its
    # last checkpoint, anything else starts over.
    resume = _work_folder(tmp, resume_key(base_model, direction, cfg, seed, encoded.examples), state)
    if resume is not None:
        log(f"[train {direction}] resuming from {resume}")
    with warnings.catch_warnings():
        # Known-harmless library notices: transformers 5 renamed gradient_checkpointing (TRL 1.16 still
        # uses the old name); the schedule is given num_stable_steps=0 on purpose (decay from step one).
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated")
        warnings.filterwarnings("ignore", message="Both num_training_steps and num_stable_steps")
        args = SFTConfig(**sft_settings(tmp / "trainer", p, cfg, hw, seed))
        rows = [{**ex, "length": len(ex["input_ids"])} for ex in encoded.examples]
        clock = deadline_callback(deadline) if deadline is not None else None
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[clock] if clock is not None else None,
        )
        start = time.time()
        trainer.train(resume_from_checkpoint=resume)
    if clock is not None and clock.stopped:
        from humback.budget import TimeUp

        raise TimeUp(trainer.state.global_step, p.steps)
    seconds = time.time() - start
    # Saved through the Trainer, which gathers sharded weights (DeepSpeed ZeRO-3, FSDP) and writes on the
    # main process only: the full model, or the LoRA adapter, merged below on the CPU.
    with warnings.catch_warnings():  # PEFT's save and load still ask the renamed is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated")
        trainer.save_model(str(tmp / "adapter" if peft_config is not None else tmp))
        state.wait_for_everyone()
        curve = [
            {"step": e["step"], "loss": e["loss"], "lr": e.get("learning_rate")}
            for e in trainer.state.log_history
            if "loss" in e
        ]
        stats = _stats(trainer, encoded, direction, p, cfg, seconds, resume, hw, curve)
        if state.is_main_process:
            _finish(tmp, out, base_model, tokenizer, peft_config is not None, cfg, stats, curve)
    state.wait_for_everyone()
    return stats


def deadline_callback(at: float):
    """A TrainerCallback that stops training, with a checkpoint saved, after the last step expected to end
    before `at` (time.time() seconds); its `stopped` says whether it did."""
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        def __init__(self):
            self.last, self.steps, self.stopped = time.time(), [], False

        def on_step_end(self, args, state, control, **kw):
            now = time.time()
            self.steps.append(now - self.last)
            self.last = now
            step = sorted(self.steps)[len(self.steps) // 2]  # the median step
            if state.global_step < state.max_steps and now + step > at:
                control.should_save = control.should_training_stop = True
                self.stopped = True
            return control

    return Deadline()


def _model(base_model: str, cfg: TrainConfig, hw: Hardware):
    """The model to train and, for LoRA, its PEFT config (adapters on every linear layer)."""
    from humback.models import load_model

    attn = {"attn_implementation": "flash_attention_2"} if hw["padding_free"] else {}
    if cfg.method != "lora":
        return load_model(base_model, attention_dropout=cfg.dropout, **attn), None
    from peft import LoraConfig

    return load_model(base_model, **attn), LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _work_folder(tmp: Path, key: str, state) -> str | None:
    """Prepare <out>.tmp: the checkpoint to resume from when a killed run with the same key left one;
    otherwise (main process) the folder is cleared for a fresh start."""
    resume = last_checkpoint(tmp / "trainer", key)
    if state.is_main_process:
        if resume is None:
            remove_owned(tmp, also=(RESUME_KEY,))
        make_owned_dir(tmp, also=(RESUME_KEY,))
        ensure_dir(tmp / "trainer")
        atomic_write(tmp / RESUME_KEY, key)
    state.wait_for_everyone()
    return resume


def sft_settings(trainer_dir: Path, p: Plan, cfg: TrainConfig, hw: Hardware, seed: int) -> dict:
    """SFTConfig arguments: the paper's recipe (Table 18) on this hardware."""
    return {
        "output_dir": str(trainer_dir),
        "max_steps": p.steps,
        "per_device_train_batch_size": p.micro,
        "gradient_accumulation_steps": p.accumulate,
        "learning_rate": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "lr_scheduler_type": "warmup_stable_decay",
        # The lr of step k (1-based) is lr * factor(k - 1): decaying over steps - 1 intervals puts the
        # last step exactly at min_lr_ratio (paper: 1e-5 -> 9e-6 at the end).
        "lr_scheduler_kwargs": {
            "num_stable_steps": 0,
            "num_decay_steps": max(1, p.steps - 1),
            "decay_type": "linear",
            "min_lr_ratio": cfg.min_lr_ratio,
        },
        "warmup_steps": 0,
        "bf16": hw["bf16"],
        "fp16": False,
        "gradient_checkpointing": hw["gradient_checkpointing"],
        "use_cpu": hw["device"] == "cpu",
        "max_length": None,  # over-length examples were already dropped and counted by encode()
        "padding_free": hw["padding_free"],
        "train_sampling_strategy": "group_by_length",  # batches of similar length: little padding
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps or max(1, p.steps // 10),
        "save_total_limit": 1,
        "report_to": [],
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,  # every trained parameter is used in every forward pass
        "include_num_input_tokens_seen": "non_padding",  # effective tokens, for tokens/s in the stats
    }


def _stats(
    trainer,
    encoded,
    direction: str,
    p: Plan,
    cfg: TrainConfig,
    seconds: float,
    resume: str | None,
    hw: Hardware,
    losses: list[dict],
) -> TrainStats:
    return {
        "direction": direction,
        "examples": p.examples,
        "dropped_too_long": encoded.dropped_too_long,
        "target_tokens": encoded.target_tokens,
        "steps": p.steps,
        "batch_size": p.batch,
        "method": cfg.method,
        "processes": trainer.args.world_size,
        "seconds": round(seconds, 1),
        "resumed_from": resume,
        "device": hw["device"],
        "bf16": hw["bf16"],
        "gradient_checkpointing": hw["gradient_checkpointing"],
        "padding_free": hw["padding_free"],
        "tokens_seen": trainer.state.num_input_tokens_seen,
        # After a resume the count includes steps of the killed run: no rate then.
        "tokens_per_s": round(trainer.state.num_input_tokens_seen / seconds, 1)
        if seconds and not resume
        else None,
        "first_loss": losses[0]["loss"] if losses else None,
        "last_loss": losses[-1]["loss"] if losses else None,
    }


def _finish(
    tmp: Path,
    out: Path,
    base_model: str,
    tokenizer,
    lora: bool,
    cfg: TrainConfig,
    stats: TrainStats,
    curve: list[dict],
) -> None:
    """Make <out>.tmp a plain checkpoint (LoRA merged, fp32 safetensors, tokenizer with its chat
    template, training config and loss curve) and rename it to <out>."""
    import torch

    from humback.models import load_model

    if lora:
        from peft import PeftModel

        merged = PeftModel.from_pretrained(load_model(base_model), tmp / "adapter").merge_and_unload()
        merged.to(torch.float32).save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(tmp / "adapter")
    (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: checkpoints here hold none
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    atomic_write(
        tmp / TRAINED, json.dumps({"config": cfg.model_dump(), "stats": stats, "loss_curve": curve}, indent=1)
    )
    publish(tmp, out, also=(TRAINED,))
