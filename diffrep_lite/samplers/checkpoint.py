"""Checkpoints of a sampler's run, so an interrupted run resumes and ends bit-identical.

A checkpoint is a ``torch.save`` dict (read back with ``weights_only=True``) that holds the run's state after
a number of finished updates (the render ``x``, the parameters, the tracked noise ``eps``, a step's own state
such as an optimiser's moments, the random generator's state) and the run's identity: every sampler setting
and a fingerprint (SHA-256) of the prior, the diffrep, ``params0``, the condition and the generator's initial
state. ``resume_from`` a run with other settings fails before any work and lists each difference.

Nothing a user has is overwritten: a ``checkpoint_path`` that exists is refused unless it is the checkpoint
being resumed or ``overwrite=True``; its folder is checked before any work. Writes are atomic (a temporary
file, then ``os.replace``) and the temporary file is removed on any error, so an interrupted write leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .common import Setup, check_int

__all__ = ["CheckpointPlan", "fingerprint", "FORMAT"]

#: Marks a diffrep-lite checkpoint (and its layout version).
FORMAT = "diffrep-lite checkpoint v2"


def _feed(h, obj, depth: int, seen: set, weights: bool) -> None:
    """Hash ``obj``'s type and content: tensors by dtype, shape and bytes; modules by their configuration (each
    submodule's plain attributes and parameter shapes) and, with ``weights``, their state dicts; containers and
    plain objects (their ``vars``) recursively, to a limited depth."""
    h.update(type(obj).__qualname__.encode())
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, torch.nn.Module):
        for name, m in obj.named_modules():
            plain = {k: v for k, v in vars(m).items() if isinstance(v, (str, int, float, bool, type(None)))}
            _feed(h, {"module": name, **plain}, depth, seen, weights)
        _feed(h, {k: t if weights else tuple(t.shape) for k, t in obj.state_dict().items()}, depth, seen, weights)
    elif isinstance(obj, (str, int, float, bool, type(None), torch.dtype, torch.device)):
        h.update(repr(obj).encode())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k], depth, seen, weights)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _feed(h, v, depth, seen, weights)
    elif hasattr(obj, "__dict__") and depth < 4 and id(obj) not in seen:  # a plain object: its attributes
        seen.add(id(obj))
        _feed(h, {k: v for k, v in vars(obj).items() if "cache" not in k and (isinstance(v, torch.nn.Module) or
                                                                              not callable(v))}, depth + 1, seen, weights)


def fingerprint(obj, weights: bool = True) -> str:
    """SHA-256 of an object's class, configuration and tensors (see :func:`_feed`); equal runs, equal prints.
    ``weights=False`` hashes networks by architecture only (a diffrep's template network, whose weights the
    parameters replace)."""
    h = hashlib.sha256()
    _feed(h, obj, 0, set(), weights)
    return h.hexdigest()[:16]


def _canon(v) -> str:
    """A setting as a comparable string: numbers and names as written, objects by their settings or print."""
    if hasattr(v, "settings") and callable(v.settings):
        return f"{type(v).__name__}({', '.join(f'{k}={_canon(x)}' for k, x in v.settings().items())})"
    if isinstance(v, (str, int, float, bool, type(None))):
        return repr(v)
    return fingerprint(v)


class CheckpointPlan:
    """Where and when a run saves, and what it resumes from; validated before any work.

    Args:
        path: the checkpoint file to write (None: none). Its folder must exist; an existing file is refused
            unless it is ``resume_from`` or ``overwrite``.
        every: save at the first block boundary at least ``every`` updates after the last save, and at the end.
        resume_from: a checkpoint of an interrupted run with the same settings.
        overwrite: allow ``path`` to replace an existing file.
        settings: the sampler's own settings (compared on resume).
    """

    def __init__(self, path=None, *, every: int = 1, resume_from=None, overwrite: bool = False, settings=None):
        check_int(every, "checkpoint_every")
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
        self.path = None if path is None else Path(path)
        self.every, self.settings = every, dict(settings or {})
        self.resume_from = None if resume_from is None else Path(resume_from)
        self._stored = None
        if self.resume_from is not None:
            self._stored = self._read(self.resume_from)
        if self.path is not None:
            if self.path.is_dir():
                raise ValueError(f"checkpoint_path={str(self.path)!r} is a folder; give a file path inside it")
            folder = self.path.parent
            if not folder.is_dir():
                raise ValueError(f"checkpoint_path={str(self.path)!r}: the folder {str(folder)!r} does not "
                                 f"exist; create it first")
            if not os.access(folder, os.W_OK):
                raise ValueError(f"checkpoint_path={str(self.path)!r}: the folder {str(folder)!r} is not writable")
            resuming_it = self.resume_from is not None and self.path.exists() and \
                self.resume_from.exists() and os.path.samefile(self.path, self.resume_from)
            if self.path.exists() and not (resuming_it or overwrite):
                raise ValueError(f"checkpoint_path={str(self.path)!r} exists and is not the run being resumed: "
                                 f"pass resume_from={str(self.path)!r} to continue it, overwrite=True to "
                                 f"replace it, or another path")

    @staticmethod
    def _read(path: Path) -> dict:
        if not path.is_file():
            raise ValueError(f"resume_from={str(path)!r} is not a checkpoint file (no such file)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- whatever the unpickler raises, the file is not ours
            raise ValueError(f"resume_from={str(path)!r} is not a diffrep-lite checkpoint (it cannot be read as "
                             f"one: {type(e).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"resume_from={str(path)!r} is not a diffrep-lite checkpoint of this version "
                             f"({FORMAT!r}); it was not written by checkpoint_path= of a diffrep-lite sampler")
        return state

    def identity(self, s: Setup, steps: int) -> dict:
        """Every setting of the run as comparable strings (the generator's state before any draw stands for
        the seed)."""
        ident = {"steps": repr(steps), "n": repr(s.n), "seed/generator": fingerprint(s.generator.get_state()),
                 "prior": f"{type(s.prior).__name__} {fingerprint(s.prior)}",
                 "diffrep": "None" if s.diffrep is None else
                 f"{type(s.diffrep).__name__} {fingerprint(s.diffrep, weights=False)}",
                 "params0": "None" if s.params is None else fingerprint(s.params),
                 "cond": "None" if s.item_conds is None else fingerprint(list(s.item_conds)),
                 "guidance_scale": repr(s.guidance_scale), "dtype": str(s.dtype)}
        ident.update({k: _canon(v) for k, v in self.settings.items()})
        return ident

    def begin(self, s: Setup, steps: int) -> None:
        """Fix the run's identity (before any draw) and, when resuming, compare it with the checkpoint's."""
        self._identity = self.identity(s, steps)
        if self._stored is not None:
            old = self._stored.get("identity", {})
            diff = [f"{k}={old.get(k, '(absent)')} in the checkpoint, {k}={v} in this run"
                    for k, v in self._identity.items() if old.get(k) != v]
            diff += [f"{k}={v} in the checkpoint, absent in this run" for k, v in old.items() if k not in self._identity]
            if diff:
                raise ValueError(f"resume_from={str(self.resume_from)!r} was written by a run with other settings; "
                                 f"resume with the same ones. Differences: " + "; ".join(diff))

    def resume(self, s: Setup):
        """The stored state and its update count (the generator is set to the stored state)."""
        from .loop import State

        st = self._stored
        s.generator.set_state(st["generator"])
        dev = dict(device=s.device, dtype=s.dtype)
        state = State(x=st["x"].to(**dev), params=None if st["params"] is None else
                      {k: t.to(**dev) for k, t in st["params"].items()},
                      eps=None if st["eps"] is None else st["eps"].to(**dev), extra=st["extra"])
        return state, int(st["step"])

    def due(self, done: int, last_saved: int, steps: int) -> bool:
        return self.path is not None and (done - last_saved >= self.every or done == steps)

    def save(self, s: Setup, state, step: int) -> None:
        """Write the state after ``step`` updates atomically; the temporary file never outlives an error."""
        tensors = {"x": state.x, **{f"params[{k!r}]": v for k, v in (state.params or {}).items()}}
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise ValueError(f"checkpoint: {name} holds NaN or inf; the checkpoint at {str(self.path)!r} is kept")
        cpu = (lambda t: None if t is None else t.detach().cpu())
        blob = {"format": FORMAT, "identity": self._identity, "step": int(step), "x": cpu(state.x),
                "params": None if state.params is None else {k: cpu(t) for k, t in state.params.items()},
                "eps": cpu(state.eps), "extra": state.extra, "generator": s.generator.get_state()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            torch.save(blob, tmp)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
