"""Serve MathJax 3 with the book, so that every page typesets its math with no network.

MathJax comes from a package registry, pinned: the PyPI package ``django-static-mathjax`` (a dependency of the
``book`` extra in ``pyproject.toml``) ships MathJax's release files, whose ``es5/`` folder is what MathJax's CDN
serves. Django is not needed; the package is only a pip-installable copy of MathJax.

* At the start of a build, ``mathjax_path`` (``_config.yml``, relative to ``_static``) must name a component of the
  bundle, ``mathjax/<component>.js``; a URL (a CDN) or a missing bundle stops the build with the fix in the message.
* When the build finishes, the component and the folders it loads from on demand (TeX input and its extensions,
  the CHTML output and its fonts, the menu, accessibility) are copied into ``_build/html/_static/mathjax/``.
"""
from __future__ import annotations

import importlib.resources
import json
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

PIP_PACKAGE = "django-static-mathjax"
PREFIX = "mathjax/"
# folders of es5/ that a component loads from at run time (es5/*.js other than the component are left out)
RUNTIME_FOLDERS = ("a11y", "adaptors", "input", "output", "sre", "ui")


def bundle() -> tuple[Path, str]:
    """MathJax's ``es5`` folder inside the installed package, and MathJax's version (from its package.json)."""
    try:
        root = Path(str(importlib.resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / "es5").is_dir() or not (root / "package.json").is_file():
        raise ExtensionError(
            f"MathJax is not installed: the book serves MathJax 3 from the PyPI package {PIP_PACKAGE!r}. "
            "Install the book's dependencies with `pip install -e '.[book]'` (scripts/setup.sh does).")
    version = json.loads((root / "package.json").read_text())["version"]
    if not version.startswith("3."):
        raise ExtensionError(f"{PIP_PACKAGE} provides MathJax {version}; the book needs MathJax 3")
    return root / "es5", version


def _component(app) -> str:
    path = app.config.mathjax_path or ""
    if not path.startswith(PREFIX) or "//" in path:
        raise ExtensionError(
            f"mathjax_path={path!r}: the book serves MathJax itself; set `mathjax_path: {PREFIX}tex-mml-chtml.js` "
            "(a component of MathJax's es5 folder, relative to _static) in _config.yml under sphinx: config:")
    return path[len(PREFIX):]


def check_config(app, config) -> None:
    es5, version = bundle()
    component = _component(app)
    if not (es5 / component).is_file():
        found = sorted(p.name for p in es5.glob("*.js"))
        raise ExtensionError(f"mathjax_path={app.config.mathjax_path!r}: MathJax {version} has no {component!r}; "
                             f"its components are {found}")
    logger.info(f"MathJax {version} from {PIP_PACKAGE}: {component}")


def copy_mathjax(app, exception) -> None:
    if app.builder.format != "html" or exception is not None:
        return
    es5, _ = bundle()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    component = _component(app)
    shutil.copy2(es5 / component, target / component)
    for folder in RUNTIME_FOLDERS:
        if (es5 / folder).is_dir():
            shutil.copytree(es5 / folder, target / folder, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", check_config)
    app.connect("build-finished", copy_mathjax)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
