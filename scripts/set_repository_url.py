#!/usr/bin/env python3
"""Write the repository URL of ``_config.yml`` into the notebooks: the one place a fork changes it.

``_config.yml`` holds it (``repository: url:`` and ``branch:``); the book's launch and repository buttons read it
there. The notebooks cannot read a config file on Colab, so they carry copies, which this script rewrites:

* every Colab setup cell's ``pip install "... @ git+<url>"``;
* every Colab badge or link in Markdown, ``https://colab.research.google.com/github/<owner>/<name>/blob/<branch>/...``.

Usage (from the repository root)::

    python scripts/set_repository_url.py           # rewrite the notebooks from _config.yml
    python scripts/set_repository_url.py --check   # exit 1 and name the notebooks that disagree

``tests/test_colab.py`` runs the check.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GIT_URL = re.compile(r"git\+https?://[^\s\"'@#]+")
COLAB_URL = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)\"']+/[^/\s)\"']+/blob/[^/\s)\"']+/")


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``root/_config.yml``; the URL without a trailing slash."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    repo = config.get("repository") or {}
    url = str(repo.get("url") or "").rstrip("/")
    if not re.fullmatch(r"https://github\.com/[^/\s]+/[^/\s]+", url):
        raise ValueError(f"_config.yml repository.url={url!r}: expected https://github.com/<owner>/<name> "
                         "(Colab opens notebooks from GitHub)")
    return url, str(repo.get("branch") or "main")


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9]*.ipynb"))


def rewritten(text: str, url: str, branch: str) -> str:
    """The notebook file ``text`` with every repository URL copy set to ``url`` / ``branch``."""
    nb = json.loads(text)
    colab = "https://colab.research.google.com/github/" + url.removeprefix("https://github.com/") + f"/blob/{branch}/"
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code":
            new = GIT_URL.sub(lambda m: f"git+{url}", src)
        else:
            new = COLAB_URL.sub(lambda m: colab, src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def stale(root: Path = ROOT) -> list[str]:
    """Names of the notebooks whose copies of the URL differ from ``_config.yml``."""
    url, branch = repository(root)
    return [p.name for p in notebooks(root) if rewritten(p.read_text(encoding="utf-8"), url, branch)
            != p.read_text(encoding="utf-8")]


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report notebooks that disagree with _config.yml")
    args = ap.parse_args(argv)
    url, branch = repository(root)
    bad = stale(root)
    if args.check:
        for name in bad:
            print(f"notebooks/{name}: repository URL differs from _config.yml ({url}, branch {branch})")
        return 1 if bad else 0
    for p in notebooks(root):
        if p.name in bad:
            p.write_text(rewritten(p.read_text(encoding="utf-8"), url, branch), encoding="utf-8")
            print(f"notebooks/{p.name}: set to {url} (branch {branch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
