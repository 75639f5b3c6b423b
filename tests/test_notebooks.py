"""Papermill runs of every notebook at CI-sized parameters.

Each notebook stores its CI parameters in its metadata, ``metadata["diffrep_lite"]["ci_parameters"]``
(a dict passed to papermill); nbval runs the same notebooks on their defaults (``--nbval-lax``).
"""
from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


def _ci_params(path: Path) -> dict:
    meta = json.loads(path.read_text())["metadata"]
    return meta.get("diffrep_lite", {}).get("ci_parameters", {})


def test_every_notebook_has_parameters_cell_first():
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert "parameters" in cells[0].get("metadata", {}).get("tags", []), f"{nb.name}: first code cell must be tagged 'parameters'"
        assert _ci_params(nb), f"{nb.name}: metadata.diffrep_lite.ci_parameters is missing"


@pytest.mark.notebooks
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_ci_parameters(nb, tmp_path):
    out = tmp_path / nb.name
    papermill.execute_notebook(str(nb), str(out), parameters=_ci_params(nb), kernel_name="python3",
                               cwd=str(nb.parent), progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
