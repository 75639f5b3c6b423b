"""A pixel-space prior from any diffusers ``UNet2DModel`` checkpoint (DDPM-style, optionally class-conditional).

A diffusers UNet is trained in the VP form ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` at integer
ticks ``t``. The samplers of diffrep-lite hand the prior VE inputs ``x = x0 + sigma eps``; the wrapper
converts them (``x_t = x / sqrt(1 + sigma^2)``, since ``abar = 1 / (1 + sigma^2)``), evaluates the UNet at
the training tick whose ``sigma_t`` is nearest to ``sigma`` (in log-sigma) and returns the noise prediction.

Class conditioning (``num_class_embeds`` in the UNet config): ``cond`` holds one integer label per input.
Classifier-free guidance needs a *null* label the model was trained on (labels dropped to it with some
probability), and mixes the two predictions as

    eps = eps_u + s (eps_c - eps_u),      eps_u = eps(x | null),  eps_c = eps(x | label),

so ``s = 0`` is the unconditional model, ``s = 1`` the conditional one, ``s > 1`` over-weights the class.

Clipping (``clip_sample``, read from the checkpoint's scheduler config like diffusers' DDPM/DDIM
pipelines do): the implied clean image ``x0_hat = x - sigma eps`` is clamped to
``[-clip_sample_range, clip_sample_range]`` and the returned noise is made consistent with it,
``eps <- (x - clamp(x0_hat)) / sigma`` (diffusers' ``use_clipped_model_output=True``). This matters at
the top of a cosine schedule, where ``sigma_max ~ 1e4`` turns a tiny network error into a huge
``x0_hat``; the clamp keeps every sampler's first step in the data range.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..schedule import Schedule, check_prediction_type, eps_from_prediction, ve_to_vp
from ..validation import check_bool, check_dtype, resolve_model_source
from .base import Prior, classifier_free_guidance

__all__ = ["UNetPrior"]

_SIDECAR = "diffrep_lite.json"  # optional {"null_label": int, "class_names": [...], "view_conditioned": bool}


def _check_options(cfg, *, null_label, resolution, batch_size, clip_sample, clip_sample_range=1.0):
    """Check the wrapper's options against a UNet2DModel config (a dict; no weights needed), so that
    :meth:`UNetPrior.from_pretrained` can refuse them before loading. Returns ``(num_classes, downsample_factor,
    native_resolution, resolution)``."""
    if cfg.get("class_embed_type") is not None:
        raise ValueError(
            f"class_embed_type={cfg.get('class_embed_type')!r} is not supported; only integer class labels "
            "(num_class_embeds with class_embed_type=None) are"
        )
    num_classes = None if cfg.get("num_class_embeds") is None else int(cfg["num_class_embeds"])
    if null_label is not None:
        if num_classes is None:
            raise ValueError("null_label was given, but the UNet is unconditional (num_class_embeds is None)")
        if isinstance(null_label, bool) or not isinstance(null_label, int) or not 0 <= null_label < num_classes:
            raise ValueError(f"null_label must be an int in [0, {num_classes}), got {null_label!r}")
    downsample_factor = 2 ** (len(cfg["block_out_channels"]) - 1)
    native = cfg["sample_size"] if isinstance(cfg["sample_size"], int) else cfg["sample_size"][0]
    if resolution is None:
        resolution = native
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1 \
            or resolution % downsample_factor:
        raise ValueError(
            f"resolution {resolution!r} is not supported by this UNet: it must be a positive multiple of "
            f"{downsample_factor} (2^(number of down blocks - 1)); the model was trained at {native}"
        )
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if clip_sample is not None and not isinstance(clip_sample, bool):
        raise TypeError(f"clip_sample must be True or False, got {clip_sample!r}")
    if isinstance(clip_sample_range, bool) or not isinstance(clip_sample_range, (int, float)) \
            or not clip_sample_range > 0:
        raise ValueError(f"clip_sample_range must be a number > 0, got {clip_sample_range!r}")
    return num_classes, downsample_factor, native, resolution


class UNetPrior(Prior):
    """Wrap a diffusers ``UNet2DModel`` and its training schedule as a :class:`~diffrep_lite.priors.Prior`.

    Args:
        unet: a ``diffusers.UNet2DModel`` (weights frozen, put in eval mode here).
        schedule: the training :class:`~diffrep_lite.schedule.Schedule` (e.g. ``Schedule.from_config``).
        prediction_type: what the network predicts: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        null_label: the class label meaning "no class" (for classifier-free guidance), or None when the
            model has none; then ``guidance_scale`` is refused. Must lie in ``[0, num_class_embeds)``.
        resolution: side length of the images to work at (default: the UNet's ``sample_size``). Must be
            a multiple of ``2 ** (len(block_out_channels) - 1)`` so that the down/up-sampling matches.
        batch_size: evaluate the UNet on at most this many inputs at once (None: all in one call).
        clip_sample: clamp ``x0_hat`` to ``[-clip_sample_range, clip_sample_range]`` (see the module
            docstring); :meth:`from_pretrained` takes both from the scheduler config.
        clip_sample_range: the data range bound (> 0), 1.0 for images in ``[-1, 1]``.
        view_conditioned: the class labels are view conditions (e.g. azimuth bins), so a diffrep's per-view
            conditions (``view_conds()``, ints) may be fed to it; False (default) refuses such diffreps, whose
            crop offsets or camera indices would otherwise be read as class labels.
        dtype, device: where the network runs; inputs must match (``torch.float16`` is for CUDA).

    Attributes:
        data_shape: ``(in_channels, resolution, resolution)``.
        conditional: the UNet has a class embedding (then ``cond`` must be integer labels).
        num_classes: ``num_class_embeds`` (None for an unconditional UNet).
        supports_guidance: conditional and a ``null_label`` is known.

    Raises:
        TypeError: ``unet`` is not a ``UNet2DModel``, ``schedule`` not a ``Schedule``.
        ValueError: unsupported class embedding, bad ``null_label``, ``resolution``, ``prediction_type``
            or ``batch_size``.
    """

    cfg_passes = 2

    def __init__(self, unet, schedule: Schedule, *, prediction_type: str = "epsilon", null_label: int | None = None,
                 resolution: int | None = None, batch_size: int | None = None, clip_sample: bool = False,
                 clip_sample_range: float = 1.0, view_conditioned: bool = False, dtype=torch.float32, device="cpu"):
        from diffusers import UNet2DModel

        check_dtype(dtype)
        check_bool(view_conditioned, "view_conditioned")

        if not isinstance(unet, UNet2DModel):
            raise TypeError(f"unet must be a diffusers UNet2DModel, got {type(unet).__name__}")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a diffrep_lite.Schedule, got {type(schedule).__name__}")
        check_prediction_type(prediction_type)
        cfg = unet.config
        self.num_classes, self.downsample_factor, native, resolution = _check_options(
            cfg, null_label=null_label, resolution=resolution, batch_size=batch_size, clip_sample=clip_sample,
            clip_sample_range=clip_sample_range)
        self.conditional = self.num_classes is not None
        self.null_label = null_label
        self.supports_guidance = null_label is not None
        self.view_conditioned = view_conditioned
        self.view_cond_types = (int,) if view_conditioned and self.conditional else ()
        self.guidance_refusal = "" if self.supports_guidance else "the UNet is unconditional" if not self.conditional \
            else "the model has no null (unconditional) class label; pass null_label= if it was trained with one"
        self.clip_sample, self.clip_sample_range = clip_sample, float(clip_sample_range)
        self.native_resolution, self.resolution = int(native), int(resolution)
        self.batch_size = batch_size
        self.prediction_type = prediction_type
        self.schedule = schedule
        self.dtype, self.device = dtype, torch.device(device)
        self.data_shape = (int(cfg.in_channels), self.resolution, self.resolution)
        unet = unet.to(self.device)
        if next(unet.parameters()).dtype != dtype:
            unet = unet.to(dtype)
        self.unet = unet.eval().requires_grad_(False)
        self._sigmas = schedule.sigmas.to(self.device)  # VE level of every training tick
        self.class_names = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_id_or_path, *, device="cpu", dtype=torch.float32, null_label: int | None = None,
                        resolution: int | None = None, batch_size: int | None = None,
                        clip_sample: bool | None = None, subfolder: str | None = None,
                        **kwargs) -> "UNetPrior":
        """Load a ``UNet2DModel`` and its scheduler config from a local directory or the Hugging Face hub.

        Layouts: a model directory (``config.json`` + weights + ``scheduler_config.json``) or a pipeline
        directory (``model_index.json`` with ``unet/`` and ``scheduler/``). A ``diffrep_lite.json`` next to
        ``config.json`` may give ``null_label`` (used when the argument is None), ``class_names`` and
        ``view_conditioned`` (see :class:`UNetPrior`).

        Args:
            model_id_or_path: a local directory, or a hub id such as ``"google/ddpm-cifar10-32"``.
            device, dtype: where the network runs.
            null_label, resolution, batch_size: see :class:`UNetPrior`.
            clip_sample: None (default) follows the scheduler config's ``clip_sample``; True/False overrides.
            subfolder: force the subfolder holding the UNet (default: ``unet/`` if present, else the root).
            **kwargs: passed to ``UNet2DModel.from_pretrained`` (e.g. ``revision``).

        Raises:
            ValueError: a local-looking path that does not exist, a hub id that is not available offline (no
                network or ``HF_HUB_OFFLINE=1``, and not cached) — both before anything is loaded, see
                :func:`~diffrep_lite.validation.resolve_model_source` — or a folder that is not a diffusers
                ``UNet2DModel`` or lacks a scheduler config.
            TypeError: ``dtype`` is not a floating ``torch.dtype`` (e.g. the string ``"float16"``).
        """
        from diffusers import DDPMScheduler, UNet2DModel

        check_dtype(dtype)
        name, local_only = resolve_model_source(model_id_or_path, local_files_only=kwargs.get("local_files_only"),
                                                cache_file=("config.json", "unet/config.json"))
        if not os.path.isdir(name):
            kwargs.setdefault("local_files_only", local_only)
            return cls._from_hub(name, device=device, dtype=dtype, null_label=null_label, resolution=resolution,
                                 batch_size=batch_size, clip_sample=clip_sample, subfolder=subfolder, **kwargs)

        root = Path(name)
        if subfolder is None:
            subfolder = "unet" if (root / "unet" / "config.json").is_file() else ""
        udir = root / subfolder if subfolder else root
        cfg_file = udir / "config.json"
        if not cfg_file.is_file():
            raise ValueError(f"{str(root)!r} is not a diffusers model directory: no config.json in {str(udir)!r}")
        with open(cfg_file) as f:
            ucfg = json.load(f)
        if ucfg.get("_class_name") != "UNet2DModel":
            hint = " (use diffrep_lite.priors.StableDiffusionPrior for Stable Diffusion)" \
                if ucfg.get("_class_name") == "UNet2DConditionModel" else ""
            raise ValueError(f"{str(udir)!r} holds a {ucfg.get('_class_name')!r}, not a diffusers UNet2DModel{hint}")
        sched_file = next((p for p in (root / "scheduler" / "scheduler_config.json", udir / "scheduler_config.json",
                                       root / "scheduler_config.json") if p.is_file()), None)
        if sched_file is None:
            raise ValueError(f"{str(root)!r} has no scheduler_config.json (in scheduler/ or next to config.json)")
        sched_cfg = DDPMScheduler.load_config(str(sched_file.parent))
        side = {}
        if (udir / _SIDECAR).is_file():
            with open(udir / _SIDECAR) as f:
                side = json.load(f)
        if {"block_out_channels", "sample_size"} <= set(ucfg):  # a saved config lists both; check before loading
            _check_options(ucfg, null_label=side.get("null_label") if null_label is None else null_label,
                           resolution=resolution, batch_size=batch_size, clip_sample=clip_sample)
        kwargs.setdefault("torch_dtype", dtype)
        unet = UNet2DModel.from_pretrained(str(udir), **kwargs)
        return cls._build(unet, sched_cfg, side, device=device, dtype=dtype, null_label=null_label,
                          resolution=resolution, batch_size=batch_size, clip_sample=clip_sample)

    @classmethod
    def _from_hub(cls, repo, *, device, dtype, null_label, resolution, batch_size, clip_sample, subfolder,
                  **kwargs):
        from diffusers import DDPMScheduler, UNet2DModel

        kwargs.setdefault("torch_dtype", dtype)
        local = bool(kwargs.get("local_files_only", False))
        try:
            if subfolder is None:
                try:
                    unet = UNet2DModel.from_pretrained(repo, subfolder="unet", **kwargs)
                    subfolder = "unet"
                except (OSError, EnvironmentError):
                    unet = UNet2DModel.from_pretrained(repo, **kwargs)
                    subfolder = ""
            else:
                unet = UNet2DModel.from_pretrained(repo, subfolder=subfolder or None, **kwargs)
            try:
                sched_cfg = DDPMScheduler.load_config(repo, subfolder="scheduler", local_files_only=local)
            except (OSError, EnvironmentError):
                sched_cfg = DDPMScheduler.load_config(repo, subfolder=subfolder or None, local_files_only=local)
        except (OSError, EnvironmentError) as e:
            raise ValueError(f"could not load a diffusers UNet2DModel + scheduler from the hub id {repo!r}: {e}") from e
        return cls._build(unet, sched_cfg, {}, device=device, dtype=dtype, null_label=null_label,
                          resolution=resolution, batch_size=batch_size, clip_sample=clip_sample)

    @classmethod
    def _build(cls, unet, sched_cfg, side, *, device, dtype, null_label, resolution, batch_size, clip_sample):
        sched_cfg = dict(sched_cfg)
        pred = sched_cfg.get("prediction_type", "epsilon")
        if null_label is None:
            null_label = side.get("null_label")
        if clip_sample is None:
            clip_sample = bool(sched_cfg.get("clip_sample", False))
        prior = cls(unet, Schedule.from_config(sched_cfg), prediction_type=pred, null_label=null_label,
                    view_conditioned=bool(side.get("view_conditioned", False)),
                    resolution=resolution, batch_size=batch_size, clip_sample=clip_sample,
                    clip_sample_range=float(sched_cfg.get("clip_sample_range", 1.0)), dtype=dtype, device=device)
        prior.class_names = side.get("class_names")
        return prior

    # ------------------------------------------------------------------ protocol
    def check_cond(self, cond, batch=None):
        """``cond`` must be None or ``batch`` integer labels in ``[0, num_classes)`` (a list or int tensor);
        None only when the model is unconditional or has a null label."""
        super().check_cond(cond, batch)
        if cond is None:
            if self.conditional and self.null_label is None:
                raise ValueError("this UNet is class-conditional and has no null label: pass cond "
                                 f"(one int label in [0, {self.num_classes}) per input)")
            return
        self._labels(cond)

    def _labels(self, cond) -> torch.Tensor:
        if isinstance(cond, torch.Tensor):
            if cond.dtype.is_floating_point or cond.dtype == torch.bool or cond.ndim != 1:
                raise TypeError(f"cond must hold integer class labels, got a {cond.dtype} tensor of shape "
                                f"{list(cond.shape)}")
            lab = cond.to(torch.long)
        else:
            vals = []
            for c in cond:
                if isinstance(c, torch.Tensor) and c.ndim == 0 and not c.dtype.is_floating_point \
                        and c.dtype != torch.bool:
                    c = int(c)
                elif hasattr(c, "__index__") and not isinstance(c, bool):
                    c = int(c.__index__())
                else:
                    raise TypeError(f"cond must hold integer class labels in [0, {self.num_classes}), got {c!r} "
                                    f"({type(c).__name__}); this UNet is class-conditional, not text-conditional")
                vals.append(c)
            lab = torch.tensor(vals, dtype=torch.long)
        if lab.numel() and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ValueError(f"cond labels must lie in [0, {self.num_classes}), got {lab.tolist()}")
        return lab.to(self.device)

    def _net_eps(self, xt, t, labels, sigma_t):
        """One UNet call on VP inputs, converted to an epsilon prediction at the tick's noise level ``sigma_t``."""
        out = self.unet(xt, t, class_labels=labels).sample
        if out.shape[1] != xt.shape[1]:  # learned-variance models output 2C channels: keep the mean part
            out = out[:, : xt.shape[1]]
        return eps_from_prediction(out, xt, sigma_t, self.prediction_type)

    def _eps(self, x, sigma, cond, guidance_scale):
        """``cond``: None (unconditional: the null label if there is one) or one int label per input.
        ``guidance_scale``: None (no guidance) or ``s >= 0`` for :func:`~diffrep_lite.priors.base.mix_guidance`;
        needs a ``null_label`` (checked by :meth:`Prior.eps`) and a ``cond``."""
        if guidance_scale is not None and cond is None:
            raise ValueError("guidance_scale needs class labels: pass cond (one int label per input)")
        B = x.shape[0]
        t = self.schedule.timestep_of(sigma).to(self.device)  # nearest training tick, [B]
        xt = ve_to_vp(x, sigma)
        sigma_t = self._sigmas[t].to(x.dtype)
        labels = null = None
        if self.conditional:
            null = torch.full((B,), self.null_label if self.null_label is not None else 0, dtype=torch.long,
                              device=self.device)
            labels = null if cond is None else self._labels(cond)  # check_cond made sure there is a null label

        def eps_of(*labs):
            n = len(labs)
            return self._chunked(xt.repeat(n, 1, 1, 1), t.repeat(n), None if labs[0] is None else torch.cat(labs),
                                 sigma_t.repeat(n))

        e = classifier_free_guidance(eps_of, labels, null, guidance_scale if self.conditional else None)
        if self.clip_sample:  # clamp x0_hat = x - sigma eps to the data range, keep eps consistent with it
            sig = sigma.to(x.dtype).reshape(B, 1, 1, 1)
            r = self.clip_sample_range
            e = (x - (x - sig * e).clamp(-r, r)) / sig
        return e

    def _chunked(self, xt, t, labels, sigma_t):
        bs = self.batch_size or xt.shape[0]
        outs = []
        with torch.no_grad():
            for i in range(0, xt.shape[0], bs):
                lab = None if labels is None else labels[i:i + bs]
                outs.append(self._net_eps(xt[i:i + bs], t[i:i + bs], lab, sigma_t[i:i + bs]))
        return torch.cat(outs)

    def __repr__(self):
        n = sum(p.numel() for p in self.unet.parameters())
        return (f"UNetPrior(data_shape={self.data_shape}, params={n:,}, classes={self.num_classes}, "
                f"null_label={self.null_label}, prediction_type={self.prediction_type!r}, "
                f"clip_sample={self.clip_sample}, device={self.device}, "
                f"dtype={self.dtype})")

