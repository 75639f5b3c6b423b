"""Checkpoints of a sampler's state, so an interrupted run can resume and end bit-identical.

A checkpoint is a ``torch.save`` dict holding everything the loop needs: the step index (levels
done), the parameters ``theta``, the per-view noise ``eps``, the random generator's state and the
sampler's settings that must match on resume (method, steps, ``n``). Writes are atomic (a temporary
file, then ``os.replace``), so a run killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path, *, method: str, step: int, steps: int, params: dict, eps: torch.Tensor,
                    generator: torch.Generator, **extra) -> None:
    """Write the sampler state after ``step`` completed levels to ``path`` (tensors moved to the CPU).

    Raises:
        ValueError: ``params`` or ``eps`` hold NaN or inf (the file on disk, if any, is left as it was).
    """
    for name, t in [*((f"params[{k!r}]", v) for k, v in params.items()), ("eps", eps)]:
        if not torch.isfinite(t).all():
            raise ValueError(f"save_checkpoint: {name} holds NaN or inf; the checkpoint at {str(path)!r} is kept")
    state = {"method": method, "step": int(step), "steps": int(steps),
             "params": {k: t.detach().cpu() for k, t in params.items()}, "eps": eps.detach().cpu(),
             "generator": generator.get_state(), **extra}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, *, method: str, steps: int, n: int, eps_shape, param_shapes: dict) -> dict:
    """Read and validate a checkpoint written by :func:`save_checkpoint` for a run of ``method`` with
    ``steps`` levels, ``n`` samples, noise of ``eps_shape`` and parameters of ``param_shapes`` (per sample).

    Raises:
        ValueError: missing file, or a checkpoint from a different method / steps / batch / shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"resume_from={str(path)!r} is not a checkpoint file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("method") != method:
        raise ValueError(f"resume_from holds a {state.get('method')!r} checkpoint, not {method!r}")
    if state["steps"] != steps:
        raise ValueError(f"resume_from was written by a run with steps={state['steps']}, this run has steps={steps}")
    if tuple(state["eps"].shape) != tuple(eps_shape):
        raise ValueError(f"resume_from's noise has shape {list(state['eps'].shape)}, this run needs {list(eps_shape)} "
                         f"(n={n})")
    got = {k: tuple(t.shape[1:]) for k, t in state["params"].items()}
    want = {k: tuple(v) for k, v in param_shapes.items()}
    if got != want:
        raise ValueError(f"resume_from's parameters {got} do not match the diffrep's {want}")
    if not 0 <= state["step"] <= steps:
        raise ValueError(f"resume_from has step {state['step']}, outside [0, {steps}]")
    return state
