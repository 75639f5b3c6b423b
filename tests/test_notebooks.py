"""Notebook checks beside nbval.

Each notebook stores its CI parameters in its metadata, ``metadata["diffrep_lite"]["ci_parameters"]``. The book
build executes every notebook on its defaults; ``pytest notebooks --nbval-lax`` executes each once more at its CI
parameters (``notebooks/conftest.py`` injects them as papermill would), so no notebook runs twice on the same
parameters. Here: that the parameters are in place and that nbval really receives them, and papermill runs of the
Stable Diffusion branch of notebooks 03-05 (other parameters again) on a tiny random-weight pipeline.
"""
from __future__ import annotations

import ast
import json
import runpy
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _ci_params(path: Path) -> dict:
    meta = json.loads(path.read_text())["metadata"]
    return meta.get("diffrep_lite", {}).get("ci_parameters", {})


def test_every_notebook_has_parameters_cell_first():
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert "parameters" in cells[0].get("metadata", {}).get("tags", []), f"{nb.name}: first code cell must be tagged 'parameters'"
        assert _ci_params(nb), f"{nb.name}: metadata.diffrep_lite.ci_parameters is missing"


#: Collects ``notebooks/`` under nbval (nothing executed) and prints each collected cell as JSON.
_COLLECT = """
import json, sys, pytest
class Record:
    cells = []
    def pytest_collection_modifyitems(self, items):
        self.cells += [dict(file=i.path.name, name=i.name, source=i.cell.source,
                            tags=list(i.cell.metadata.get("tags", [])), markers=[m.name for m in i.iter_markers()])
                       for i in items]
r = Record()
code = pytest.main(["--collect-only", "-q", "--nbval-lax", "-p", "no:cacheprovider", "notebooks"], plugins=[r])
print("CELLS=" + json.dumps(r.cells))
sys.exit(code)
"""


def test_nbval_runs_each_notebook_at_its_ci_parameters():
    """nbval's cells are the notebook's code cells with papermill's injected-parameters cell right after the
    ``parameters`` cell, assigning exactly the CI parameters; every cell is marked ``notebooks``."""
    out = subprocess.run([sys.executable, "-c", _COLLECT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    cells = json.loads(out.stdout.split("CELLS=", 1)[1])
    for nb in NOTEBOOKS:
        stored = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        got = [c for c in cells if c["file"] == nb.name]
        assert [c["name"] for c in got] == [f"Cell {i}" for i in range(len(stored) + 1)], nb.name
        assert "parameters" in got[0]["tags"] and got[1]["tags"] == ["injected-parameters"], nb.name
        assigned = {}
        exec(compile(ast.parse(got[1]["source"]), nb.name, "exec"), {}, assigned)
        assert assigned == _ci_params(nb), nb.name
        assert [c["source"] for c in got[:1] + got[2:]] == ["".join(c["source"]) for c in stored], nb.name
        assert all("notebooks" in c["markers"] for c in got), nb.name


def test_every_test_file_that_reads_the_built_book_runs_after_the_build():
    """scripts/test.sh runs the tests marked ``built_book`` (tests/conftest.py's list) after the book build and
    the rest while it builds: a file that reads ``_build`` and is not on the list would see no book (or an old
    one)."""
    built_book = runpy.run_path(str(ROOT / "tests" / "conftest.py"))["BUILT_BOOK"]  # not "import conftest":
    # notebooks/ has a conftest module too
    readers = {p.name for p in (ROOT / "tests").glob("test_*.py")
               if p.name != Path(__file__).name and '"_build"' in p.read_text()}
    assert readers == built_book


#: Tiny settings for the Stable Diffusion branch of each notebook (``model_id`` set), on top of its CI parameters.
SD_PARAMETERS = {
    "03_siren_images": dict(cfg_scales=[3], samples=2, study_seeds=[0], nfe=2, cg_iters=2, fit_iters=1,
                            n_reference=4, siren_hidden=8, siren_layers=1, sdi_demo_steps=0, prompt="the cat"),
    "04_panoramas": dict(sd_cfg_scales=[3.0], sd_nfe=4, sd_repaint_U=2, sd_views=2, sd_hidden=8,
                         sd_prompt="the cat"),
    "05_nerf": dict(sd_grid=6, sd_views=2, sd_steps=2, prompt="the cat"),
}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from diffrep_lite.testing import make_tiny_stable_diffusion

    return make_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd") / "pipe", seed=0)


@pytest.mark.notebooks
@pytest.mark.parametrize("name", sorted(SD_PARAMETERS))
def test_papermill_stable_diffusion_branch(name, tiny_sd, tmp_path, monkeypatch):
    """The ``model_id`` branch (what a Colab user runs) on a tiny random-weight SD pipeline saved to a temp folder."""
    nb = next(p for p in NOTEBOOKS if p.stem == name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = {**_ci_params(nb), **SD_PARAMETERS[name], "model_id": tiny_sd}
    out = tmp_path / nb.name
    papermill.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3", cwd=str(nb.parent),
                               progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "skipped" not in text  # the SD cells ran rather than printing that they skip
    assert {"03_siren_images": "StableDiffusionPrior(", "05_nerf": "text-to-NeRF:"}.get(name, "") in text
    marker = SD_RAN[name]
    sd_cells = [c for c in executed["cells"] if c["cell_type"] == "code" and marker in "".join(c["source"])]
    assert sd_cells and all(any("image/png" in o.get("data", {}) for o in c["outputs"]) for c in sd_cells), \
        "the Stable Diffusion cell drew no figure"


#: Source text of the cell of each notebook that samples and draws with Stable Diffusion.
SD_RAN = {"03_siren_images": "def to_images(", "04_panoramas": "sd.decode(", "05_nerf": "sd.decode("}
