"""Sphinx helpers for the diffrep-lite book (loaded through ``sphinx: local_extensions`` in ``_config.yml``).

* ``.. diffrep-api:: diffrep_lite`` (inside an ``{eval-rst}`` block) documents every public name of the package:
  it walks all modules, reads each module's ``__all__`` and emits one section per module. A name is documented
  in full (autodoc) in the module that defines it; every other module that re-exports it gets a short alias
  entry (so ``diffrep_lite.sample`` and ``diffrep_lite.samplers.sample`` are both link targets). Names added to
  any ``__all__`` appear with no edit to the book.
* ``{nb}`02``` links to the notebook whose file name starts with ``02`` (title as link text), or
  ``{nb}`text <book/forward_update>``` to any page; a missing target renders as plain text, so chapters keep
  building while notebooks from other branches are absent.
* short Python cross-references in docstrings (``Prior.eps``, or ``eps`` inside a class) resolve to the nearest
  documented object whose full name ends with them.
* tag ``has_forward_update`` is set when ``book/forward_update.md`` exists and is in the toc, for ``{only}`` blocks.
* ``{api}`diffrep_lite.sample``` links to an API name when it exists in the imported package and renders
  it as code otherwise.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.nodes import nested_parse_with_titles

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # document the checkout being built, not some other install
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- public-name discovery
def public_modules(package: str) -> list[str]:
    """The package and all its submodules whose dotted path has no ``_``-prefixed part, sorted."""
    pkg = importlib.import_module(package)
    names = [package]
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            names.append(info.name)
    return sorted(set(names))


def public_names(package: str) -> dict[str, list[str]]:
    """``{module: __all__}`` for every public module (modules without ``__all__`` map to ``[]``)."""
    out = {}
    for mod in public_modules(package):
        m = importlib.import_module(mod)
        out[mod] = list(getattr(m, "__all__", []))
    return out


def _kind(obj) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def home_modules(package: str) -> dict[int, str]:
    """For every public object (by ``id``), the module where it is documented in full.

    Functions and classes live where ``__module__`` says, if that module lists them in ``__all__``;
    otherwise (and for data) in the deepest module that lists them (the definer, for re-exports upward).
    """
    table = public_names(package)
    listed: dict[int, list[str]] = {}
    for mod, names in table.items():
        m = sys.modules[mod]
        for name in names:
            obj = getattr(m, name)
            if _kind(obj) == "module":
                continue
            listed.setdefault(id(obj), []).append(mod)
    homes = {}
    for oid, mods in listed.items():
        obj = next(getattr(sys.modules[m], n) for m in mods for n in table[m] if id(getattr(sys.modules[m], n)) == oid)
        own = getattr(obj, "__module__", None)
        homes[oid] = own if own in mods else max(mods, key=lambda s: (s.count("."), s))
    return homes


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def data_doc(mod: str, name: str) -> str:
    """The ``#:`` comment or string literal documenting module-level data ``mod.name`` ("" if none)."""
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    try:
        docs = ModuleAnalyzer.for_module(mod).find_attr_docs()
    except PycodeError:
        return ""
    return "\n".join(docs.get(("", name), [])).strip()


def _describe(obj) -> str:
    if isinstance(obj, dict):
        return f"``dict`` with keys {', '.join(f'``{k!r}``' for k in obj)}"
    if isinstance(obj, (tuple, list, set, frozenset)) and len(obj) <= 12:
        return f"``{type(obj).__name__}`` ``{obj!r}``"
    return f"``{type(obj).__name__}``"


def module_rst(mod: str, homes: dict[int, str], modules: set[str]) -> list[str]:
    """reST for one module: title, module docstring, full entries for names it defines, aliases for the rest."""
    m = sys.modules[mod]
    names = list(getattr(m, "__all__", []))
    title = f"``{mod}``"
    lines = [title, "-" * len(title), "", f".. automodule:: {mod}", "   :no-members:", ""]
    aliases = []
    for name in names:
        obj = getattr(m, name)
        kind = _kind(obj)
        if kind == "module":
            aliases.append(f"* :py:mod:`{obj.__name__}` (module)")
            continue
        home = homes[id(obj)]
        # ``samplers.ddr`` is both the re-exported function and the submodule: index only the module
        clash = ["   :no-index:"] if f"{mod}.{name}" in modules else []
        if home == mod:
            if kind == "class":
                lines += [f".. autoclass:: {mod}.{name}", "   :members:", "   :show-inheritance:", *clash, ""]
            elif kind == "function":
                lines += [f".. autofunction:: {mod}.{name}", *clash, ""]
            elif data_doc(mod, name):
                lines += [f".. autodata:: {mod}.{name}", "   :no-value:", "", f"   Value: {_describe(obj)}.", ""]
            else:  # undocumented data: show what it is (tests/test_api_reference.py flags the missing doc)
                lines += [f".. py:data:: {name}", f"   :module: {mod}", "", f"   {_describe(obj)}.", ""]
        else:
            role = {"class": "class", "function": "func", "data": "data"}[kind]
            directive = {"class": "py:class", "function": "py:function", "data": "py:data"}[kind]
            sig = name
            if kind == "function":
                try:
                    sig = name + str(inspect.signature(obj)).replace("\n", " ")
                except (TypeError, ValueError):
                    sig = name + "(...)"
            lines += [f".. {directive}:: {sig}", f"   :module: {mod}", *clash, "",
                      f"   Re-exported here; documented at :py:{role}:`{home}.{name}`.", ""]
    if aliases:
        lines += [".. rubric:: Modules exported by this package", ""] + aliases + [""]
    return lines


