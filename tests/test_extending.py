"""The "Extending diffrep-lite" chapter's examples run and pass their exact checks (the same cells the book runs)."""
from __future__ import annotations

import re
from pathlib import Path

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "extending.md"


def test_extending_chapter_examples_pass_their_checks(one_thread):
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", CHAPTER.read_text(), re.S)
    assert len(cells) >= 6, "the chapter's code cells were not found"
    ns: dict = {"__name__": "extending"}
    for i, code in enumerate(cells):
        exec(compile(code, f"{CHAPTER.name}[cell {i}]", "exec"), ns)  # each cell asserts its exact answer
    assert {"CosineSignal", "IsotropicGaussian", "ClippedDDRStep"} <= set(ns)
