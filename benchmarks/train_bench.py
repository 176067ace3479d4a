"""Training throughput: our trainer versus a plain transformers + peft loop, same data, same run.

Both train the same LoRA (same rank, targets, precision) on the same examples for one pass
(--examples / --batch-size optimizer steps) and count the same tokens (real, unpadded); each
runs in its own process so its peak memory is its own. The plain loop is what the peft docs
show: pad a batch, `model(input_ids, attention_mask, labels=labels).loss`, backward, step, with
the same assistant-only labels. A second baseline runs it in fp32, the default precision
without our bf16 choice. On CPU a third runs our trainer with the other choice of examples per
forward pass (`trainer.rows_per_pass`: whole batches in bf16, one example at a time in fp32), so
the choice is measured against its alternative in the same run. Timed is the training loop only
(model loading excluded on both sides).

    .venv/bin/python benchmarks/train_bench.py [--dataset DIR] [--examples 32] [--batch-size 4]

On a GPU machine add nothing: CUDA is used when present (bf16, gradient checkpointing).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contracts.hardware import cpu_has_fast_bf16  # noqa: E402
from contracts.settings import TrainingConfig  # noqa: E402
from training.base_model import EMBEDDED, resolve_base_model  # noqa: E402
from training.dataset_folder import latest_dataset, read_examples  # noqa: E402
from training.tokenization import IGNORE, tokenize_example  # noqa: E402
from training import trainer  # noqa: E402


def settings(args: argparse.Namespace, bf16: bool | None) -> TrainingConfig:
    return TrainingConfig(
        batch_size=args.batch_size, max_seq_len=args.max_seq_len, max_steps=args.examples // args.batch_size,
        save_every=0, warmup_ratio=0.0, bf16=bf16,
    )


def subset(dataset: Path, n: int, dest: Path) -> Path:
    """The first `n` train examples of `dataset` and no eval split, so only training is timed."""
    dest.mkdir(parents=True, exist_ok=True)
    rows = read_examples(dataset, "train")[:n]
    (dest / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (dest / "eval.jsonl").write_text("")
    (dest / "dataset_card.json").write_text("{}")
    return dest


def run_ours(base, data: Path, args: argparse.Namespace, other_rows: bool) -> dict:
    if other_rows:
        chosen = trainer.rows_per_pass
        trainer.rows_per_pass = lambda batch_size, cuda, bf16: 1 if chosen(batch_size, cuda, bf16) > 1 else batch_size
    with tempfile.TemporaryDirectory() as run_dir:
        m = trainer.train(base, data, Path(run_dir), settings(args, None)).metrics
    rows = trainer.rows_per_pass(args.batch_size, m["device"] == "cuda", m["bf16"])
    return {"tokens": m["tokens"], "seconds": m["train_seconds"], "bf16": m["bf16"], "device": m["device"], "rows_per_pass": rows}


def run_plain(base, data: Path, args: argparse.Namespace, bf16: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    s = settings(args, bf16)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(s.seed)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    examples = [tokenize_example(tokenizer, r, s.max_seq_len) for r in read_examples(data, "train")]
    examples = [e for e in examples if e is not None]
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.bfloat16 if bf16 else torch.float32).to(device)
    if cuda:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=s.lora.rank, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout, target_modules=list(s.lora.targets), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.learning_rate)
    model.train()
    tokens, began = 0, time.perf_counter()
    for i in range(0, len(examples), s.batch_size):
        batch = examples[i : i + s.batch_size]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in batch], device=device)
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch], device=device)
        labels = torch.tensor([e.labels + [IGNORE] * (width - len(e.labels)) for e in batch], device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += sum(len(e.input_ids) for e in batch)
    if cuda:
        torch.cuda.synchronize()
    return {"tokens": tokens, "seconds": round(time.perf_counter() - began, 2), "bf16": bf16, "device": device}


def child(args: argparse.Namespace) -> None:
    import torch

    base = resolve_base_model(args.base, args.work_dir)
    data = Path(args.data)
    if args.child.startswith("ours"):
        result = run_ours(base, data, args, other_rows=args.child == "ours-other")
    else:
        result = run_plain(base, data, args, bf16=args.child == "plain" and _bf16())
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.cuda.is_available():
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print("RESULT " + json.dumps(result))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_fast_bf16()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="dataset folder (default: the latest in the work dir)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".raft")
    parser.add_argument("--base", default=EMBEDDED)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--child", choices=["ours", "ours-other", "plain", "plain-fp32"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    resolve_base_model(args.base, args.work_dir)  # convert once, outside the timed children
    dataset = args.dataset or latest_dataset(args.work_dir / "datasets")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(dataset, args.examples, Path(tmp) / "data")
        # Without native bf16 the plain loop already runs fp32; on CUDA our trainer passes whole batches.
        modes = ("plain", "ours") + (("plain-fp32",) if _bf16() else ()) + (() if _cuda() else ("ours-other",))
        for mode in modes:
            cmd = [sys.executable, __file__, "--child", mode, "--data", str(data), "--base", args.base, "--work-dir", str(args.work_dir),
                   "--examples", str(args.examples), "--batch-size", str(args.batch_size), "--max-seq-len", str(args.max_seq_len)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            results[mode] = json.loads(line[len("RESULT "):])
            results[mode]["tokens_per_s"] = round(results[mode]["tokens"] / results[mode]["seconds"], 1)

    print(f"dataset {dataset}: {args.examples} examples, batch {args.batch_size}, max_seq_len {args.max_seq_len}, "
          f"device {results['ours']['device']}")
    print(f"{'loop':<32}{'precision':>10}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'peak RSS MiB':>14}{'peak CUDA MiB':>15}")
    names = {mode: f"raft trainer, {r['rows_per_pass']} per pass" for mode, r in results.items() if mode.startswith("ours")}
    names |= {"plain": "plain transformers+peft", "plain-fp32": "plain transformers+peft"}
    for mode, r in results.items():
        print(f"{names[mode]:<32}{'bf16' if r['bf16'] else 'fp32':>10}{r['tokens']:>9}{r['seconds']:>9.1f}{r['tokens_per_s']:>10.1f}"
              f"{r['peak_rss_mib']:>14}{r.get('peak_cuda_mib', '-'):>15}")
    ours = results["ours"]["tokens_per_s"]
    print(f"ratio raft trainer / plain loop, same precision: {ours / results['plain']['tokens_per_s']:.2f}x (goal >= 1.0x)")
    if "plain-fp32" in results:
        print(f"ratio raft trainer / plain loop in fp32:         {ours / results['plain-fp32']['tokens_per_s']:.2f}x")
    if "ours-other" in results:
        print(f"ratio raft trainer / its other rows per pass:  {ours / results['ours-other']['tokens_per_s']:.2f}x (goal >= 1.0x)")
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
