"""RAFT benchmarks on real technical documentation in HTML, for the recipe's hidden-corpus goals:

    rustdocs   82 pages of the Cargo, rustc and rustdoc books (mdBook HTML, Rust 1.95.0, as rustup
               installs them): 70 training and 41 test questions
    nodedocs   43 pages of the Node.js v20.20.2 API reference (Node's own doc generator, as the
               Debian/Ubuntu nodejs package installs it): 61 training and 66 test questions
    pydocs     80 pages of Python 3.11's library reference, HOWTOs and tutorial (Sphinx HTML, as the
               Debian/Ubuntu python3.11-doc package installs it): 72 training and 52 test questions

The pages are not stored here; this script copies the ones listed in `benchmarks/<set>/pages.txt`
from the documentation folder and checks that every gold answer of the set's QA files occurs
word for word in the text the pipeline extracts from its page (another version's pages may have
moved on: the check says which answers are gone).

    .venv/bin/python benchmarks/docs_corpus.py rustdocs --out .raft-rustdocs/corpus [--from DOCS_HTML_FOLDER]
    .venv/bin/python benchmarks/squad_bench.py --corpus .raft-rustdocs/corpus --train benchmarks/rustdocs/train.jsonl \\
        --test benchmarks/rustdocs/test.jsonl --work-dir .raft-rustdocs
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.documents import parse_file  # noqa: E402


def rust_docs() -> Path:
    """The HTML documentation of the Rust toolchain on PATH."""
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sys.exit("rustc not found: pass --from the html folder of Rust's documentation (rustup component add rust-docs)")
    return Path(sysroot) / "share" / "doc" / "rust" / "html"


def node_docs() -> Path:
    """Node.js's API reference where the Debian/Ubuntu nodejs package installs it."""
    return Path("/usr/share/doc/nodejs/api")


def python_docs() -> Path:
    """Python 3.11's documentation where the Debian/Ubuntu python3.11-doc package installs it."""
    return Path("/usr/share/doc/python3.11-doc/html")


SETS = {"rustdocs": rust_docs, "nodedocs": node_docs, "pydocs": python_docs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=sorted(SETS), help="which benchmark (a folder of benchmarks/)")
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    parser.add_argument("--from", dest="source", type=Path, help="the documentation's HTML folder (default: where it is installed)")
    args = parser.parse_args()
    here = REPO / "benchmarks" / args.set
    source = args.source or SETS[args.set]()

    pages = [line.strip() for line in (here / "pages.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [p for p in pages if not (source / p).is_file()]
    if missing:
        sys.exit(f"{len(missing)} of {len(pages)} pages are not in {source} (first: {missing[0]}): pass --from the documentation's html folder")
    for page in pages:
        (args.out / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / page, args.out / page)

    texts = {page: parse_file((args.out / page).read_bytes(), page, {}, ("public",))[0].text for page in pages}
    gone = []
    for split in ("train", "test"):
        for line in (here / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            qa = json.loads(line)
            gone += [f"{split} {qa['id']}: {a!r} not in {qa['source']}" for a in qa["answers"] if a not in texts.get(qa["source"], "")]
    print(f"{len(pages)} pages copied to {args.out}")
    if gone:
        sys.exit(f"{len(gone)} gold answers are not in their pages (another version?):\n" + "\n".join(gone))
    print("every gold answer is in its page")


if __name__ == "__main__":
    main()
