"""The `raft` command: JSON contracts, exit codes, error messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main, prefect_defaults
from tests.conftest import REPO


@pytest.fixture
def cli(tmp_path, corpus, monkeypatch, capsys):
    """Runs `raft ARGS` in-process on the small corpus with a private work dir; returns (code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    common = ["--work-dir", str(tmp_path / "work"), "--set", f"corpus.path={corpus}", "--set", "chunking.size=64",
              "--set", "chunking.overlap=8"]

    def run(*args):
        code = main([*args, *common])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_index_json_contract_then_incremental(cli, corpus):
    code, out, _ = cli("index", "--json")
    report = json.loads(out)
    assert code == 0
    assert {"added", "updated", "deleted", "unchanged", "skipped", "chunks_written", "seconds"} <= set(report)
    assert report["added"] == 9 and report["chunks_written"] > 0
    (corpus / "guides/valve.md").write_text("# Valve V10 Guide\nThe V10 now closes in 0.9 seconds.\n")
    (corpus / "bad.md").write_bytes(b"\xff\xfe")
    code, out, _ = cli("index", "--json")
    report = json.loads(out)
    assert (report["updated"], report["unchanged"]) == (1, 8)
    assert report["skipped"] == [{"source": "bad.md", "reason": "invalid UTF-8 at byte 0 (line 1): re-save the file as UTF-8"}]


def test_search_json_and_groups(cli):
    cli("index")
    code, out, _ = cli("search", "salary band S3", "-k", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3
    assert {"doc_id", "source", "title", "score", "text"} <= set(hits[0])
    assert "salaries.md" not in [h["doc_id"] for h in hits]
    _, out, _ = cli("search", "salary band S3", "-k", "1", "--groups", "hr,ops", "--json")
    assert json.loads(out)[0]["source"] == "salaries.md"
    code, out, _ = cli("search", "How long is the pump warranty?")
    assert code == 0 and out.startswith("1. [") and "web/warranty.html" in out


def test_search_queries_file_one_line_per_query(cli, tmp_path):
    cli("index")
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "question": "reset the Control Box"}\n\n{"question": "H7 heater power"}\n')
    code, out, _ = cli("search", "--queries", str(queries), "-k", "2")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line.get("id") for line in lines] == ["a", None]
    assert lines[0]["results"][0]["doc_id"] == "kb-1" and len(lines[1]["results"]) == 2


def test_bad_queries_line_is_named(cli, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"question": "ok"}\n{"q": "typo"}\n')
    code, _, err = cli("search", "--queries", str(queries))
    assert code == 2 and "q.jsonl: 1 bad line(s): line 2: missing or empty field 'question'" in err


def test_stopped_sync_exits_3_with_report(cli, corpus):
    cli("index")
    for rel in ("guides/pump.md", "guides/valve.md", "web/warranty.html", "salaries.md"):
        (corpus / rel).unlink()
    code, out, err = cli("index", "--json")
    assert code == 3 and "the corpus shrank" in err
    body = json.loads(out)
    assert "the corpus shrank" in body["error"] and body["deleted"] == 4
    code, out, _ = cli("index", "--json", "--force")
    assert code == 0 and json.loads(out)["deleted"] == 4


def test_config_errors_exit_2_naming_the_key(cli):
    code, out, err = cli("index", "--json", "--set", "qdrant.ulr=http://x")
    assert code == 2 and "unknown config key 'qdrant.ulr'" in err and json.loads(out)["error"]
    code, _, err = cli("search")
    assert code == 2 and "give either a question or --queries" in err


def test_search_before_index_says_what_to_do(cli):
    code, _, err = cli("search", "anything")
    assert code == 2 and "run `raft index` first" in err


def test_console_script_is_installed(tmp_path):
    raft = Path(sys.executable).parent / "raft"
    assert raft.exists(), "pip install -e . creates the raft console script"
    # `raft models` loads no model: the script's entry point and the CLI are what is checked here.
    result = subprocess.run([str(raft), "models", "--json", "--work-dir", str(tmp_path / "w")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"aliases": {"production": None}, "versions": []}


def test_every_subcommand_takes_the_common_options():
    from flows.cli import _parser

    parser = _parser()
    for command in ("index", "search", "dataset", "train", "models", "gate"):
        args = parser.parse_args([command, "--config", "c.yaml", "--work-dir", "w", "--set", "a.b=1"])
        assert (args.config, args.work_dir, args.json, args.overrides) == (Path("c.yaml"), Path("w"), False, ["a.b=1"]), command
        assert parser.parse_args([command, "--json"]).json is True, command
    # raft eval: --json alone prints to stdout, --json OUT writes a file
    assert parser.parse_args(["eval", "--json"]).json == "-"
    assert parser.parse_args(["eval", "--json", "out.json"]).json == "out.json"
    assert parser.parse_args(["eval"]).json is None


def test_the_temporary_prefect_server_gets_time_to_start_unless_the_user_says_otherwise():
    environ: dict[str, str] = {}
    prefect_defaults(environ)
    assert environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"  # Prefect's 20 s were too few on a slow first start
    mine = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "5", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    prefect_defaults(mine)
    assert mine == {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "5", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    # Prefect reads its settings when imported: the CLI module must not import it before main() sets them.
    probe = "import sys, flows.cli; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO).returncode == 0


def test_the_eval_table_keeps_every_column_apart():
    from evaluation.report import COLUMNS
    from flows.cli import settings_table

    settings = {"raft_rag": {"n": 41, "em": 0.4878, "f1": 0.5358, "answer_contained": 0.5122, "wrong_idk": 0.0976, "idk_without_answer": None},
                "oracle": {"n": 41, "em": 0.4878, "f1": 0.5572, "latency_s": 140.325}}
    header, *rows = settings_table(settings, COLUMNS)
    assert [row.split()[:4] for row in rows] == [["raft_rag", "41", "0.488", "0.536"], ["oracle", "41", "0.488", "0.557"]]
    assert all(len(row.split()) == len(COLUMNS) + 1 for row in rows), "one cell per column, none run together"
    assert {len(line) for line in (header, *rows)} == {len(header)}, "the columns line up"
