"""What every benchmark shares: its command line (``--out``, ``--threads``), the environment header of its JSON,
writing the JSON, and running one measurement in a fresh process.

Every script is a module of this package and runs from the repository root as ``python -m benchmarks.<name>``
(see ``benchmarks/README.md``); it imports only public names of :mod:`diffrep_lite`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["parser", "set_threads", "environment", "emit", "run_module", "peak_rss_mb", "ROOT", "RESULTS"]

#: The repository root (the working directory of every subprocess) and the folder of recorded results.
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: The fields :func:`environment` can record, each computed when asked for.
_FIELDS = {
    "torch": lambda: torch.__version__,
    "threads": torch.get_num_threads,
    "platform": platform.platform,
    "machine": platform.machine,
    "cpu_count": os.cpu_count,
    "load_average": os.getloadavg,
    "date": lambda: datetime.date.today().isoformat(),
    "python": platform.python_version,
}


def parser(doc: str | None, *, out: str | None = None, threads: int | None = None,
           threads_help: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the script's docstring as its help and the two options every benchmark has:
    ``--out`` (where the JSON goes besides stdout; default ``out``) and ``--threads`` (torch threads; default
    ``threads``, None = torch's choice)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=out, help="also write the JSON here" + (f" (default {out})" if out else ""))
    ap.add_argument("--threads", type=int, default=threads, help=threads_help or "torch threads " + (
        f"(default {threads})" if threads else "(default: torch's choice)"))
    return ap


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads to ``n`` (``None``: leave them) and return the number in use."""
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SystemExit(f"--threads must be a positive int, got {n!r}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


def environment(*fields: str, **renamed: str) -> dict:
    """The environment header of a result: ``environment("torch", "threads")`` gives
    ``{"torch": ..., "threads": ...}``; ``renamed`` records a field under another key
    (``load_average_start="load_average"``). Fields: see :data:`_FIELDS`."""
    wanted = {f: f for f in fields} | renamed
    bad = sorted(set(wanted.values()) - set(_FIELDS))
    if bad:
        raise ValueError(f"unknown environment field(s) {bad}; known: {sorted(_FIELDS)}")
    return {key: _FIELDS[field]() for key, field in wanted.items()}


def emit(doc, out=None, *, indent: int | None = 1, echo: bool = True) -> str:
    """Print ``doc`` as JSON (``echo``) and, when ``out`` is given, write it there (parents created) with a
    final newline. Returns the text."""
    text = json.dumps(doc, indent=indent)
    if echo:
        print(text, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return text


def run_module(name: str, *args, env: dict | None = None, library=None, check: bool = True):
    """Run ``python -m benchmarks.<name> *args`` in a fresh process (a clean peak-memory figure, a clean
    thread pool) and return the JSON on the last line of its stdout. ``env`` updates the environment;
    ``library`` is another checkout whose ``diffrep_lite`` the process imports (default: this one), so that
    two versions of the package are measured by the same script. A failed run exits (``check``) or returns
    ``{"error": <the end of its stderr>}``."""
    path = os.pathsep.join(str(p) for p in ((library,) if library else ()) + (ROOT,))
    p = subprocess.run([sys.executable, "-P", "-m", f"benchmarks.{name}", *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": path})
    if p.returncode and not check:
        return {"error": p.stderr[-2000:]}
    if p.returncode:
        raise SystemExit(f"benchmarks.{name} {' '.join(map(str, args))} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
