"""Code the book shows fits its column: every line of every notebook code cell, and of every fenced code block in
the book's pages (``book/*.md``) and in the notebooks' markdown cells, is at most ``MAX_COLUMNS`` characters.

At 1300 px the book's column holds about 90 characters of code; a longer line is cut or scrolls. Static and
cheap: nothing is executed. A failure names the file, the cell (or the page line) and the line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_COLUMNS = 88
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))

# A fence opens with 3+ backticks or tildes (any indent: fences sit in lists and directives) and an info string.
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
# MyST directives whose body is code; any other {directive} (figure, math, note, include, ...) holds no code,
# though its body may hold fenced code blocks of its own.
_CODE_DIRECTIVES = {"code-cell", "code-block", "code", "sourcecode"}


def code_blocks(text: str):
    """Yield ``(first_line_number, lines)`` for every fenced code block of a MyST / CommonMark text: plain fences
    (any language or none) and ``{code-cell}`` / ``{code-block}`` / ``{code}`` directives, nested ones included.
    Line numbers count from 1."""
    lines = text.split("\n")
    stack = []  # open fences: (char, length, is_code, first body line index)
    for i, line in enumerate(lines):
        if stack and stack[-1][2]:  # inside a code block: only its closing fence ends it
            char, length, _, start = stack[-1]
            s = line.strip()
            if s and set(s) == {char} and len(s) >= length:
                stack.pop()
                yield start + 1, lines[start:i]
            continue
        m = _FENCE.match(line)
        if not m:
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        if stack and not info and fence[0] == stack[-1][0] and len(fence) >= stack[-1][1]:
            stack.pop()  # closes a directive
            continue
        name = re.match(r"\{([^}]*)\}", info)
        is_code = name is None or name.group(1) in _CODE_DIRECTIVES
        stack.append((fence[0], len(fence), is_code, i + 1))


def _too_long(lines, where):
    return [f"{where(k)}: {len(line)} columns: {line.strip()[:60]!r}"
            for k, line in enumerate(lines) if len(line) > MAX_COLUMNS]


def test_the_fence_parser_finds_plain_nested_and_directive_code():
    text = "\n".join([
        "```python", "a = 1", "```",
        "````{note}", "```bash", "b", "```", "````",
        "```{math}", "x" * 100, "```",
        "```{code-cell} ipython3", "c = 3", "```",
        "  ~~~", "  d", "  ~~~",
        "```", "``` not a closer", "e", "```"])
    assert [(n, body) for n, body in code_blocks(text)] == [
        (2, ["a = 1"]), (6, ["b"]), (13, ["c = 3"]), (16, ["  d"]), (19, ["``` not a closer", "e"])]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_lines_fit_the_column(nb):
    cells = json.loads(nb.read_text())["cells"]
    bad = []
    for c, cell in enumerate(cells):
        src = "".join(cell["source"])
        name = f"{nb.relative_to(ROOT)} cell {c} ({cell['cell_type']}, id {cell.get('id', '?')})"
        if cell["cell_type"] == "code":
            bad += _too_long(src.split("\n"), lambda k, name=name: f"{name} line {k + 1}")
        elif cell["cell_type"] == "markdown":
            for start, body in code_blocks(src):
                bad += _too_long(body, lambda k, name=name, start=start: f"{name} line {start + k}")
    assert not bad, f"code lines over {MAX_COLUMNS} columns:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_book_code_blocks_fit_the_column(page):
    bad = []
    for start, body in code_blocks(page.read_text()):
        bad += _too_long(body, lambda k, start=start: f"{page.relative_to(ROOT)} line {start + k}")
    assert not bad, f"code lines over {MAX_COLUMNS} columns:\n" + "\n".join(bad)
