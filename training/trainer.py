"""LoRA fine-tuning on a RAFT dataset: a plain training loop (in the spirit of nanoGPT).

One script for every machine: CPU (in bf16 where the CPU computes it natively), CUDA with bf16
and gradient checkpointing, several GPUs through `accelerate launch` (each process takes every
n-th batch).

The loss is computed on the assistant's tokens only, and the language-model head runs only
at the positions that have a label: an answer is a few dozen tokens after a prompt of a
thousand, so this skips most of the largest matrix multiply of a small model.

Checkpoints (adapter, optimizer, scheduler, random states) are written every `save_every`
steps; the batch order is a function of the seed, so a resumed run continues exactly where
the interrupted one stopped and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from contracts.atomic import atomic_dir
from contracts.hardware import cpu_has_fast_bf16
from contracts.settings import TrainingConfig
from training.base_model import BaseModel
from training.dataset_folder import read_examples
from training.tokenization import IGNORE, TokenizedExample, tokenize_example

CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def train(base: BaseModel, dataset_dir: Path, run_dir: Path, s: TrainingConfig, resume: bool = False, progress: bool = False) -> TrainResult | None:
    """Train a LoRA adapter on `dataset_dir` into `run_dir/adapter`; `resume` continues its last checkpoint.

    Returns None in the processes other than the main one of a multi-process launch.
    """
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available() and s.device in (None, "cuda")
    if s.device == "cuda" and not cuda:
        raise TrainingError("training.device is cuda but no CUDA device is visible; set training.device to null or cpu")
    bf16 = (torch.cuda.is_bf16_supported() if cuda else cpu_has_fast_bf16()) if s.bf16 is None else s.bf16
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if bf16 else "no")
    torch.manual_seed(s.seed)

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    train_set, train_stats = _tokenize(tokenizer, read_examples(dataset_dir, "train"), s.max_seq_len)
    eval_set, _ = _tokenize(tokenizer, read_examples(dataset_dir, "eval"), s.max_seq_len)
    if not train_set:
        raise TrainingError(f"{dataset_dir} has no training example that fits max_seq_len={s.max_seq_len}")
    plan = _batch_plan(train_set, s, accelerator.num_processes, accelerator.process_index)
    rows = rows_per_pass(s.batch_size, cuda, bf16)
    total_steps = len(plan)

    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.bfloat16 if bf16 else torch.float32)
    if s.gradient_checkpointing if s.gradient_checkpointing is not None else cuda:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=s.lora.rank, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout, target_modules=list(s.lora.targets),
        bias="none", task_type="CAUSAL_LM",  # vLLM serves neither bias nor modules_to_save
    )
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(s, total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)

    start, history = 0, {"tokens": 0, "seconds": 0.0, "train_loss": []}
    checkpoint = _latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise TrainingError(f"nothing to resume in {run_dir}: no checkpoint was written yet; start a new run")
    if checkpoint is not None:
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        set_peft_model_state_dict(accelerator.unwrap_model(model), state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start, history = state["step"], state["history"]

    model.train()
    bar = tqdm(total=total_steps, initial=start, desc="training", unit="step", disable=not progress or not accelerator.is_main_process)
    for step in range(start, total_steps):
        began = time.perf_counter()
        micro = [[train_set[i] for i in batch] for batch in plan[step]]
        micro = [batch[i : i + rows] for batch in micro for i in range(0, len(batch), rows)]
        n_trained = sum(ex.n_trained for batch in micro for ex in batch)
        step_loss = 0.0
        for n, batch in enumerate(micro):
            sync = n == len(micro) - 1
            with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
                with accelerator.autocast():
                    loss_sum = _loss_sum(model, batch, accelerator.device)
                accelerator.backward(loss_sum / n_trained)
            step_loss += loss_sum.item()
            history["tokens"] += sum(len(ex.input_ids) for ex in batch)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        history["seconds"] += time.perf_counter() - began
        history["train_loss"].append(round(step_loss / n_trained, 5))
        done = step + 1
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", tok_s=f"{history['tokens'] / history['seconds']:.0f}")
        bar.update()
        if s.eval_every and done % s.eval_every == 0 and done < total_steps and eval_set:
            history.setdefault("eval_loss", []).append((done, evaluate_loss(model, eval_set, rows, accelerator)))
            model.train()
        if s.save_every and done % s.save_every == 0 and done < total_steps and accelerator.is_main_process:
            _save_checkpoint(run_dir, done, accelerator.unwrap_model(model), optimizer, scheduler, history)
    bar.close()

    metrics = {
        "steps": total_steps,
        "train_examples": len(train_set),
        "eval_examples": len(eval_set),
        **train_stats,
        "train_loss_first": history["train_loss"][0] if history["train_loss"] else None,
        "train_loss_last": _mean(history["train_loss"][-10:]),
        "eval_loss": evaluate_loss(model, eval_set, rows, accelerator) if eval_set else None,
        "tokens": history["tokens"],
        "train_seconds": round(history["seconds"], 2),
        "tokens_per_s": round(history["tokens"] / history["seconds"], 1) if history["seconds"] else None,
        "device": "cuda" if cuda else "cpu",
        "bf16": bf16,
        "processes": accelerator.num_processes,
        "loss_curve": history["train_loss"],
        "eval_loss_curve": history.get("eval_loss", []),
    }
    adapter_dir = run_dir / "adapter"
    if accelerator.is_main_process:
        _save_adapter(accelerator.unwrap_model(model), tokenizer, adapter_dir)
    accelerator.wait_for_everyone()
    return TrainResult(adapter_dir, metrics) if accelerator.is_main_process else None


def rows_per_pass(batch_size: int, cuda: bool, bf16: bool) -> int:
    """Examples per forward pass: the whole batch on CUDA and in bf16, one at a time on a CPU in fp32.

    A batch of fp32 activations outgrows glibc's 32 MB mmap threshold at a thousand tokens a row,
    so each step maps fresh pages and hands them back on free; on a VM with free page reporting
    that page churn costs more than the compute (one per pass was 1.92x whole batches on an AVX2
    CPU). bf16 activations are half the size and stay under it: there whole batches are the faster
    (one per pass was 0.77-0.79x on an AVX512-BF16 CPU). docs/benchmarks.md, benchmarks/train_bench.py.
    The gradient is the same either way: the losses are summed, then divided once.
    """
    return batch_size if cuda or bf16 else 1


def evaluate_loss(model: Any, examples: list[TokenizedExample], batch_size: int, accelerator: Any) -> float:
    """Mean loss per assistant token over `examples` (this process's share, reduced over all)."""
    model.eval()
    total = torch.zeros(2, device=accelerator.device)
    mine = examples[accelerator.process_index :: accelerator.num_processes]
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            batch = mine[i : i + batch_size]
            with accelerator.autocast():
                total[0] += _loss_sum(model, batch, accelerator.device).float()
            total[1] += sum(ex.n_trained for ex in batch)
    total = accelerator.reduce(total, reduction="sum")
    return round((total[0] / total[1]).item(), 5) if total[1] else float("nan")


def _loss_sum(model: Any, batch: list[TokenizedExample], device: torch.device) -> torch.Tensor:
    """Summed cross-entropy over the labelled tokens of a right-padded batch."""
    width = max(len(ex.input_ids) for ex in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, ex in enumerate(batch):
        ids[row, : len(ex.input_ids)] = torch.tensor(ex.input_ids)
        labels[row, : len(ex.labels)] = torch.tensor(ex.labels)
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = torch.nonzero((targets != IGNORE).any(dim=0)).squeeze(1)
    # No attention mask: padding is on the right, so under the causal mask no real token can
    # see it, and its outputs carry no label. Without a mask, attention takes its fused causal
    # path (about 20% faster on CPU).
    logits = model(input_ids=ids.to(device), logits_to_keep=keep.to(device)).logits
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets[:, keep].reshape(-1).to(device), ignore_index=IGNORE, reduction="sum"
    )


def _tokenize(tokenizer: Any, records: list[dict[str, Any]], max_len: int) -> tuple[list[TokenizedExample], dict[str, int]]:
    examples, truncated, too_long = [], 0, 0
    for record in records:
        ex = tokenize_example(tokenizer, record, max_len)
        if ex is None:
            too_long += 1
            continue
        truncated += ex.truncated
        examples.append(ex)
    return examples, {"truncated": truncated, "too_long": too_long}


def _batch_plan(examples: list[TokenizedExample], s: TrainingConfig, processes: int, rank: int) -> list[list[list[int]]]:
    """Per optimizer step, this process's micro-batches (example indices); a function of the seed only.

    Examples of similar length share a batch (less padding): each epoch shuffles, sorts
    windows of 32 batches by length, cuts batches, then shuffles the batches.
    """
    per_step = s.batch_size * s.grad_accum * processes
    steps_per_epoch = max(1, len(examples) // per_step) if len(examples) >= per_step else 1
    total = s.max_steps if s.max_steps else max(1, s.min_steps, math.ceil(s.epochs * steps_per_epoch))
    micro: list[list[int]] = []
    epoch = 0
    while len(micro) < total * s.grad_accum * processes:
        rng = random.Random(f"{s.seed}:{epoch}")
        order = list(range(len(examples)))
        rng.shuffle(order)
        window = s.batch_size * 32
        order = [i for w in range(0, len(order), window) for i in sorted(order[w : w + window], key=lambda i: len(examples[i].input_ids))]
        batches = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        rng.shuffle(batches)
        micro.extend(batches)
        epoch += 1
    steps = [micro[i * s.grad_accum * processes : (i + 1) * s.grad_accum * processes] for i in range(total)]
    return [step[rank::processes] for step in steps]


def _schedule(s: TrainingConfig, total: int):
    warmup = int(s.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if s.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if s.schedule == "linear":
            return 1 - progress
        return 1.0

    return factor


def _save_checkpoint(run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, history: dict[str, Any]) -> None:
    from peft import get_peft_model_state_dict

    folder = run_dir / CHECKPOINTS
    state = {
        "step": step, "adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "history": history,
    }
    with atomic_dir(folder / f"step-{step:06d}") as tmp:
        torch.save(state, tmp / "state.pt")
    for old in sorted(folder.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / CHECKPOINTS).glob("step-*"))
    return found[-1] if found else None


def _save_adapter(model: Any, tokenizer: Any, folder: Path) -> None:
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 5) if values else None
