"""Every notebook can run on Google Colab: its second code cell installs diffrep-lite from the repository
named in ``_config.yml`` (the one place the URL is configured for the book's launch buttons), and only there."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def repository_url() -> str:
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    assert m, "_config.yml has no repository.url"
    return m.group(1).rstrip("/")


def test_colab_setup_cell_installs_from_the_configured_repository():
    assert NOTEBOOKS, "no notebooks found"
    url = repository_url()
    bad = []
    for nb in NOTEBOOKS:
        code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        src = "".join(code[1]["source"]) if len(code) > 1 else ""
        ok = ('"google.colab" in sys.modules' in src and "pip" in src and f"git+{url}" in src
              and src.index('"google.colab" in sys.modules') < src.index("pip"))
        if not ok:
            bad.append(nb.name)
    assert not bad, f"second code cell is not the Colab setup cell installing from {url}: {bad}"


def test_colab_setup_cell_does_nothing_outside_colab():
    """Run the setup cell here (no google.colab module): it must not install anything or fail."""
    import subprocess
    import sys

    calls = []
    real_run = subprocess.run
    subprocess.run = lambda *a, **k: calls.append(a)
    try:
        for nb in NOTEBOOKS:
            code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
            assert "google.colab" not in sys.modules
            exec(compile("".join(code[1]["source"]), nb.name, "exec"), {})
    finally:
        subprocess.run = real_run
    assert calls == []
