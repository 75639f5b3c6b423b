"""Every notebook can run on Google Colab: its second code cell installs diffrep-lite from the repository
named in ``_config.yml`` (the one place the URL is configured for the book's launch buttons), and only there.
The notebooks' copies of the URL (setup cells, Colab badges) are written by ``scripts/set_repository_url.py``."""
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


def _url_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("set_repository_url", ROOT / "scripts" / "set_repository_url.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_repository_url_in_the_notebooks_agrees_with_config():
    """Setup cells and Colab badges are copies of ``_config.yml``'s URL; ``scripts/set_repository_url.py`` writes
    them. Every copy must name the configured repository (and, for Colab links, the configured branch)."""
    script = _url_script()
    url, branch = script.repository(ROOT)
    assert url == repository_url()
    colab = f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/"
    found, bad = 0, []
    for nb in NOTEBOOKS:
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            for m in script.GIT_URL.finditer(src):
                found += 1
                if m.group(0) != f"git+{url}":
                    bad.append(f"{nb.name}: {m.group(0)}")
            for m in script.COLAB_URL.finditer(src):
                found += 1
                if m.group(0) != colab:
                    bad.append(f"{nb.name}: {m.group(0)}")
    assert found >= len(NOTEBOOKS), "every notebook has at least its setup cell's URL"
    assert not bad, "URLs that differ from _config.yml (run scripts/set_repository_url.py):\n" + "\n".join(bad)
    assert script.stale(ROOT) == []


def test_set_repository_url_rewrites_a_fork(tmp_path):
    """A fork edits _config.yml and runs the script: every copy changes to the fork, nothing else changes."""
    import shutil

    script = _url_script()
    (tmp_path / "notebooks").mkdir()
    for nb in NOTEBOOKS:
        shutil.copy(nb, tmp_path / "notebooks" / nb.name)
    fork, branch = "https://github.com/someone/my-fork", "dev"
    config = (ROOT / "_config.yml").read_text()
    config = re.sub(r"^(repository:\s*\n\s+url:\s*)\S+(\s*\n\s+branch:\s*)\S+", rf"\g<1>{fork}\g<2>{branch}", config,
                    flags=re.M)
    (tmp_path / "_config.yml").write_text(config)
    assert script.repository(tmp_path) == (fork, branch)
    assert script.main(["--check"], root=tmp_path) == 1
    assert script.main([], root=tmp_path) == 0
    assert script.main(["--check"], root=tmp_path) == 0
    old_url, old_branch = script.repository(ROOT)
    old_colab = f"colab.research.google.com/github/{old_url.removeprefix('https://github.com/')}/blob/{old_branch}/"
    new_colab = f"colab.research.google.com/github/someone/my-fork/blob/{branch}/"
    for nb in NOTEBOOKS:
        before = (ROOT / "notebooks" / nb.name).read_text()
        after = (tmp_path / "notebooks" / nb.name).read_text()
        assert old_url not in after and f"git+{fork}" in after
        assert after.count(new_colab) == before.count(old_colab)
        assert after == before.replace(old_colab, new_colab).replace(f"git+{old_url}", f"git+{fork}")
