"""The benchmarks are a package on one harness: public imports only, no patching, every module importable and listed."""
import ast
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "benchmarks").rglob("*.py"))
MODULES = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in FILES if p.name != "__init__.py"]
SCRIPTS = [m for m in MODULES if m != "benchmarks.harness"]


def offences(path: Path) -> list[str]:
    """Private names imported from diffrep_lite, private attributes of other objects (the package's internals),
    ``sys.path`` edits and assignments to attributes of imported diffrep_lite modules (monkeypatching) in one file."""
    tree = ast.parse(path.read_text())
    out, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "diffrep_lite":
            parts = node.module.split(".") + [a.name for a in node.names]
            out += [f"line {node.lineno}: from {node.module} import {p}" for p in parts if p.startswith("_")]
            modules |= {a.asname or a.name for a in node.names}  # a submodule or a name: neither may be assigned to
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "diffrep_lite":
                    out += [f"line {node.lineno}: import {a.name}" for p in a.name.split(".") if p.startswith("_")]
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            out.append(f"line {node.lineno}: sys.path")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            out.append(f"line {node.lineno}: private attribute .{node.attr}")  # e.g. rep._linear_layers()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                root = el
                while isinstance(root, ast.Attribute):
                    root = root.value
                if el is not root and isinstance(root, ast.Name) and root.id in modules:
                    out.append(f"line {node.lineno}: assigns to {ast.unparse(el)}")
    return sorted(out, key=lambda o: int(o.split(":")[0].removeprefix("line ")))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_benchmark_imports_a_private_name_or_patches_the_package(path):
    assert offences(path) == []


def test_the_checker_sees_each_offence(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport diffrep_lite.pullback as pb\nfrom diffrep_lite.pullback import _axpy, cg_solve\n"
                   "from diffrep_lite._x import y\nsys.path.insert(0, '.')\npb.jvp = None\npb.vjp, z = 1, 2\n"
                   "rep._linear_layers()\nself._ok = self.__dict__\n")
    assert offences(bad) == ["line 3: from diffrep_lite.pullback import _axpy", "line 4: from diffrep_lite._x import _x",
                             "line 5: sys.path", "line 6: assigns to pb.jvp", "line 7: assigns to pb.vjp",
                             "line 8: private attribute ._linear_layers"]


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_module_imports_cleanly(module):
    mod = importlib.import_module(module)
    if module in SCRIPTS:
        assert callable(mod.main)


def test_the_readme_lists_every_script_and_every_result():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    missing = [m for m in SCRIPTS if f"`{m.removeprefix('benchmarks.')}`" not in readme]
    results = sorted(p.name for p in (ROOT / "benchmarks" / "results").iterdir())
    variants = ("objects_nerf_methods_",)  # listed as a pattern
    unlisted = [r for r in results if r not in readme and not r.startswith(variants)]
    assert missing == [] and unlisted == []


def test_harness_environment_and_emit(tmp_path, capsys):
    from benchmarks import harness

    env = harness.environment("torch", "threads", load_average_start="load_average")
    assert sorted(env) == ["load_average_start", "threads", "torch"] and len(env["load_average_start"]) == 3
    with pytest.raises(ValueError, match=r"unknown environment field\(s\) \['gpu'\]"):
        harness.environment("gpu")
    doc = {"a": 1, "b": [1.5, "x"], "c": {"d": None}}
    out = tmp_path / "sub" / "r.json"
    text = harness.emit(doc, out)
    assert json.loads(out.read_text()) == doc and out.read_text() == text + "\n"
    assert capsys.readouterr().out == text + "\n"
    harness.emit(doc, None, indent=None, echo=False)
    assert capsys.readouterr().out == ""
