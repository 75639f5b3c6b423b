"""diffrep_lite.notebook.glue stores what the book's {glue:text} role can format."""
import numpy as np
import pytest
import torch

from diffrep_lite import notebook


def test_glue_stores_python_numbers_for_numpy_and_torch_scalars(monkeypatch):
    stored = {}
    import myst_nb

    monkeypatch.setattr(notebook, "_GLUED", {})

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: stored.__setitem__(name, (value, display)))
    notebook.glue("a", np.float64(0.25))
    notebook.glue("b", torch.tensor(3))
    notebook.glue("c", "text")
    assert stored == {"a": (0.25, False), "b": (3, False), "c": ("text", False)}
    assert type(stored["a"][0]) is float and type(stored["b"][0]) is int
    with pytest.raises(ValueError, match="name must be"):
        notebook.glue("not a key", 1)


def test_glue_skips_a_repeat_of_the_same_value_and_passes_a_different_one_on(monkeypatch):
    calls = []
    import myst_nb

    monkeypatch.setattr(notebook, "_GLUED", {})
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value)))
    notebook.glue("n", 128)
    notebook.glue("n", np.int64(128))  # the same figure from another row of a table loop
    assert calls == [("n", 128)]
    notebook.glue("n", 64)  # another figure under the same name: glued, so myst-nb's duplicate warning shows it
    notebook.glue("x", 0.5)
    notebook.glue("x", 0.5, display=True)  # a display is an output of its own cell: always glued
    assert calls == [("n", 128), ("n", 64), ("x", 0.5), ("x", 0.5)]


# --- numbers in a notebook's prose come from its run -------------------------------------------------------------
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: Notebooks whose prose quotes no typed result: every figure is a {glue} reference.
GLUED = sorted(p.stem for p in NOTEBOOKS.glob("0*.ipynb"))
#: Values that the prose may type because they are settings or thresholds, not results (per notebook): CFG scales,
#: jump etas, thresholds, interval levels, Stable Diffusion's version.
SETTINGS = {"03_siren_images": {"7.5"},
            "04_panoramas": {"95 %", "0.05", "0.2", "0.5", "1.5"},
            "05_nerf": {"0.1", "0.2", "0.25", "0.3", "0.5", "1.5", "2.5", "95 %", "20 dB", "25 dB"}}
#: What a typed result looks like: a decimal, a count "k of n", seconds, a percentage, decibels.
RESULT = re.compile(r"\d+ of \d+|\d+(?:\.\d+)?(?: s\b| ?%| dB)|\d+\.\d+")
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z0-9_]+)(?::[^`]*)?`")


def _cells(name):
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]


def _prose(src: str) -> str:
    """Markdown without glue roles, math, code spans and link targets: what a reader sees typed."""
    s = GLUE_ROLE.sub("<glued>", src)
    s = re.sub(r"\$\$.*?\$\$", "", s, flags=re.S)
    s = re.sub(r"\$[^$]*\$", "", s)
    s = re.sub(r"`[^`]*`", "", s)
    return re.sub(r"\]\([^)]*\)", "]", s)


def typed_results(markdown: str, settings=()) -> list[str]:
    """The numbers in ``markdown`` that look like results and are not glued (nor an allowed setting)."""
    return [m.group() for m in RESULT.finditer(_prose(markdown)) if m.group() not in settings]


def test_the_typed_number_check_sees_each_kind():
    text = ("KID 0.45 against {glue:text}`kid_ddr:.2f`, 15 of 16 samples, 11.2 s, about 40 % and 14 dB; "
            "$\\gamma = 0.5$ and `eta=0.25` are not prose")
    assert typed_results(text) == ["0.45", "15 of 16", "11.2 s", "40 %", "14 dB"]
    assert typed_results("{glue}`n` of {glue}`m` at 20 dB", {"20 dB"}) == []


@pytest.mark.parametrize("name", GLUED)
def test_notebook_prose_quotes_no_typed_result(name):
    found = {i: typed_results("".join(c["source"]), SETTINGS.get(name, set()))
             for i, c in enumerate(_cells(name)) if c["cell_type"] == "markdown"}
    assert {i: f for i, f in found.items() if f} == {}


@pytest.mark.parametrize("name", GLUED)
def test_every_glue_reference_is_glued_by_a_code_cell(name):
    """Each name the prose quotes matches a ``glue(...)`` call of a code cell (an f-string name's fields match any
    name part), so a misspelt reference cannot reach the book build."""
    cells = _cells(name)
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    patterns = []
    for m in re.finditer(r"glue\(\s*(f?)([\"'])(.+?)\2", code):
        if m.group(1):
            parts = re.split(r"\{[^}]*\}", m.group(3))
            patterns.append(re.compile("[A-Za-z0-9_.]+".join(re.escape(p) for p in parts) + "$"))
        else:
            patterns.append(re.compile(re.escape(m.group(3)) + "$"))
    # names built by concatenation, glue("prefix" + expr + "suffix", ...)
    for m in re.finditer(r"glue\(\s*([\"'])(\w+)\1\s*\+[^\n]*?\+\s*([\"'])(\w+)\3\s*,", code):
        patterns.append(re.compile(re.escape(m.group(2)) + "[A-Za-z0-9_.]+" + re.escape(m.group(4)) + "$"))
    quoted = {n for c in cells if c["cell_type"] == "markdown" for n in GLUE_ROLE.findall("".join(c["source"]))}
    assert sorted(n for n in quoted if not any(p.match(n) for p in patterns)) == []
