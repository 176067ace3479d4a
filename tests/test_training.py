"""LoRA training with the real embedded model (SmolLM2-135M) on real RAFT examples, on CPU.

Covers the label mask on real tokenized examples, truncation, a falling loss on a fixed
batch, resume after an interruption, the registry through `raft train`, and loading the adapter
in peft (vLLM serves it in tests/test_serving.py, loaded at runtime, and in
tests/test_vllm_supervision.py, loaded at launch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from contracts.prompt import example_docs
from contracts.settings import TrainingConfig
from flows.cli import main
from training import run as training_run
from training import trainer
from training.dataset_folder import read_examples
from training.registry import get_version, list_versions
from training.tokenization import IGNORE, TokenizedExample, tokenize_example
from training.trainer import train

# Small and fast: short sequences, no dropout (the resume test compares weights exactly).
FAST = TrainingConfig(batch_size=2, max_seq_len=512, warmup_ratio=0.0, save_every=0)


@pytest.fixture(scope="module")
def llm_tokenizer(base_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model.path)


def subset(dataset: Path, dest: Path, n_train: int, n_eval: int) -> Path:
    """The first examples of each split of `dataset`, as a dataset folder."""
    dest.mkdir(parents=True)
    for split, n in (("train", n_train), ("eval", n_eval)):
        rows = read_examples(dataset, split)[:n]
        (dest / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(dataset / "dataset_card.json", dest / "dataset_card.json")
    return dest


# --- the label mask ------------------------------------------------------------------------


def test_only_the_answer_and_its_end_of_turn_carry_loss(llm_tokenizer, small_dataset):
    tokenizer = llm_tokenizer
    for record in read_examples(small_dataset, "train"):
        ex = tokenize_example(tokenizer, record, 4096)
        trained = [i for i, label in enumerate(ex.labels) if label != IGNORE]
        assert trained == list(range(trained[0], trained[-1] + 1)), "the answer is one contiguous span"
        assert tokenizer.decode([ex.input_ids[i] for i in trained]) == record["target"] + "<|im_end|>"
        prompt = tokenizer.decode(ex.input_ids[: trained[0]])
        assert prompt.endswith("<|im_start|>assistant\n"), "everything before the answer, header included, is masked"
        assert record["question"] in prompt and "<|im_start|>system" in prompt
        assert all(ex.labels[i] == ex.input_ids[i] for i in trained)


def test_truncation_cuts_distractors_never_the_oracle_or_the_answer(llm_tokenizer, small_dataset):
    tokenizer = llm_tokenizer
    record = next(r for r in read_examples(small_dataset, "train") if r["oracle_present"])
    full = tokenize_example(tokenizer, record, 4096)
    docs = example_docs(record)
    oracle = docs[record["oracle_position"] - 1]
    distractor = next(d for n, d in enumerate(docs, start=1) if n != record["oracle_position"])

    cut = tokenize_example(tokenizer, record, len(full.input_ids) - 20)
    assert cut.truncated and len(cut.input_ids) <= len(full.input_ids) - 20
    text = tokenizer.decode(cut.input_ids)
    assert oracle.text in text and distractor.text not in text
    assert cut.n_trained == full.n_trained
    assert text.count("<DOCUMENT") == len(docs), "documents keep their numbers: the answer cites them"

    assert tokenize_example(tokenizer, record, 64) is None


# --- training ------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_falls_on_a_fixed_batch(base_model, small_dataset, tmp_path):
    data = subset(small_dataset, tmp_path / "two", 2, 1)  # one batch of two: every step sees the same batch
    s = FAST.model_copy(update={"max_steps": 6, "learning_rate": 2e-3, "schedule": "constant"})
    result = train(base_model, data, tmp_path / "run", s)
    curve = result.metrics["loss_curve"]
    assert len(curve) == 6
    assert curve[-1] < 0.6 * curve[0], curve
    assert result.metrics["eval_loss"] is not None


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_at_the_checkpoint_with_the_same_result(base_model, small_dataset, tmp_path, monkeypatch):
    data = subset(small_dataset, tmp_path / "four", 4, 1)  # two steps of two: cut after the first
    s = FAST.model_copy(update={"max_steps": 2, "save_every": 1})
    whole = train(base_model, data, tmp_path / "whole", s)

    save = trainer._save_checkpoint

    def save_then_die(run_dir, step, *args):
        save(run_dir, step, *args)
        raise Interrupted(step)

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train(base_model, data, tmp_path / "cut", s)
    monkeypatch.setattr(trainer, "_save_checkpoint", save)
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-000001"]
    assert not (tmp_path / "cut" / "adapter").exists()

    resumed = train(base_model, data, tmp_path / "cut", s, resume=True)
    assert resumed.metrics["loss_curve"] == whole.metrics["loss_curve"]
    a = load_file(whole.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run ends with the uninterrupted run's weights"


def test_a_small_dataset_trains_at_least_min_steps_and_max_steps_wins():
    examples = [TokenizedExample([1] * (n + 2), [IGNORE, 1] + [1] * n, False) for n in range(56)]
    steps = lambda **update: len(trainer._batch_plan(examples, TrainingConfig(**update), processes=1, rank=0))  # noqa: E731
    assert steps() == 112, "56 examples at 2 epochs are 28 steps: min_steps lifts them"
    assert steps(min_steps=0) == 28 and steps(epochs=10) == 140  # epochs alone, and beyond min_steps
    assert steps(max_steps=5) == 5


def test_resume_without_a_checkpoint_says_so(base_model, small_dataset, tmp_path):
    with pytest.raises(trainer.TrainingError, match="nothing to resume"):
        train(base_model, small_dataset, tmp_path / "run", FAST, resume=True)


def test_the_pipeline_continues_an_interrupted_run_of_the_same_inputs_and_starts_others_afresh(base_model, small_dataset, tmp_path, monkeypatch):
    # The training itself is replaced: what is checked is which runs are resumed (the resume itself is tested above).
    asked = []
    monkeypatch.setattr(training_run, "train", lambda base, data, run_dir, s, resume, progress: asked.append((run_dir, resume)))
    run = lambda: training_run.run_training(base_model, small_dataset, tmp_path / "models", tmp_path / "runs", FAST,  # noqa: E731
                                            continue_interrupted=True)
    run()
    [(run_dir, resume)] = asked
    assert not resume, "nothing to continue: a fresh run"
    (run_dir / trainer.CHECKPOINTS / "step-000001").mkdir(parents=True)  # what a killed run of the same inputs left
    run()
    assert asked[-1] == (run_dir, True)


# --- raft train, the registry, peft and vLLM -------------------------------------------------


@pytest.mark.slow
def test_raft_train_registers_a_version_and_raft_models_lists_it(trained, capsys):
    work, printed = trained
    assert main(["models", "--work-dir", str(work), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["aliases"] == {"production": None}, "only the evaluation gate sets production"
    [entry] = listing["versions"]
    assert entry["name"] == printed["name"] and set(entry) == {"name", "path", "created", "metrics"}
    assert entry["metrics"]["steps"] == 12

    version = get_version(work / "models", entry["name"])
    meta = version.metadata
    assert meta["dataset"]["sha256"] and meta["base_model"]["sha256"] and meta["config"]["max_steps"] == 12
    assert meta["timings"]["train_seconds"] > 0 and "git_commit" in meta
    assert version.merged_dir is not None and (version.adapter_dir / "adapter_config.json").is_file()
    assert not (work / "runs").exists() or not any((work / "runs").iterdir()), "the run folder goes once registered"


@pytest.mark.slow
def test_the_adapter_loads_in_peft_and_matches_the_merged_model(trained, base_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work, _ = trained
    [version] = list_versions(work / "models")
    config = json.loads((version.adapter_dir / "adapter_config.json").read_text())
    # What vLLM refuses: bias, DoRA, modules_to_save (SmolLM2 ties its embeddings to the head).
    assert config["bias"] == "none" and not config.get("use_dora") and not config.get("modules_to_save")
    assert not any("embed_tokens" in k or "lm_head" in k for k in load_file(version.adapter_dir / "adapter_model.safetensors"))

    ids = torch.tensor([[1, 2530, 314, 253, 1345, 28, 2]])
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model.path), version.adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(version.merged_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, merged(ids).logits, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize(("cuda", "bf16", "rows"), [(True, True, 4), (True, False, 4), (False, True, 4), (False, False, 1)])
def test_whole_batches_per_pass_except_on_a_cpu_in_fp32(cuda, bf16, rows):
    """fp32 batches on CPU churn pages (one per pass was 1.92x); in bf16 whole batches are faster (docs/benchmarks.md)."""
    assert trainer.rows_per_pass(4, cuda=cuda, bf16=bf16) == rows


def test_right_padding_without_a_mask_changes_no_loss(base_model, small_dataset, llm_tokenizer):
    """The trainer drops the attention mask (right padding is invisible under the causal mask)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model.path).eval()
    records = read_examples(small_dataset, "train")[:2]
    batch = [tokenize_example(llm_tokenizer, r, 4096) for r in records]
    assert len(batch[0].input_ids) != len(batch[1].input_ids)
    with torch.no_grad():
        together = trainer._loss_sum(model, batch, torch.device("cpu"))
        alone = sum(trainer._loss_sum(model, [ex], torch.device("cpu")) for ex in batch)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-3)
