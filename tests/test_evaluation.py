"""Evaluation: metrics on hand-made cases, scoring of malformed outputs, the gate both ways, the
report, and `raft eval` / `raft gate` end to end with the real small model served by vLLM on CPU."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import threading
import typing

import pytest

from contracts.answers import quote_is_verbatim
from contracts.prompt import ContextDoc
from contracts.settings import EmbeddingConfig, EvaluationConfig, GateConfig, GenerationConfig
from evaluation.gate import decide, decisions, record
from evaluation.metrics import answer_contained, exact_match, score_output, summarize, token_f1
from evaluation.plan import DISTRACTOR_DEPTH, SETTINGS, Models, plan_jobs, retrieval_depth
from evaluation.questions import EvalQuestion
from evaluation.report import write_report
from evaluation.run import retrieval_scores, summarize_rows
from flows.cli import main
from retrieval.index import Hit
from serving.adapters import served_models
from serving.grounding import version_floor
from serving.vllm_process import free_port
from tests.conftest import eval_args, fake_adapter
from training.registry import get_version, read_aliases, register

DOC = ContextDoc("The PC-220 accepts an inlet pressure of at most 16 bar.\nIts  housing is IP65.", "PC-220 manual", "pc-220.md")


# --- metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, reference, em, f1",
    [
        ("16 bar", "16 bar", 1.0, 1.0),
        ("The 16 Bar.", "16 bar", 1.0, 1.0),  # case, punctuation and articles do not count
        ("16", "16 bar", 0.0, 2 / 3),  # precision 1, recall 1/2
        ("at most 16 bar", "16 bar", 0.0, 2 * 0.5 * 1 / 1.5),  # precision 1/2, recall 1
        ("12 bar", "16 bar", 0.0, 0.5),
        ("", "16 bar", 0.0, 0.0),
        ("a the", "", 1.0, 1.0),  # both normalise to nothing
        ("//!", "//!", 1.0, 1.0),  # an answer of marks alone is compared as written...
        ("the", "//!", 0.0, 0.0),  # ...not as the empty text SQuAD's normal form makes of it
        ("///", "//!", 0.0, 0.0),
    ],
)
def test_exact_match_and_token_f1(prediction, reference, em, f1):
    assert exact_match(prediction, reference) == em
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_answer_contained_needs_whole_words():
    assert answer_contained("It is rated to at most 16 bar.", "16 bar") == 1.0
    assert answer_contained("116 bar", "16 bar") == 0.0
    assert answer_contained("anything", "") == 0.0 and answer_contained("", "") == 0.0 and answer_contained("the", "a") == 0.0
    # punctuation of any script separates words: a citation mark or curly quotes glued to a word
    assert answer_contained("took place during the Roman Empire[citation needed].", "during the Roman Empire") == 1.0
    assert answer_contained("Thoreau had advised, “Resign.”", "Resign") == 1.0
    assert answer_contained("U.S. troops", "U.S.") == 1.0 and answer_contained("USA", "U.S.") == 0.0
    assert answer_contained("Start the line with //! in lib.rs", "//!") == 1.0  # marks alone: as written
    assert answer_contained("Start the line with /// in lib.rs", "//!") == 0.0


def test_quotes_are_verbatim_up_to_whitespace_only():
    assert quote_is_verbatim("Its housing is IP65.", [DOC])  # a double space in the document
    assert quote_is_verbatim("inlet pressure of at\nmost 16 bar", [DOC])
    assert not quote_is_verbatim("The PC-220 accepts an inlet pressure of at most 18 bar.", [DOC])
    assert not quote_is_verbatim("its housing is ip65.", [DOC]), "case matters: a quote is verbatim or it is not"
    assert not quote_is_verbatim("   ", [DOC])


def test_scoring_a_well_formed_output():
    output = "The manual says ##begin_quote##accepts an inlet pressure of at most 16 bar##end_quote##.\n<ANSWER>: 16 bar"
    s = score_output(output, ["16 bar"], [DOC])
    assert (s.prediction, s.parsed, s.em, s.f1, s.contained, s.quotes, s.quotes_verbatim) == ("16 bar", True, 1.0, 1.0, 1.0, 1, 1)


@pytest.mark.parametrize(
    "output, prediction, parsed, quotes, verbatim",
    [
        ("It is 16 bar, I think.", "It is 16 bar, I think.", False, 0, 0),  # no answer line: the whole output counts
        ("<ANSWER>:", "<ANSWER>:", False, 0, 0),  # an empty answer line is no answer
        ("##begin_quote##at most 18 bar##end_quote##\n<ANSWER>: 18 bar", "18 bar", True, 1, 0),  # a made-up quote
        ("##begin_quote##at most 16 bar\n<ANSWER>: 16 bar", "16 bar", True, 0, 0),  # unclosed quote: not counted
        ("##begin_quote##16 bar##end_quote## ##begin_quote##IP67##end_quote##<ANSWER>:16 bar\nextra", "16 bar", True, 2, 1),
    ],
)
def test_scoring_malformed_outputs(output, prediction, parsed, quotes, verbatim):
    s = score_output(output, ["16 bar"], [DOC])
    assert (s.prediction, s.parsed, s.quotes, s.quotes_verbatim) == (prediction, parsed, quotes, verbatim)


def test_summary_counts_faithfulness_over_quotes_not_answers():
    scores = [
        score_output("##begin_quote##16 bar##end_quote## ##begin_quote##IP65##end_quote##\n<ANSWER>: 16 bar", ["16 bar"], [DOC]),
        score_output("##begin_quote##IP99##end_quote##\n<ANSWER>: 12 bar", ["16 bar"], [DOC]),
        score_output("no idea", ["16 bar"], [DOC]),
    ]
    m = summarize(scores)
    assert m["n"] == 3 and m["em"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["quote_faithfulness"] == pytest.approx(2 / 3, abs=1e-4)  # 2 of 3 quotes
    assert m["answer_parse_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert summarize([score_output("<ANSWER>: 16 bar", ["16 bar"], [DOC])])["quote_faithfulness"] is None


# --- planning and summaries ----------------------------------------------------------------


def hit(doc_id: str) -> Hit:
    """A retrieved chunk of document `doc_id`."""
    return Hit(f"{doc_id}-0", 1.0, doc_id, f"{doc_id}.md", doc_id, f"text of {doc_id}", [], 0, 10, ["public"])


def test_plan_covers_each_setting_and_k_and_skips_oracle_when_unknown():
    known = EvalQuestion("q1", "Q1?", "a", ("d1",), (DOC,))
    unknown = EvalQuestion("q2", "Q2?", "b", (), None)
    hits = [[hit(f"d{i}") for i in range(1, 6)]] * 2
    jobs = plan_jobs([known, unknown], hits, ["closed_book", "rag", "raft_rag", "oracle"], Models(tuned="raft-x"), [1, 3])
    by = {(j.question.id, j.setting, j.k): j for j in jobs}
    assert len(jobs) == 2 * (1 + 2 + 2) + 1
    assert by[("q1", "closed_book", None)].docs == () and by[("q1", "closed_book", None)].model == "base"
    assert [d.title for d in by[("q1", "rag", 3)].docs] == ["d1", "d2", "d3"] and by[("q1", "rag", 3)].model == "base"
    assert by[("q1", "raft_rag", 1)].model == "raft-x" and len(by[("q1", "raft_rag", 1)].docs) == 1
    assert by[("q1", "oracle", 1)].docs == (DOC,) and ("q2", "oracle", 1) not in by


def test_no_oracle_shows_the_next_chunks_of_other_documents_that_do_not_hold_the_answer():
    known = EvalQuestion("q1", "Q1?", "16 bar", ("d1",), None, ("16 bar", "sixteen bar"))
    unknown = EvalQuestion("q2", "Q2?", "16 bar", (), None)
    holds = Hit("d3-0", 1.0, "d3", "d3.md", "d3", "It takes sixteen bar.", [], 0, 10, ["public"])  # another document that answers
    found = [hit("d1"), Hit("d1-1", 1.0, "d1", "d1.md", "d1", "more of d1", [], 1, 10, ["public"]), hit("d2"), holds, hit("d4"), hit("d5")]
    jobs = plan_jobs([known, unknown], [found, found], ["no_oracle"], Models(tuned="raft-x"), [1, 3])
    assert [(j.question.id, j.k, [d.title for d in j.docs]) for j in jobs] == [("q1", 1, ["d2"]), ("q1", 3, ["d2", "d4", "d5"])]
    assert jobs[0].model == "raft-x"
    # A long source page can fill every hit: no context is left to show, so no job (not an empty one).
    only_source = [hit("d1"), Hit("d1-1", 1.0, "d1", "d1.md", "d1", "more of d1", [], 1, 10, ["public"])]
    assert plan_jobs([known], [only_source], ["no_oracle"], Models(tuned="raft-x"), [1, 3]) == []
    assert retrieval_depth(["rag", "raft_rag"], [5]) == 5 and retrieval_depth(["raft_rag", "no_oracle"], [5, 80]) == 80
    assert retrieval_depth(["no_oracle"], [5]) == DISTRACTOR_DEPTH, "deep enough that k chunks remain below the source's"


def test_retrieval_scores_recall_by_k_and_mrr():
    questions = [EvalQuestion("a", "?", "x", ("d2",), None), EvalQuestion("b", "?", "x", ("d9",), None), EvalQuestion("c", "?", "x", (), None)]
    hits = [[hit("d1"), hit("d2")], [hit("d1"), hit("d2")], [hit("d1")]]
    assert retrieval_scores(questions, hits, [1, 2]) == {"n": 2, "recall_by_k": {"1": 0.0, "2": 0.5}, "mrr": 0.25}


def row(setting, k, f1, quotes=1, verbatim=1):
    return {"setting": setting, "k": k, "prediction": "p", "parsed": True, "em": float(f1 == 1), "f1": f1, "contained": 0.0,
            "quotes": quotes, "quotes_verbatim": verbatim, "latency_s": 1.0, "completion_tokens": 10, "finish_reason": "stop",
            "answer_in_quote": False, "abstained": False, "answer_in_context": True, "reasked": False}


def test_every_setting_row_covers_all_its_questions_whatever_the_oracle_context_size():
    # An oracle row's k is its own context size: 60 questions with contexts of 2 to 5 documents are one row of n=60.
    rows = [row("oracle", 2 + n % 4, 1.0) for n in range(60)] + [row("closed_book", None, 0.0, 0, 0) for _ in range(60)]
    settings, _ = summarize_rows(rows, k=5)
    assert settings["oracle"]["n"] == 60 and settings["closed_book"]["n"] == 60


def test_scores_take_the_best_gold_answer_and_report_grounding_and_abstention():
    doc = ContextDoc("The crisis began in October 1973 when OAPEC declared an embargo.", "Oil", "oil.md")
    golds = ["October 1973", "1973", "October"]
    best = score_output("##begin_quote##The crisis began in October 1973 when OAPEC declared an embargo.##end_quote##\n<ANSWER>: 1973", golds, [doc])
    assert (best.em, best.f1, best.answer_in_quote, best.abstained, best.answer_in_context) == (1.0, 1.0, True, False, True)
    unquoted = score_output("##begin_quote##OAPEC declared an embargo.##end_quote##\n<ANSWER>: October 1973", golds, [doc])
    assert unquoted.em == 1.0 and not unquoted.answer_in_quote, "the answer is not in what the model quoted"
    wrong_idk = score_output("None of the documents says.\n<ANSWER>: I don't know", golds, [doc])
    right_idk = score_output("<ANSWER>: I don't know.", golds, [ContextDoc("Nothing relevant here.")])
    guess = score_output("<ANSWER>: 1980", golds, [ContextDoc("Nothing relevant here.")])
    m = summarize([best, unquoted, wrong_idk, right_idk, guess])
    assert m["wrong_idk"] == pytest.approx(1 / 5, abs=1e-4) and m["idk"] == pytest.approx(2 / 5, abs=1e-4)
    assert m["idk_without_answer"] == pytest.approx(1 / 2, abs=1e-4), "of the two misses without the answer in context, one abstained"
    assert m["answer_in_quote"] == pytest.approx(1 / 3, abs=1e-4), "over the three answers that are not abstentions"
    assert score_output("<ANSWER>: I don\u2019t know", golds, [doc]).abstained, "free decoding's typographic apostrophe"


def test_summaries_take_the_main_k_and_keep_the_sweep():
    rows = [row("closed_book", None, 0.0, 0, 0), row("rag", 1, 0.2), row("rag", 5, 0.4), row("raft_rag", 1, 0.6), row("raft_rag", 5, 0.8, 2, 1)]
    settings, sweep = summarize_rows(rows, k=5)
    assert list(settings) == ["closed_book", "rag", "raft_rag"]
    assert settings["rag"]["f1"] == 0.4 and settings["raft_rag"]["k"] == 5 and settings["raft_rag"]["quote_faithfulness"] == 0.5
    assert settings["closed_book"]["quote_faithfulness"] is None
    assert {s: list(by_k) for s, by_k in sweep.items()} == {"rag": ["1", "5"], "raft_rag": ["1", "5"]}


def test_report_has_the_matrix_the_charts_and_the_outputs(tmp_path):
    rows = [row("closed_book", None, 0.1, 0, 0), row("rag", 1, 0.2), row("rag", 3, 0.3), row("raft_rag", 1, 0.6), row("raft_rag", 3, 0.7)]
    settings, sweep = summarize_rows(rows, k=3)
    results = {"settings": settings, "k_sweep": sweep, "retrieval": {"n": 1, "recall_by_k": {"1": 1.0, "3": 1.0}, "mrr": 1.0, "k": 3},
               "model": {"tuned": "raft-x", "base": "base"}, "dataset": {"n": 1, "path": "d", "kind": "qa"}, "sampling": {}, "seconds": 1}
    report = write_report(tmp_path / "r", results, rows)
    text = report.read_text()
    assert "| raft_rag | 1 |" in text and "![settings.png](settings.png)" in text and "| rag | 0.200 | 0.300 |" in text
    for name in ("settings.png", "k_sweep.png"):
        assert (tmp_path / "r" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "r" / "outputs.jsonl").read_text().splitlines()) == len(rows)


# --- the gate ------------------------------------------------------------------------------

RULES = GateConfig(min_f1_gain=0.05, faithfulness_tolerance=0.02, min_faithfulness=0.9)


def test_gate_promotes_a_better_candidate_and_records_why(tmp_path):
    models = tmp_path / "models"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    v = register(models, adapter, {})
    d = decide(v.name, {"f1": 0.62, "quote_faithfulness": 0.97}, "base:rag", {"f1": 0.21, "quote_faithfulness": None}, RULES)
    assert d.promoted, d.reasons
    record(models, d)
    assert read_aliases(models)["production"] == v.name
    (models / "decisions" / ".20261206T000000Z-v.json.x1y2.tmp.json").write_text('{"candi')  # a write killed half-way
    [kept] = decisions(models)
    assert kept["promoted"] and kept["candidate_scores"]["f1"] == 0.62 and kept["baseline"] == "base:rag"


@pytest.mark.parametrize(
    "candidate, why",
    [
        ({"f1": 0.52, "quote_faithfulness": 0.97}, "F1 0.5200 < baseline 0.5000 + 0.05"),  # not enough better
        ({"f1": 0.70, "quote_faithfulness": 0.93}, "dropped below baseline 0.9600"),  # better answers, more made-up quotes
        ({"f1": 0.70, "quote_faithfulness": 0.85}, "< floor 0.9"),
        ({"f1": 0.70, "quote_faithfulness": None}, "quoted nothing"),
    ],
)
def test_gate_refuses_and_leaves_production_alone(tmp_path, candidate, why):
    models = tmp_path / "models"
    old, new = (register(models, fake_adapter(tmp_path / n), {}) for n in ("a", "b"))
    record(models, decide(old.name, {"f1": 0.5, "quote_faithfulness": 0.96}, "base:rag", {"f1": 0.1}, RULES))
    d = decide(new.name, candidate, f"production:{old.name}", {"f1": 0.5, "quote_faithfulness": 0.96}, RULES)
    assert not d.promoted and any(why in r for r in d.reasons), d.reasons
    record(models, d)
    assert read_aliases(models)["production"] == old.name
    assert [x["promoted"] for x in decisions(models)] == [True, False]


def test_gate_without_a_faithfulness_floor_judges_answers_without_quotes():
    rules = GateConfig(min_f1_gain=0.0, faithfulness_tolerance=0.02, min_faithfulness=0.0)  # e.g. dataset.style direct
    d = decide("raft-x", {"f1": 0.6, "quote_faithfulness": None}, "base:rag", {"f1": 0.2}, rules)
    assert d.promoted and any("not judged" in r for r in d.reasons)


# --- end to end: raft eval and raft gate with vLLM on CPU ------------------------------------


@pytest.mark.slow
def test_raft_eval_runs_the_matrix_and_writes_the_report(trained, session_vllm, sample_work, base_model, small_dataset, tmp_path, capsys):
    work, printed = trained
    before = served_models(session_vllm.url)
    out = tmp_path / "results.json"
    argv = ["eval", *eval_args(work, sample_work, base_model, session_vllm.url), "--dataset", str(small_dataset), "--limit", "3",
            "--k", "2", "--k-sweep", "1,2", "--json", str(out), "--report", str(tmp_path / "report")]
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads(out.read_text())
    assert list(results["settings"]) == ["closed_book", "rag", "raft_rag", "oracle"]
    for m in results["settings"].values():
        assert m["n"] == 3 and 0 <= m["f1"] <= 1 and m["output_tokens"] > 0
    assert results["settings"]["rag"]["k"] == 2 and list(results["k_sweep"]["raft_rag"]) == ["1", "2"]
    assert results["model"]["tuned"] == printed["name"] and results["retrieval"]["n"] == 3
    assert 0 <= results["retrieval"]["recall_at_k"] <= 1
    rows = [json.loads(line) for line in (tmp_path / "report" / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * (1 + 2 + 2 + 1)
    assert {r["model"] for r in rows if r["setting"] in ("raft_rag", "oracle")} == {printed["name"]}
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "k_sweep.png").is_file()
    # The tuned version answers with the evidence floor of its training contexts; the base model has none.
    current = lambda texts: pytest.fail("the version was trained with the current measure: nothing to measure again")  # noqa: E731
    floor = version_floor(get_version(work / "models", printed["name"]), GenerationConfig(), current, EmbeddingConfig().model)
    assert floor is not None and results["evidence_floor"] == {"quantile": GenerationConfig().evidence_quantile, "floors": {printed["name"]: floor}}
    assert all(r["output"] == "<ANSWER>: I don't know" for r in rows if r["below_floor"])
    assert not any(r["below_floor"] for r in rows if r["model"] == "base")
    assert sum(m["below_evidence_floor"] for m in results["settings"].values()) == sum(r["below_floor"] for r in rows)
    assert served_models(session_vllm.url) == before, "the adapters the run loaded into vllm.url are unloaded after it"
    assert not (work / "logs").exists() or not list((work / "logs").glob("vllm-eval-*")), "no private vLLM with vllm.url"


@pytest.mark.slow
def test_raft_gate_decides_records_and_moves_production_only_on_a_pass(trained, session_vllm, sample_work, base_model, small_dataset, tmp_path, capsys):
    trained_work, printed = trained
    work = tmp_path / "work"  # a copy: other tests expect the trained registry without production
    shutil.copytree(trained_work / "models", work / "models", ignore=shutil.ignore_patterns("merged"))
    argv = ["gate", *eval_args(work, sample_work, base_model, session_vllm.url), "--dataset", str(small_dataset), "--limit", "2", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    decision = json.loads(capsys.readouterr().out)
    assert decision["candidate"] == printed["name"] and decision["baseline"] == "base:rag"
    assert decision["evaluation"]["n"] == 2 and decision["candidate_scores"]["n"] == 2
    production = read_aliases(work / "models")["production"]
    assert production == (printed["name"] if decision["promoted"] else None)
    assert decisions(work / "models")[-1]["decided"] == decision["decided"]


@pytest.mark.parametrize("serves", [None, ["other-model"]])
def test_raft_eval_through_vllm_url_names_what_is_missing(serves, sample_work, base_model, small_dataset, tmp_path, capsys):
    """vllm.url with nothing listening, or with a server that serves no model named `base` (a stand-in
    that answers /v1/models only: what is tested is the check before any question is asked)."""
    with _models_server(serves) as url:
        argv = ["eval", *eval_args(tmp_path, sample_work, base_model, url), "--dataset", str(small_dataset), "--model", "base",
                "--settings", "rag", "--limit", "1"]
        assert main(argv) == 2
    err = capsys.readouterr().err
    if serves is None:
        assert "did not answer" in err and "unset vllm.url" in err
    else:
        assert "no base model named 'base'" in err and "--served-model-name base" in err


@contextlib.contextmanager
def _models_server(served):
    """An HTTP server on loopback whose /v1/models lists `served`; None: a URL where nothing listens."""
    if served is None:
        yield f"http://127.0.0.1:{free_port()}/v1"
        return
    body = json.dumps({"object": "list", "data": [{"id": name, "object": "model"} for name in served]}).encode()

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()


def test_the_config_accepts_exactly_the_registered_settings():
    accepted = typing.get_args(typing.get_args(EvaluationConfig.model_fields["settings"].annotation)[0])
    assert set(accepted) == set(SETTINGS), (
        "a new evaluation setting is an entry of evaluation/plan.py SETTINGS and a name in EvaluationConfig.settings"
    )
