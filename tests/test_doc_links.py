"""Every test the docs cite as evidence exists.

The threat model, the protocol pages and the README back each claim with a
``tests/file.py::test_name`` link (``::test_name`` reuses the file named last on the
same line or in the same table cell). A renamed or deleted test would leave a claim
that no longer has a test behind it; this check makes that a failure.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "RELIABILITY.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"(tests/[\w/]+\.py)?::(\w+)")


@cache
def _test_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))


def _links(doc: Path) -> list[tuple[int, str, str]]:
    """(line number, test file, test name) for every cited test in ``doc``."""
    found = []
    last: str | None = None
    for no, line in enumerate(doc.read_text().splitlines(), 1):
        for m in LINK.finditer(line):
            last = m.group(1) or last
            if last is None:
                continue
            found.append((no, last, m.group(2)))
    return found


def test_the_docs_cite_tests() -> None:
    """The check below has something to check (the threat model alone cites dozens)."""
    assert len(_links(ROOT / "docs" / "threat-model.md")) > 50


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_test_exists(doc: Path) -> None:
    missing = []
    for no, file, name in _links(doc):
        path = ROOT / file
        if not path.is_file() or name not in _test_names(path):
            missing.append(f"{doc.name}:{no}: {file}::{name}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)
