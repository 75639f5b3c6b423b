"""Input checks shared by every public entry point (priors, diffreps, samplers, model loading).

Each check raises before any work, with a message that names the parameter (or the file) and the allowed
values: ``TypeError`` for a value of the wrong kind, ``ValueError`` for a value of the right kind that is out of
range, not finite, or names a path that does not exist.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import torch

__all__ = ["check_bool", "check_int", "check_real", "check_finite_values", "check_finite_tensor", "check_seed", "check_dtype",
           "check_view_conditioning", "check_sampler_options", "resolve_model_source", "offline_mode", "SEED_MAX"]

#: Seeds are 64-bit: ``torch.Generator.manual_seed`` takes ints in ``[0, 2**64)``.
SEED_MAX = 2**64
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ------------------------------------------------------------------------------------------------ scalars
def check_bool(value, name: str) -> bool:
    """``value`` must be ``True`` or ``False`` (not ``"no"``, ``0`` or ``None``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_int(value, name, minimum=1):
    """``value`` as an int ``>= minimum``; TypeError / ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value



def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False, allow_none: bool = False):
    """A finite real number (int or float, not bool) in the interval given by ``low`` / ``high``; returns a float.

    ``low_open`` / ``high_open`` exclude the end point (``low=0, low_open=True``: ``> 0``).
    """
    if value is None and allow_none:
        return None
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    want = "a finite number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")
    want += " or None" if allow_none else ""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low)) \
            or (high is not None and (v >= high if high_open else v > high)):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return v


def check_finite_tensor(t: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` naming ``name`` when the tensor ``t`` holds NaN or inf (one host sync)."""
    if t.is_floating_point() or t.is_complex():
        if not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t)).nonzero()[0].tolist()
            where = f" (first at index {tuple(bad) if len(bad) != 1 else bad[0]})" if bad else ""
            raise ValueError(f"{name} must hold finite values, got NaN or inf{where}")
    return t


def check_finite_values(value, name: str) -> torch.Tensor:
    """Convert an array-like (list, tensor, number) to a float64 tensor and check that it is all finite."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64) if not isinstance(value, torch.Tensor) else value.double()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be numbers (a list, array or tensor), got {type(value).__name__}: {e}") from None
    return check_finite_tensor(t, name)


def check_seed(seed) -> int:
    """A seed is an int in ``[0, 2**64)`` (what ``torch.Generator.manual_seed`` takes)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int in [0, 2**64) (or pass generator=torch.Generator), got "
                        f"{type(seed).__name__} {seed!r}")
    if not 0 <= seed < SEED_MAX:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return seed


def check_dtype(dtype, name: str = "dtype", allowed=FLOAT_DTYPES) -> torch.dtype:
    """A floating ``torch.dtype`` from ``allowed``; a string such as ``"float16"`` is refused with the spelling to use."""
    if not isinstance(dtype, torch.dtype):
        hint = ""
        if isinstance(dtype, str) and isinstance(getattr(torch, dtype.replace("torch.", ""), None), torch.dtype):
            hint = f" (write torch.{dtype.replace('torch.', '')}, not the string {dtype!r})"
        raise TypeError(f"{name} must be a torch.dtype, one of {[str(d) for d in allowed]}, got "
                        f"{type(dtype).__name__} {dtype!r}{hint}")
    if dtype not in allowed:
        raise ValueError(f"{name} must be one of {[str(d) for d in allowed]}, got {dtype}")
    return dtype


# ------------------------------------------------------------------------------------------------ samplers
def check_view_conditioning(prior, diffrep) -> None:
    """Refuse a diffrep that gives its views conditions the prior cannot take as view conditions.

    A prior says which per-view conditions it takes with ``view_cond_types``: a tuple of types (``()``: none,
    e.g. a class-label model; ``(str,)``: prompt suffixes), or None (the prior's ``check_cond`` decides). Without
    this check a digits model would read a panorama's crop offsets 0, 4, 8 as the digits 0, 4, 8.
    """
    if diffrep is None:
        return
    vcs = diffrep.view_conds()
    types = getattr(prior, "view_cond_types", None)
    if vcs is None or types is None:
        return
    accept = tuple(types) + ((numbers.Integral,) if int in types else ())  # numpy ints are labels too

    def ok(c):
        if isinstance(c, torch.Tensor) and c.ndim == 0 and int in types:
            return not c.is_floating_point() and not c.is_complex() and c.dtype != torch.bool
        return isinstance(c, accept) and not isinstance(c, bool)

    bad = [c for c in vcs if not ok(c)]
    if not bad:
        return
    takes = ("no view conditions (its cond is a class label or none)" if not types else
             "view conditions of type " + " or ".join(t.__name__ for t in types))
    shown = list(vcs[:4]) + (["..."] if len(vcs) > 4 else [])
    raise ValueError(
        f"{type(diffrep).__name__} is view-conditioned (it passes each view a condition: {shown}), but "
        f"{type(prior).__name__} takes {takes}. Build the diffrep with view_conditioned=False (a Panorama) or "
        "view_conds=None (a VoxelNeRF), or use a view-conditioned prior")