class DiffrepApiDirective(Directive):
    """``.. diffrep-api:: package``: one section per public module, every ``__all__`` name documented."""

    required_arguments = 1
    has_content = False

    def run(self):
        package = self.arguments[0]
        env = self.state.document.settings.env
        homes = home_modules(package)
        rst: list[str] = []
        modules = public_modules(package)
        for mod in modules:
            rst += module_rst(mod, homes, set(modules))
            env.note_dependency(inspect.getsourcefile(sys.modules[mod]))
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(rst, source=f"<diffrep-api {package}>"), node)
        return node.children


# --------------------------------------------------------------------------- lenient roles
_EXPLICIT = re.compile(r"^(.+?)\s*<(.+)>$", re.S)


def _split(text: str):
    m = _EXPLICIT.match(text)
    return (m.group(1), m.group(2).strip()) if m else (None, text.strip())


def nb_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Link to a notebook by number prefix (``02``) or to a page (``book/forward_update``), if it is built."""
    env = inliner.document.settings.env
    label, target = _split(text)
    prefix = target if "/" in target else f"notebooks/{target}"
    matches = sorted(d for d in env.found_docs if d == prefix or d.startswith(prefix + "_") or
                     (d.startswith(prefix) and "/" not in target))
    if not matches:
        logger.info(f"[diffrep_book] {{nb}}`{text}`: no such page in this build; rendered as text",
                    location=(env.docname, lineno))
        return [nodes.emphasis(rawtext, label or f"notebook {target}")], []
    ref = addnodes.pending_xref(rawtext, refdomain="std", reftype="doc", reftarget="/" + matches[0],
                                refexplicit=label is not None, refdoc=env.docname, refwarn=True)
    ref += nodes.inline(rawtext, label or matches[0], classes=["xref", "std", "std-doc"])
    return [ref], []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return False
        return True
    return False


def api_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Link to a documented API name (``~`` shortens the text as in Sphinx); plain code if it does not exist."""
    env = inliner.document.settings.env
    label, target = _split(text)
    short = target.startswith("~")
    target = target.lstrip("~")
    shown = label or (target.rsplit(".", 1)[-1] if short else target)
    if not _resolves(target):
        logger.info(f"[diffrep_book] {{api}}`{text}`: not in this build's package; rendered as code",
                    location=(env.docname, lineno))
        return [nodes.literal(rawtext, shown)], []
    ref = addnodes.pending_xref(rawtext, refdomain="py", reftype="obj", reftarget=target, refexplicit=True,
                                refdoc=env.docname, refwarn=True)
    ref += nodes.literal(rawtext, shown, classes=["xref", "py", "py-obj"])
    return [ref], []


def resolve_short_python_names(app, env, node, contnode):
    """``missing-reference`` handler: resolve a short Python name (``Prior.eps`` or ``eps`` inside a class) to the
    documented object whose full name ends with it, preferring the one nearest to where the reference is
    written. Docstrings may then use the short names readers expect; names that match nothing still warn."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    if not target or " " in target:
        return None
    domain = env.get_domain("py")
    allowed = set(domain.objtypes_for_role(node.get("reftype", "obj")) or [])
    context = ".".join(p for p in (node.get("py:module"), node.get("py:class")) if p)
    best, best_score = None, -1
    for name, entry in domain.objects.items():
        if (name == target or name.endswith("." + target)) and (not allowed or entry.objtype in allowed):
            common = len(_common_prefix(name, context)) if context else 0
            score = common * 2 + (0 if entry.aliased else 1)
            if score > best_score:
                best, best_score = (name, entry), score
    if best is None:
        return None
    from sphinx.util.nodes import make_refnode

    name, entry = best
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)


def _common_prefix(a: str, b: str) -> str:
    parts = []
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        parts.append(x)
    return ".".join(parts)


def _page_tags(app, config):
    """Tag ``has_<page>`` for optional pages another part of the project may add (``{only}`` switches on them):
    set when ``book/<page>.md`` exists and the table of contents lists it."""
    toc_path = Path(app.srcdir) / getattr(config, "external_toc_path", "_toc.yml")
    toc = toc_path.read_text() if toc_path.exists() else ""
    for page in ("forward_update",):
        if (Path(app.srcdir) / "book" / f"{page}.md").exists() and f"book/{page}" in toc:
            app.tags.add(f"has_{page}")


def drop_thebe_scripts(app, pagename, templatename, context, doctree):
    """Leave sphinx-thebe's scripts out of every page. The book launches notebooks on Colab, not with Thebe; Thebe's
    inline config declares ``const THEBE_JS_URL`` once per registration (twice in a full build: a SyntaxError in
    every page's console) and points at a CDN the offline book cannot reach."""
    files = context.get("script_files")
    if files:
        def is_thebe(js):
            body = str(getattr(js, "attributes", {}).get("body", ""))
            return "thebe" in str(getattr(js, "filename", js) or "") or "THEBE_JS_URL" in body
        context["script_files"] = [js for js in files if not is_thebe(js)]


def setup(app):
    app.connect("config-inited", _page_tags)
    app.connect("html-page-context", drop_thebe_scripts)
    app.connect("missing-reference", resolve_short_python_names)
    app.add_directive("diffrep-api", DiffrepApiDirective)
    app.add_role("nb", nb_role)
    app.add_role("api", api_role)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
