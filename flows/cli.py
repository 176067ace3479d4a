"""The `raft` command: one CLI for the whole product.

Every subcommand takes --config FILE, --work-dir DIR, --json and --set KEY=VALUE (any config
field, e.g. --set qdrant.url=http://localhost:6333). Progress goes to stderr, results to
stdout; with --json stdout holds JSON only. Exit codes: 0 done, 2 bad input or config,
3 a data check stopped the work (nothing written), 4 an outside service (the teacher, vLLM) failed
(finished work is kept; rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from contracts.generation import GenerationError
from contracts.settings import RaftConfig
from evaluation.questions import EvaluationError
from flows.changes import LedgerError
from flows.config import DEFAULT_FILE, ConfigError, load_config
from flows.steps import NoQuestionSource
from flows.wiring import make_embedder, open_index
from retrieval.corpus import CorpusError
from retrieval.embedding import EmbeddingError
from retrieval.index import Hit, StoreError
from retrieval.qa import QAFileError, read_jsonl
from serving.vllm_process import VLLMError
from training.base_model import BaseModelError
from training.dataset import DatasetError
from training.dataset_folder import DatasetFolderError
from training.registry import RegistryError
from training.teacher import TeacherError
from training.trainer import TrainingError

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_FAILED = 4  # an outside service failed (e.g. the teacher); finished work is kept, rerun resumes


class UsageError(ValueError):
    """Bad command-line input; the message says what to change."""


def prefect_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Prefect settings for the temporary server, unless the user set them (before Prefect reads them).

    The temporary server would try to send usage data (an error line offline). It gets 120 s
    to come up instead of Prefect's 20: on a slow 2-core machine, its first start after a
    fresh install (compiling bytecode, creating its database) took longer, and the flow died.
    """
    environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `raft` console script."""
    prefect_defaults()
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        cfg = _config(args)
        return args.run(cfg, args)
    except (
        BaseModelError, ConfigError, CorpusError, DatasetError, DatasetFolderError, EmbeddingError, EvaluationError, LedgerError,
        NoQuestionSource, QAFileError, RegistryError, StoreError, TrainingError, UsageError,
    ) as e:
        _fail(args, str(e))
        return EXIT_BAD_INPUT
    except (GenerationError, VLLMError) as e:
        _fail(args, str(e))
        return EXIT_FAILED
    except TeacherError as e:
        _fail(args, str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("raft: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="raft", description="Retrieval-augmented fine-tuning: index, train, evaluate, serve.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    index = sub.add_parser("index", parents=[common], help="sync the corpus into the index (only changed documents are embedded)")
    index.add_argument("--corpus", type=Path, help="corpus folder (config: corpus.path)")
    index.add_argument("--rebuild", action="store_true", help="build a fresh collection and switch the alias to it when complete")
    index.add_argument("--force", action="store_true", help="sync even when the data checks would stop it")
    index.set_defaults(run=_index)

    search = sub.add_parser("search", parents=[common], help="top chunks for a question")
    search.add_argument("question", nargs="?", help="the question")
    search.add_argument("-k", type=int, help="how many chunks (config: search.k)")
    search.add_argument("--groups", default="", help="caller's access groups, comma-separated (public is always allowed)")
    search.add_argument("--queries", type=Path, help="JSONL file of questions (field 'question'); one JSON line out per query")
    search.set_defaults(run=_search)

    dataset = sub.add_parser("dataset", parents=[common], help="build a RAFT training set: questions, retrieved distractors, quoted answers")
    dataset.add_argument("--qa", type=Path, help="QA file (JSONL: question, answer, optional id, source; config: dataset.qa_file)")
    dataset.add_argument("--no-qa", action="store_true", help="take questions from the teacher only")
    dataset.add_argument("--teacher-url", help="OpenAI-compatible endpoint of a teacher LLM (config: teacher.url)")
    dataset.add_argument("--teacher-model", help="the teacher's model name (config: teacher.model)")
    dataset.add_argument("--p", type=float, help="probability that the oracle is in the context (config: dataset.p)")
    dataset.add_argument("--k", type=int, help="distractors per example (config: dataset.k)")
    dataset.add_argument("--seed", type=int, help="random seed (config: dataset.seed)")
    dataset.add_argument("--style", choices=["cot", "direct"], help="answer style (config: dataset.style)")
    dataset.add_argument("--out", type=Path, help="dataset folder (default: <work dir>/datasets/<content hash>)")
    dataset.set_defaults(run=_dataset)

    train = sub.add_parser("train", parents=[common], help="fine-tune the base model with LoRA on a RAFT dataset; register a version")
    train.add_argument("--dataset", type=Path, help="dataset folder (default: the latest `raft dataset` in the work dir)")
    train.add_argument("--base", help="base model: smollm2-135m-instruct (embedded), a folder or a Hugging Face id (config: training.base_model)")
    train.add_argument("--max-steps", type=int, help="optimizer steps, instead of training.epochs and min_steps (config: training.max_steps)")
    train.add_argument("--merge", action="store_true", default=None, help="also save the adapter merged into the base model (config: training.merge)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run with the same inputs from its last checkpoint")
    train.set_defaults(run=_train)

    models = sub.add_parser("models", parents=[common], help="list the registered model versions and aliases")
    models.set_defaults(run=_models)

    evaluate = sub.add_parser(
        "eval", parents=[_common(json_file=True)], help="closed-book vs RAG vs RAFT on held-out questions, through vLLM; writes a report",
    )
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--qa", type=Path, help="QA file of held-out questions (JSONL: question, answer, optional source)")
    source.add_argument("--dataset", type=Path, help="dataset folder whose eval split to use (default: the latest)")
    evaluate.add_argument("--model", help="a version name, production, or base (default: production, else the newest version)")
    evaluate.add_argument("--k", type=int, help="retrieved documents per question (config: evaluation.k)")
    evaluate.add_argument("--k-sweep", help="also run rag, raft_rag and no_oracle at each of these k, e.g. 1,3,5,10 (config: evaluation.k_sweep)")
    evaluate.add_argument("--settings", help="comma-separated subset of closed_book,rag,raft_rag,oracle,no_oracle,dsf (config: evaluation.settings)")
    evaluate.add_argument("--dsf", metavar="VERSION", help="a version tuned without documents: adds the dsf setting")
    evaluate.add_argument("--limit", type=int, help="the first N questions only (config: evaluation.limit)")
    evaluate.add_argument("--report", type=Path, help="report folder (default: <work dir>/reports/eval-<time>)")
    evaluate.set_defaults(run=_eval)

    gate = sub.add_parser("gate", parents=[common], help="evaluate a new version against production; promote it only if it is better")
    gate.add_argument("--model", help="the candidate version (default: the newest)")
    gate.add_argument("--dataset", type=Path, help="dataset folder whose eval split to use (default: the latest)")
    gate.add_argument("--limit", type=int, help="the first N questions only (config: evaluation.limit)")
    gate.set_defaults(run=_gate)

    serve = sub.add_parser("serve", parents=[common], help="start vLLM and the OpenAI-compatible RAG gateway; Ctrl-C stops both")
    serve.add_argument("--port", type=int, help="the gateway's port (config: serving.port)")
    serve.add_argument("--host", help="the gateway's address (config: serving.host)")
    serve.add_argument("--model", help="production (default; follows promotions), a version name, or base (config: serving.model)")
    serve.add_argument("--no-watch", action="store_true", help="do not re-index when corpus files change (config: flows.watch)")
    serve.set_defaults(run=_serve)

    run = sub.add_parser("run", parents=[common], help="the whole pipeline as a Prefect flow (index, dataset, train, gate, deploy), then serve")
    run.add_argument("--no-serve", action="store_true", help="end by printing the gate's table and an example answer with its sources")
    run.add_argument("--question", help="the example question for --no-serve (default: the first eval question of the dataset)")
    run.add_argument("--port", type=int, help="the gateway's port (config: serving.port)")
    run.add_argument("--no-watch", action="store_true", help="while serving, do not re-index when corpus files change (config: flows.watch)")
    run.set_defaults(run=_run)

    watch = sub.add_parser("watch", parents=[common], help="re-index when the corpus changes; retrain when enough has changed (no serving)")
    watch.set_defaults(run=_watch)

    deploy_flows = sub.add_parser("deploy-flows", parents=[common], help="serve the flows as Prefect deployments with cron schedules (needs a Prefect server)")
    deploy_flows.set_defaults(run=_deploy_flows)

    status = sub.add_parser("status", parents=[common], help="served version, last index sync, change since the last training, next scheduled runs")
    status.set_defaults(run=_status)
    return parser


def _common(json_file: bool = False) -> argparse.ArgumentParser:
    """The options every subcommand takes (a contract for outside scripts)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="config file (default: $RAFT_CONFIG, else ./raft.yaml if present)")
    common.add_argument("--work-dir", type=Path, help="where index, datasets, models and state live (config: work_dir)")
    if json_file:  # raft eval: --json prints the results, --json OUT writes them to a file
        common.add_argument("--json", nargs="?", const="-", metavar="OUT", help="the results as JSON: on stdout, or into the file OUT")
    else:
        common.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set chunking.size=256 (repeatable)")
    return common


