"""mkdocs hook: the site carries the raw benchmark data and the full lab notebook.

* every ``benchmarks/results/**/*.json|csv|png`` is published under ``data/`` (the same
  relative path), so the headline figures on ``results.md`` link to the numbers behind them;
* ``benchmarks/RESULTS.md`` is published as ``notebook.md``, untouched except that its links
  into ``results/`` point at the published copies and its links to ``../docs/`` pages at
  those pages;
* a page's links to ``../benchmarks/results/...`` (right when the markdown is read in the
  repository) point at the published copies too.

Docstrings cite objects with Sphinx roles (``:func:`x```); the API page shows them as code,
without the role's prefix. Nothing is written into ``docs/``: the files are added to the
build's file collection.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
NOTEBOOK = ROOT / "benchmarks" / "RESULTS.md"
RAW_SUFFIXES = {".json", ".csv", ".png"}
NOTE = ("!!! note \"The lab notebook\"\n"
        "    This page is `benchmarks/RESULTS.md` as the benchmarks wrote it: every measurement "
        "with its command, date and machine, in the order they were taken. "
        "[Headline results](results.md) is the curated summary.\n\n")


def on_files(files: Files, config) -> Files:
    for path in sorted(RESULTS.rglob("*")):
        if path.is_file() and path.suffix in RAW_SUFFIXES:
            uri = "data/" + path.relative_to(RESULTS).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    text = NOTEBOOK.read_text(encoding="utf-8")
    text = re.sub(r"\]\(results/", "](data/", text)
    text = re.sub(r"\]\(\.\./docs/", "](", text)  # links to site pages, from benchmarks/
    head, _, body = text.partition("\n")  # the notebook's title stays first
    files.append(File.generated(config, "notebook.md", content=f"{head}\n\n{NOTE}{body}"))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    depth = page.file.src_uri.count("/")
    return markdown.replace("](../benchmarks/results/", "](" + "../" * depth + "data/")


ROLE = re.compile(r":(?:py:)?(?:func|meth|mod|class|data|attr|obj|exc):(?=<code)")


def on_page_content(html: str, page, config, files) -> str:
    return ROLE.sub("", html)
