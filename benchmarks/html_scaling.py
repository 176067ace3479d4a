"""Does reading an HTML page take time in proportion to its size, also with many content tabs?

A page's text (`retrieval/html_text.py: page_text`) is read from synthetic pages of G sections, each
20 paragraphs and a group of 3 content tabs (ARIA tabs, each naming its panel by `aria-controls`,
as Docusaurus and Bootstrap write them), at a small and a 16x larger G. Pairing every tab with its
panel once searched the whole page per tab, so the larger page took 76 s per MB against 7 s per MB
for the small one (docs/benchmarks.md, "Indexing").

    .venv/bin/python benchmarks/html_scaling.py [--groups 50,800]

Prints one JSON object: {"pages": [{"groups", "mb", "seconds", "s_per_mb"}, ...],
"ratio": s_per_mb of the largest page / s_per_mb of the smallest} (about 1 when linear).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.html_text import page_text  # noqa: E402


def tabbed_page(groups: int) -> str:
    """A page of `groups` sections, each of 20 paragraphs and a group of 3 content tabs."""
    parts = ["<html><body><main>"]
    for g in range(groups):
        parts.append(f"<h2>Section {g}</h2>")
        parts.extend(f"<p>Paragraph {g}.{i} with some words in it to read.</p>" for i in range(20))
        tabs = "".join(f'<button role="tab" aria-controls="p{g}-{t}">OS {t}</button>' for t in range(3))
        panels = "".join(f'<div role="tabpanel" id="p{g}-{t}"><pre>install {g} {t}</pre></div>' for t in range(3))
        parts.append(f'<div class="tabs"><div role="tablist">{tabs}</div>{panels}</div>')
    parts.append("</main></body></html>")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="50,800", help="comma-separated tab group counts, smallest first")
    args = parser.parse_args()
    page_text(tabbed_page(5))  # imports and warms the parser outside the timings
    pages = []
    for groups in (int(g) for g in args.groups.split(",")):
        html = tabbed_page(groups)
        start = time.perf_counter()
        page_text(html)
        seconds = time.perf_counter() - start
        mb = len(html.encode()) / 1e6
        pages.append({"groups": groups, "mb": round(mb, 3), "seconds": round(seconds, 3), "s_per_mb": round(seconds / mb, 2)})
    print(json.dumps({"pages": pages, "ratio": round(pages[-1]["s_per_mb"] / pages[0]["s_per_mb"], 2)}))


if __name__ == "__main__":
    main()