def check_sampler_options(prior, diffrep, *, seed=None, **flags) -> None:
    """The checks every sampler runs before any work that :func:`~diffrep_lite.samplers.common.setup` does not:
    ``seed`` (None or an int in ``[0, 2**64)``), each boolean flag in ``flags`` (e.g. ``return_trace=...``) a real
    bool, and a view-conditioned diffrep only on a prior that takes its view conditions."""
    if seed is not None:
        check_seed(seed)
    for name, value in flags.items():
        check_bool(value, name)
    check_view_conditioning(prior, diffrep)


# ------------------------------------------------------------------------------------------------ model paths
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` forbids downloads (the environment or huggingface_hub's constants say so)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub missing or very old
        return False


def _looks_local(name: str, raw) -> bool:
    """A string that cannot be a hub id ``org/name``, or that is spelled like a path: starts with ``.``, ``/`` or
    ``~``, has two or more separators, ends with a separator, or whose first part is an existing local folder
    (``models/digits16x`` next to a ``models/`` folder is a mistyped path, not a hub repository)."""
    seps = [s for s in {os.sep, "/", os.altsep} if s]
    if isinstance(raw, os.PathLike) or name.startswith((".", "/", "~")) or name.endswith(tuple(seps)):
        return True
    if sum(name.count(s) for s in set(seps)) >= 2 or "\\" in name:
        return True
    first = re.split(r"[\\/]", name, maxsplit=1)[0]
    return bool(first) and os.path.isdir(first)


def _hub_reachable(timeout: float) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection within ``timeout`` seconds (DNS included; the
    lookup runs in a daemon thread, so a resolver that retries for a minute cannot hold the caller)."""
    try:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def resolve_model_source(model_id_or_path, *, name: str = "model_id_or_path", local_files_only: bool | None = None,
                         cache_file: str | tuple | None = None, timeout: float = 3.0) -> tuple[str, bool]:
    """Decide, before anything is loaded, whether ``model_id_or_path`` is a local folder or a hub id, and whether
    it can be loaded. Returns ``(source, local_only)``: the folder (expanded) or hub id, and whether loading must
    not touch the network (pass it as ``local_files_only``).

    * an existing folder: ``(folder, True)``; an existing file is refused (a model is a folder);
    * a string that looks like a local path (see :func:`_looks_local`) but does not exist: ``ValueError`` naming it
      and the deepest part of it that does exist;
    * a hub id ``org/name``: offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) it must be in the local
      Hugging Face cache (``cache_file``, e.g. ``"model_index.json"`` or a tuple of candidates, is looked up there); online the hub must
      answer within ``timeout`` seconds, else a cached copy is used or ``ValueError`` says the model is not
      available offline and how to pass a local folder.
    """
    raw = model_id_or_path
    if isinstance(raw, os.PathLike):
        model_id_or_path = os.fspath(raw)
    if not isinstance(model_id_or_path, str) or not model_id_or_path:
        raise TypeError(f"{name} must be a non-empty str or os.PathLike (a local folder or a hub id 'org/name'), "
                        f"got {type(raw).__name__} {raw!r}")
    if local_files_only is not None and not isinstance(local_files_only, bool):
        raise TypeError(f"local_files_only must be True, False or None, got {local_files_only!r}")
    s = model_id_or_path
    p = Path(s).expanduser()
    if p.is_dir():
        return str(p), True
    if p.exists():
        raise ValueError(f"{name}={s!r} is a file; it must be a model folder (diffusers layout: config.json or "
                         "model_index.json and the weights) or a hub id 'org/name'. Convert a single-file checkpoint "
                         "with the pipeline's from_single_file(...).save_pretrained(folder)")
    if _looks_local(s, raw) or not _HUB_ID.fullmatch(s):
        exists = next((q for q in p.absolute().parents if q.is_dir()), None)
        why = "it looks like a local path" if _looks_local(s, raw) else "it is not of the form 'org/name'"
        raise ValueError(f"{name}={s!r} is not an existing directory ({why}), so it is neither an existing local "
                         f"folder nor a Hugging Face hub id: no folder {str(p.absolute())!r} (the deepest existing part "
                         f"is {str(exists)!r}). Check the spelling, or pass an existing model folder")
    offline = offline_mode() if local_files_only is None else local_files_only
    cached = False
    files = (cache_file,) if isinstance(cache_file, str) else tuple(cache_file or ())
    if files:
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = any(isinstance(try_to_load_from_cache(s, f), str) for f in files)
        except Exception:  # pragma: no cover - a broken cache reads as "not cached"
            cached = False
    how = (f"Download it where there is network (`huggingface-cli download {s} --local-dir DIR`) and pass "
           f"{name}=DIR, a local folder")
    if offline:
        if cached:
            return s, True
        why = "HF_HUB_OFFLINE=1" if local_files_only is None else "local_files_only=True"
        raise ValueError(f"{name}={s!r} is not an existing directory, and the model is not available offline: "
                         f"{why} forbids downloads and it is not in the local Hugging Face cache. {how}")
    if not _hub_reachable(timeout):
        if cached:
            return s, True
        raise ValueError(f"{name}={s!r} is not an existing directory, and the model is not available offline: the "
                         f"Hugging Face hub cannot be reached (no answer within {timeout:g} s) and it is not in the "
                         f"local Hugging Face cache. {how}")
    return s, False