def _config(args: argparse.Namespace) -> RaftConfig:
    """The config, and (on `args.flow_inputs`) the file and overrides the flows load it from."""
    file, overrides = _config_inputs(args)
    cfg = load_config(file, overrides)
    file = file or os.environ.get("RAFT_CONFIG") or (DEFAULT_FILE if Path(DEFAULT_FILE).is_file() else None)
    # Flows may run in other processes (deployments): paths must not depend on their directory.
    absolute = {"work_dir": str(cfg.work_dir.resolve())}
    if "corpus.path" in overrides:
        absolute["corpus.path"] = str(cfg.corpus.path.resolve())
    args.flow_inputs = (str(Path(file).resolve()) if file else None, {**overrides, **absolute})
    return cfg


def _config_inputs(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    overrides: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    if args.work_dir:
        overrides["work_dir"] = str(args.work_dir)
    if getattr(args, "corpus", None):
        overrides["corpus.path"] = str(args.corpus)
    flags = {"search": {"k": "search.k"}, "dataset": {
        "qa": "dataset.qa_file", "teacher_url": "teacher.url", "teacher_model": "teacher.model",
        "p": "dataset.p", "k": "dataset.k", "seed": "dataset.seed", "style": "dataset.style"},
        "train": {"base": "training.base_model", "max_steps": "training.max_steps", "merge": "training.merge"},
        "eval": {"k": "evaluation.k", "k_sweep": "evaluation.k_sweep", "settings": "evaluation.settings", "limit": "evaluation.limit"},
        "gate": {"limit": "evaluation.limit"},
        "serve": {"port": "serving.port", "host": "serving.host", "model": "serving.model"},
        "run": {"port": "serving.port"}}
    for flag, key in flags.get(args.command, {}).items():
        if getattr(args, flag, None) is not None:
            overrides[key] = str(getattr(args, flag))
    if getattr(args, "no_qa", False):
        overrides["dataset.qa_file"] = None
    if getattr(args, "no_watch", False):
        overrides["flows.watch"] = False
    return args.config, overrides


def _progress() -> bool:
    return sys.stderr.isatty()


def _fail(args: argparse.Namespace, message: str, extra: dict[str, Any] | None = None) -> None:
    print(f"raft: error: {message}", file=sys.stderr)
    if getattr(args, "json", None) in (True, "-"):
        print(json.dumps({"error": message, **(extra or {})}))


# --- raft index ----------------------------------------------------------------------------


def _index(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.steps import sync_index
    from retrieval.sync import SyncStopped

    try:
        report = sync_index(cfg, force=args.force, rebuild=args.rebuild, progress=_progress())
    except SyncStopped as e:
        _fail(args, str(e), e.report.to_dict())
        for item in e.report.skipped:
            print(f"  skipped {item.source}: {item.reason}", file=sys.stderr)
        for warning in e.report.warnings:
            print(f"  warning {warning.source}: {warning.message}", file=sys.stderr)
        return EXIT_STOPPED
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    print(
        f"indexed {cfg.corpus.path} into {cfg.qdrant.collection} ({report.collection}): "
        f"{report.added} added, {report.updated} updated, {report.deleted} deleted, {report.unchanged} unchanged; "
        f"{report.chunks_written} chunks written, {report.chunks_deleted} removed in {report.seconds:.1f} s"
    )
    for item in report.skipped:
        print(f"  skipped {item.source}: {item.reason}")
    for warning in report.warnings:
        print(f"  warning {warning.source}: {warning.message}")
    return 0


# --- raft search ---------------------------------------------------------------------------


def _search(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from retrieval.search import search_many

    if bool(args.question) == bool(args.queries):
        raise UsageError("give either a question or --queries FILE.jsonl")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    queries = [record for _, record in read_jsonl(args.queries, required=("question",))] if args.queries else [{"question": args.question}]
    store = open_index(cfg)
    try:
        results = search_many(store, make_embedder(cfg), [q["question"] for q in queries], cfg.search.k, groups, progress=_progress())
    finally:
        store.close()
    if args.queries:
        for query, hits in zip(queries, results):
            print(json.dumps({**query, "results": [h.to_dict() for h in hits]}))
    elif args.json:
        print(json.dumps([h.to_dict() for h in results[0]]))
    else:
        _print_hits(results[0])
    return 0


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        print("no results (is the index empty, or are the documents restricted to other groups?)")
    for rank, hit in enumerate(hits, start=1):
        where = " > ".join([hit.title] + [h for h in hit.headings if h != hit.title])
        print(f"{rank}. [{hit.score:.3f}] {hit.source}: {where}")
        snippet = " ".join(hit.text.split())
        print(textwrap.indent(textwrap.fill(snippet[:400] + ("…" if len(snippet) > 400 else ""), width=96), "   "))


# --- raft dataset --------------------------------------------------------------------------


def _dataset(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.steps import make_dataset

    built = make_dataset(cfg, args.out, progress=_progress())
    path, digest, dataset, teacher = built.path, built.digest, built.dataset, built.teacher
    card = dataset.card
    summary = {
        "path": str(path), "hash": digest, "train": len(dataset.train), "eval": len(dataset.eval),
        "dropped": card["dropped"], "repaired": card["quotes"]["repaired"],
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    c = card["counts"]
    print(
        f"dataset {path}: {c['train']} train / {c['eval']} eval examples from {c['questions']} questions "
        f"({c['train_documents']} / {c['eval_documents']} documents); oracle present in "
        f"{c['oracle_present_share']['train']} of train; quotes {card['quotes']['verbatim']} verbatim, "
        f"{card['quotes']['repaired']} repaired"
    )
    for why, n in card["dropped"].items():
        print(f"  dropped {n}: {why}")
    if teacher is not None:
        st = teacher.stats
        print(f"  teacher: {st.calls} calls, {st.cached} answers from cache, {st.retries} retries")
    return 0


# --- raft train / raft models --------------------------------------------------------------


def _train(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.steps import train_version
    from serving.grounding import version_floor
    from training.dataset_folder import check_dataset, latest_dataset

    dataset = check_dataset(args.dataset) if args.dataset else latest_dataset(cfg.datasets_dir)
    version = train_version(cfg, dataset, resume=args.resume, progress=_progress())
    if version is None:  # not the main process of a multi-process launch
        return 0
    m = version.metadata["metrics"]
    if args.json:
        print(json.dumps({**version.summary(), "merged": version.merged_dir is not None, "timings": version.metadata["timings"]}))
        return 0
    print(
        f"trained {version.name} on {dataset} ({m['train_examples']} examples, {m['steps']} steps, "
        f"{m['truncated']} truncated, {m['too_long']} too long): train loss {m['train_loss_first']} -> {m['train_loss_last']}, "
        f"eval loss {m['eval_loss']}; {m['tokens_per_s']} tokens/s on {m['device']}, {version.metadata['timings']['total_seconds']:.0f} s"
    )
    print(f"  adapter: {version.adapter_dir}" + (f"\n  merged:  {version.merged_dir}" if version.merged_dir else ""))
    embedder = make_embedder(cfg)
    if (floor := version_floor(version, cfg.generation, embedder.encode, embedder.name)) is not None:  # none: version_floor says why
        print(f"  evidence floor: {floor:.3f} (it answers \"I don't know\" when the context's best sentence matches the question less well)")
    return 0


def _models(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from evaluation.gate import decisions
    from training.registry import list_versions, read_aliases

    folder = cfg.models_dir
    versions, aliases = list_versions(folder), read_aliases(folder)
    if args.json:
        print(json.dumps({"versions": [v.summary() for v in versions], "aliases": aliases}))
        return 0
    if not versions:
        print(f"no model versions in {folder}: run `raft train`")
    by_version = {name: alias for alias, name in aliases.items() if name}
    gated = {d["candidate"]: d for d in decisions(folder)}  # the last decision per version
    for v in versions:
        m = v.metadata.get("metrics", {})
        tag = f"  [{by_version[v.name]}]" if v.name in by_version else ""
        gate = gated.get(v.name)
        verdict = "" if gate is None else f"  gate: {'promoted' if gate['promoted'] else 'refused'} (F1 {gate['candidate_scores'].get('f1')})"
        print(f"{v.name}{tag}  created {v.metadata.get('created')}  eval loss {m.get('eval_loss')}{verdict}  {v.path}")
    for alias, name in aliases.items():
        print(f"alias {alias} -> {name or '(unset)'}")
    return 0


# --- raft eval / raft gate -----------------------------------------------------------------


def _eval(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from evaluation.report import COLUMNS, write_report
    from flows.evaluate import evaluate

    results, rows = evaluate(cfg, args.model, args.qa, args.dataset, dsf=args.dsf, progress=_progress())
    report = args.report or cfg.work_dir / "reports" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    results["report"] = str(write_report(report, results, rows))
    if args.json == "-":
        print(json.dumps(results))
        return 0
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(settings_table(results["settings"], COLUMNS)))
    for name, by_k in results["k_sweep"].items():
        print(f"{name} F1 by k: " + ", ".join(f"k={k} {m['f1']:.3f}" for k, m in by_k.items()))
    r = results["retrieval"]
    if r.get("n"):
        print(f"retrieval: recall@{r['k']} {r['recall_at_k']}, MRR {r['mrr']} ({r['n']} questions)")
    print(f"report: {results['report']}")
    return 0


def _gate(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.evaluate import gate

    decision = gate(cfg, args.model, args.dataset, progress=_progress())
    if args.json:
        print(json.dumps(decision.to_dict()))
        return 0
    verdict = "promoted to production" if decision.promoted else "not promoted"
    print(f"{decision.candidate}: {verdict} (baseline {decision.baseline})")
    for reason in decision.reasons:
        print(f"  {reason}")
    return 0


def _serve(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.serve import ServeError, serve

    _log_to_stderr()
    try:
        serve(cfg, args.flow_inputs)
    except ServeError as e:
        _fail(args, str(e))
        return EXIT_BAD_INPUT
    return 0


# --- raft run / watch / deploy-flows / status (Prefect) ------------------------------------


def _run(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.pipeline import DeployError, PipelineBusy, gate_table, raft_pipeline
    from flows.serve import ServeError, example_answer
    from retrieval.sync import SyncStopped

    began = time.perf_counter()
    try:
        result = raft_pipeline(*args.flow_inputs)
    except (SyncStopped, PipelineBusy) as e:  # a data check, or another run: nothing was changed
        _fail(args, str(e))
        return EXIT_STOPPED
    except DeployError as e:
        _fail(args, str(e))
        return EXIT_FAILED
    summary = _pipeline_summary(result)
    summary["seconds"] = round(time.perf_counter() - began, 1)
    gate = result["gate"]
    if args.no_serve:
        question = args.question or _example_question(result["dataset"]["path"])
        try:
            summary["example"] = _example(example_answer(cfg, question), question)
        except ServeError as e:
            _fail(args, str(e))
            return EXIT_FAILED
    if args.json:
        print(json.dumps(summary))
    else:
        _print_pipeline(summary, gate_table(gate) if "candidate_scores" in gate else [])
    return 0 if args.no_serve else _serve(cfg, args)


def _pipeline_summary(result: dict[str, Any]) -> dict[str, Any]:
    sync = result["index"]["sync"]
    training, gate = result["training"], result["gate"]
    return {
        "index": {k: sync[k] for k in ("added", "updated", "deleted", "unchanged", "chunks_written", "chunks_deleted")},
        "dataset": result["dataset"],
        "version": training["version"], "trained": training["trained"],
        "promoted": gate["promoted"], "gate_reasons": gate["reasons"], "baseline": gate.get("baseline"), "gate_fresh": gate["fresh"],
        "deploy": result["deploy"],
    }


def _example_question(dataset: str) -> str:
    first = next(iter(read_jsonl(Path(dataset) / "eval.jsonl", required=("question",))), None)
    if first is None:
        raise UsageError(f"{dataset}/eval.jsonl has no questions: pass --question")
    return first[1]["question"]


def _example(body: dict[str, Any], question: str) -> dict[str, Any]:
    return {
        "question": question, "answer": body["raft"]["answer"] or body["choices"][0]["message"]["content"],
        "model": body["raft"]["served_model"], "citations": body["citations"],
        "sources": [c["source"] for c in body["raft"]["context"]],
    }


def _print_pipeline(summary: dict[str, Any], table: list[dict[str, Any]]) -> None:
    i = summary["index"]
    print(f"index: {i['added']} added, {i['updated']} updated, {i['deleted']} deleted, {i['unchanged']} unchanged")
    d = summary["dataset"]
    print(f"dataset: {d['path']}" + (" (unchanged: reused)" if d["cached"] else ""))
    print(f"model: {summary['version']}" + (" (trained)" if summary["trained"] else " (dataset and settings unchanged: training skipped)"))
    verdict = "promoted to production" if summary["promoted"] else "not promoted"
    print(f"gate: {verdict}" + (f" (baseline {summary['baseline']})" if summary["baseline"] else "")
          + ("" if summary["gate_fresh"] else ": decided earlier, not evaluated again"))
    if table:
        cols = [c for c in table[0] if c not in ("role", "model")]
        print(f"  {'':<10}{'model':<34}" + "".join(f"{c:>20}" for c in cols))
        for row in table:
            print(f"  {row['role']:<10}{row['model']:<34}" + "".join(f"{_fmt(row[c]):>20}" for c in cols))
    for reason in summary["gate_reasons"]:
        print(f"  {reason}")
    if summary["deploy"]:
        dep = summary["deploy"]
        print(f"deploy: {'serving ' + dep['version'] if dep['deployed'] else dep['why']}")
    example = summary.get("example")
    if example:
        print(f"\nQ: {example['question']}\nA: {example['answer']}   [{example['model']}]")
        for c in example["citations"]:
            mark = "verbatim" if c["verbatim"] else "NOT found in the context"
            print(f"  cited ({mark}): {c['source'] or '-'}: \"{c['quote'][:160]}\"")
        print("  retrieved: " + ", ".join(example["sources"]))
    print(f"pipeline: {summary['seconds']:.0f} s")


def _watch(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.watch import CorpusWatcher

    _log_to_stderr()
    CorpusWatcher(cfg, *args.flow_inputs).run()  # until Ctrl-C
    return 0


def _deploy_flows(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.deployments import NoPrefectServer, serve_deployments

    try:
        serve_deployments(cfg, *args.flow_inputs)
    except NoPrefectServer as e:
        _fail(args, str(e))
        return EXIT_BAD_INPUT
    return 0


def _status(cfg: RaftConfig, args: argparse.Namespace) -> int:
    from flows.status import pipeline_status

    st = pipeline_status(cfg)
    if args.json:
        print(json.dumps(st))
        return 0
    sv = st["serving"]
    served = f"gateway {sv['url']} serves {sv['served'] or 'the base model'} ({sv['gateway']})" if sv["gateway"] else f"no gateway at {sv['url']}"
    print(f"serving:    {served}; production alias: {sv['production'] or '(unset)'}")
    last = st["last_sync"]
    if last:
        print(f"last sync:  {last['at']}: {last['documents']} documents, {last['chunks']} chunks "
              f"({last['added']} added, {last['updated']} updated, {last['deleted']} deleted)")
    else:
        print("last sync:  never (run `raft index` or `raft run`)")
    trained, pending = st["trained_on"], st["since_training"]
    if pending:
        since = f"since {trained['version']} (trained {trained['at']})" if trained else "with no training yet"
        print(f"change {since}: {pending['documents']} documents ({pending['added']} added, {pending['changed']} changed, "
              f"{pending['deleted']} deleted), {pending['share']:.1%} of chunks")
    print(f"retrain:    {'due' if st['retrain']['due'] else 'not due'}: {st['retrain']['why']}")
    for run in st["next_runs"]:
        print(f"next run:   {run['deployment']} at {run['next']} ({run['cron']}; {run['source']})")
    return 0


def _log_to_stderr() -> None:
    """Long-running commands (serve, watch) log what they do, with times, to stderr."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


def settings_table(settings: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]]) -> list[str]:
    """The lines of a plain-text table: a row per setting, a column per (key, title) of `columns`,
    each as wide as its widest cell and two spaces apart."""
    names = max(len("setting"), *(len(n) for n in settings))
    widths = [max(len(title), *(len(_fmt(m.get(key))) for m in settings.values())) for key, title in columns]
    lines = ["setting".ljust(names) + "".join(f"  {title:>{w}}" for (_, title), w in zip(columns, widths))]
    for name, m in settings.items():
        lines.append(name.ljust(names) + "".join(f"  {_fmt(m.get(key)):>{w}}" for (key, _), w in zip(columns, widths)))
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
