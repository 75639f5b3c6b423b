"""Stable Diffusion as a diffrep-lite prior: text-conditioned noise prediction on VAE latents.

The data space is SD's latent space, ``data_shape = (4, h, w)`` (``h = height / 8`` for SD 1.x/2.x).
A diffrep renders *latents* (e.g. a SIREN with 4 output channels, as SJC renders NeRF latents);
:meth:`StableDiffusionPrior.decode` turns them into RGB images for display.

**VE -> VP.** Samplers pass ``x = x0 + sigma * eps`` (VE). SD's UNet was trained on
``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``. With ``abar = 1 / (1 + sigma^2)`` the network input is
``x_t = x / sqrt(1 + sigma^2)``, and the UNet is told the training tick whose noise level is nearest
to ``sigma`` (in log-sigma; on the sampler grids ``sigma`` *is* a tick, so the match is exact). The
noise ``eps`` is the same in both forms, so an epsilon-prediction network's output is used as is.

**v-prediction** (SD 2.x 768 checkpoints, ``prediction_type="v_prediction"`` in the scheduler config):
the UNet returns ``v = a eps - b x0`` with ``a = sqrt(abar)``, ``b = sqrt(1 - abar)``, and since
``x_t = a x0 + b eps`` the noise is exactly ``eps = a v + b x_t`` (``a^2 + b^2 = 1``).
``prediction_type="sample"`` gives ``eps = (x_t - a x0_hat) / b``.

**Classifier-free guidance** with scale ``s``: ``eps = eps_u + s (eps_c - eps_u)`` where ``eps_c`` is
conditioned on the prompt and ``eps_u`` on the negative prompt (default ``""``, the unconditional
embedding SD was trained with). ``s = 1`` (or ``guidance_scale=None``) is the conditional model, one
UNet pass; ``s = 0`` the unconditional one, one pass; any other ``s`` runs both in one batch
(``cfg_passes = 2``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..schedule import Schedule, check_prediction_type, eps_from_prediction, ve_to_vp
from ..validation import resolve_model_source
from .base import Prior, classifier_free_guidance

__all__ = ["StableDiffusionPrior", "resolve_model_id", "hf_progress_bars"]

_SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def resolve_model_id(model_id_or_path, *, local_files_only: bool | None = None) -> tuple[str, bool]:
    """Check that ``model_id_or_path`` names a loadable Stable Diffusion pipeline, before loading anything.

    Returns ``(model, offline)``: the folder or hub id as a string, and whether loading must stay local.

    Raises:
        TypeError: not a ``str`` / ``os.PathLike``.
        ValueError: an existing path that is not a pipeline folder (``model_index.json`` and the
            ``unet/ vae/ text_encoder/ tokenizer/ scheduler/`` subfolders), a string that is neither an
            existing folder nor a hub id ``"org/name"``, or a hub id that is not in the local Hugging Face
            cache while offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) or with no network; see
            :func:`~diffrep_lite.validation.resolve_model_source`.
    """
    model, local_only = resolve_model_source(model_id_or_path, local_files_only=local_files_only,
                                             cache_file="model_index.json")
    p = Path(model)
    if p.is_dir():
        missing = [s for s in _SD_SUBFOLDERS if not (p / s).is_dir()]
        if missing or not (p / "model_index.json").is_file():
            raise ValueError(
                f"model_id_or_path={model_id_or_path!r} is not a Stable Diffusion pipeline folder: it lacks "
                f"{(['model_index.json'] if not (p / 'model_index.json').is_file() else []) + [m + '/' for m in missing]}")
    return model, local_only


@contextlib.contextmanager
def hf_progress_bars(enabled: bool):
    """Temporarily switch the diffusers / transformers loading and saving progress bars on or off
    (restored afterwards), so notebooks stay clean."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    before = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    for mod in (dlog, tlog):
        (mod.enable_progress_bar if enabled else mod.disable_progress_bar)()
    try:
        yield
    finally:
        for mod, on in zip((dlog, tlog), before):
            (mod.enable_progress_bar if on else mod.disable_progress_bar)()


def _dtype_kwarg(dtype) -> dict:
    """``dtype=`` for diffusers versions that renamed ``torch_dtype`` (it warns there), else ``torch_dtype=``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present since the rename)
        return {"dtype": dtype}
    except ImportError:
        return {"torch_dtype": dtype}


def _latent_size(height, width, latent_size, vae_scale, default_latent):
    if latent_size is not None and (height is not None or width is not None):
        raise ValueError("pass either latent_size or height/width (pixels), not both")
    if latent_size is not None:
        hw = (latent_size, latent_size) if isinstance(latent_size, int) else tuple(latent_size)
        if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
            raise ValueError(f"latent_size must be a positive int or a pair (h, w) of positive ints, got {latent_size!r}")
        return hw
    if height is None and width is None:
        return default_latent
    height = width if height is None else height
    width = height if width is None else width
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < vae_scale or v % vae_scale:
            raise ValueError(
                f"{name} must be a positive multiple of the VAE's scale factor {vae_scale} (pixels), got {v!r}; "
                f"this model supports {vae_scale}, {2 * vae_scale}, ... (latent side = {name} / {vae_scale})")
    return height // vae_scale, width // vae_scale


class StableDiffusionPrior(Prior):
    """A Stable Diffusion UNet (+ text encoder, + VAE for display) as a latent-space prior.

    Build it with :meth:`from_pretrained` (a local pipeline folder or a hub id), :meth:`from_pipeline`, or
    :meth:`from_components` (a UNet, a scheduler config and text embeddings or a text encoder; VAE optional).

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        vae: the ``AutoencoderKL`` (only used by :meth:`decode` / :meth:`encode`), or None.
        text_encoder, tokenizer: the CLIP text model and its tokenizer, or None with ``embeddings``.
        scheduler_config: the pipeline's scheduler config (gives the training ``alphas_cumprod`` and the
            ``prediction_type``: ``epsilon``, ``v_prediction`` or ``sample``).
        latent_size: ``(h, w)`` of the latents; defaults to the UNet's ``sample_size``.
        negative_prompt: the text of the unconditional branch of classifier-free guidance (default ``""``).
        batch_size: largest number of UNet inputs per forward pass (CFG counts twice); None = all at once.
        embeddings: ``{prompt: [L, D]}`` precomputed text embeddings (used before the text encoder; the only
            prompts available without one).
        vae_scale_factor: pixels per latent for ``height``/``width`` when there is no VAE (default 8).

    Attributes:
        data_shape: ``(C, h, w)`` latent shape (``C = 4`` for SD). ``height``, ``width``: pixel size of a
            decoded image. ``dtype``: float32, the dtype of the inputs and outputs of :meth:`eps` (the
            samplers' working precision); ``weights_dtype``: the networks' dtype (float16 on CUDA by default).

    A prompt is required (``cond``: one string per input; ``""`` is the unconditional model).
    """

    conditional = True
    supports_guidance = True
    view_cond_types = (str,)  # prompt suffixes ("side view"), joined to the prompt by combine_cond
    cfg_passes = 2

    def __init__(self, unet, vae=None, text_encoder=None, tokenizer=None, scheduler_config=None, *, latent_size=None,
                 negative_prompt: str = "", batch_size: int | None = None, embeddings: dict | None = None,
                 vae_scale_factor: int | None = None):
        ucfg = unet.config
        if getattr(ucfg, "addition_embed_type", None) is not None or getattr(ucfg, "time_cond_proj_dim", None):
            raise ValueError("this UNet needs extra conditioning inputs (SDXL / LCM style); StableDiffusionPrior "
                             "supports SD 1.x / 2.x UNets (text cross-attention only)")
        if scheduler_config is None:
            raise ValueError("scheduler_config is required (the pipeline's scheduler config: betas, prediction_type)")
        if vae is not None and ucfg.in_channels != vae.config.latent_channels:
            raise ValueError(f"the UNet takes {ucfg.in_channels} input channels but the VAE has "
                             f"{vae.config.latent_channels} latent channels (inpainting UNets are not supported)")
        if (text_encoder is None) != (tokenizer is None):
            raise ValueError("pass text_encoder and tokenizer together (or neither, with embeddings=)")
        if text_encoder is None and not embeddings:
            raise ValueError("pass a text_encoder and tokenizer, or embeddings={prompt: [L, D] tensor} for every "
                             "prompt the prior will see (the negative prompt, '' by default, included)")
        cfg = dict(scheduler_config)
        self.prediction_type = check_prediction_type(cfg.get("prediction_type", "epsilon"),
                                                     "scheduler prediction_type")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        for m in (unet, vae, text_encoder):
            if m is not None:
                m.eval().requires_grad_(False)
        self.schedule = Schedule.from_config(cfg)
        if vae is not None:
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        else:
            self.vae_scale_factor = 8 if vae_scale_factor is None else int(vae_scale_factor)
        h, w = _latent_size(None, None, latent_size, self.vae_scale_factor, (ucfg.sample_size, ucfg.sample_size)
                            if isinstance(ucfg.sample_size, int) else tuple(ucfg.sample_size))
        self.data_shape = (ucfg.in_channels, h, w)
        self.height, self.width = h * self.vae_scale_factor, w * self.vae_scale_factor
        self.device = unet.device
        self.weights_dtype = unet.dtype
        self.dtype = torch.float32
        self.negative_prompt = negative_prompt
        self.batch_size = batch_size
        self._embeddings: dict[str, torch.Tensor] = {}
        for prompt, e in (embeddings or {}).items():
            if not isinstance(prompt, str):
                raise TypeError(f"embeddings keys must be prompts (str), got {type(prompt).__name__}")
            e = torch.as_tensor(e)
            dim = ucfg.cross_attention_dim
            if e.ndim != 2 or (isinstance(dim, int) and e.shape[-1] != dim):
                raise ValueError(f"embeddings[{prompt!r}] must be [L, {ucfg.cross_attention_dim}] (the UNet's "
                                 f"cross_attention_dim), got {list(e.shape)}")
            self._embeddings[prompt] = e.to(self.device, self.weights_dtype)

    @classmethod
    def from_components(cls, unet, scheduler_config, *, embeddings: dict | None = None, text_encoder=None,
                        tokenizer=None, vae=None, **kwargs) -> "StableDiffusionPrior":
        """Build the prior from its parts, without a pipeline folder (benchmarks, tests, custom UNets).

        Args:
            unet: a diffusers ``UNet2DConditionModel`` (weights on the device and in the dtype to use).
            scheduler_config: a scheduler config dict (``DDIMScheduler(...).config``, or read from a pipeline).
            embeddings: ``{prompt: [L, D]}`` text embeddings for every prompt that will be used, the negative
                prompt (``""`` by default) included, when there is no text encoder. Or:
            text_encoder, tokenizer: a CLIP text model and tokenizer (e.g. the tiny ones of
                :func:`~diffrep_lite.testing.make_tiny_stable_diffusion`); prompts are encoded on first use.
            vae: optional ``AutoencoderKL``; without one :meth:`decode` / :meth:`encode` raise, and the pixel size
                assumes ``vae_scale_factor`` (keyword, default 8 as in SD).
            kwargs: ``latent_size``, ``negative_prompt``, ``batch_size``, ``vae_scale_factor`` as for the class.
        """
        return cls(unet, vae, text_encoder, tokenizer, scheduler_config, embeddings=embeddings, **kwargs)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, model_id_or_path, *, device="cpu", dtype=None, height: int | None = None,
                        width: int | None = None, latent_size=None, negative_prompt: str = "",
                        batch_size: int | None = None, local_files_only: bool | None = None,
                        progress: bool = False, **pipeline_kwargs) -> "StableDiffusionPrior":
        """Load a Stable Diffusion pipeline (local folder or hub id) as a prior.

        Args:
            model_id_or_path: a diffusers pipeline folder (``model_index.json`` + ``unet/``, ``vae/``,
                ``text_encoder/``, ``tokenizer/``, ``scheduler/``) or a hub id such as
                ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``. Checked before anything is loaded.
            device: ``"cpu"``, ``"cuda"``, ... dtype: the networks' dtype; default float16 on CUDA, float32
                elsewhere (the samplers always work in float32).
            height, width: pixel size of the decoded images (multiples of the VAE factor, 8 for SD);
                or ``latent_size``: ``h`` or ``(h, w)`` of the latents. Default: the UNet's ``sample_size``
                (64 latents = 512 px for SD 1.5).
            negative_prompt: text of the unconditional CFG branch. batch_size: see the class.
            local_files_only: force offline loading (default: offline iff ``HF_HUB_OFFLINE`` is set).
            progress: show diffusers' / transformers' loading progress bars.
            pipeline_kwargs: passed to ``StableDiffusionPipeline.from_pretrained`` (e.g. ``variant="fp16"``).

        Raises:
            ValueError: unknown folder / hub id (see :func:`resolve_model_id`), a resolution the model does
                not support, a config the prior cannot use — all before the weights are loaded.
        """
        model, offline = resolve_model_id(model_id_or_path, local_files_only=local_files_only)
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype (torch.float16, torch.bfloat16, torch.float32), got {dtype!r}")
        from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

        # Read the configs only (no weights) to validate the resolution first.
        vcfg = AutoencoderKL.load_config(model, subfolder="vae", local_files_only=offline)
        ucfg = UNet2DConditionModel.load_config(model, subfolder="unet", local_files_only=offline)
        vae_scale = 2 ** (len(vcfg["block_out_channels"]) - 1)
        s = ucfg.get("sample_size", 64)
        size = _latent_size(height, width, latent_size, vae_scale, (s, s) if isinstance(s, int) else tuple(s))
        with hf_progress_bars(progress):
            pipe = StableDiffusionPipeline.from_pretrained(
                model, **_dtype_kwarg(dtype), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False, local_files_only=offline, **pipeline_kwargs)
        pipe = pipe.to(device)
        return cls.from_pipeline(pipe, latent_size=size, negative_prompt=negative_prompt, batch_size=batch_size)

    @classmethod
    def from_pipeline(cls, pipe, *, latent_size=None, height: int | None = None, width: int | None = None,
                      negative_prompt: str = "", batch_size: int | None = None) -> "StableDiffusionPrior":
        """Wrap the components of an already loaded ``StableDiffusionPipeline`` (no copy)."""
        vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        s = pipe.unet.config.sample_size
        size = _latent_size(height, width, latent_size, vae_scale, (s, s) if isinstance(s, int) else tuple(s))
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler.config, latent_size=size,
                   negative_prompt=negative_prompt, batch_size=batch_size)

    # ------------------------------------------------------------------ conditions
    def check_cond(self, cond, batch: int | None = None):
        """A prompt (``str``) per input is required: ``cond=None`` raises (use ``""`` for unconditional)."""
        if cond is None:
            raise ValueError("StableDiffusionPrior needs a text prompt: pass cond='a photo of ...' (one string, or one "
                             "per sample); cond='' samples the unconditional model")
        super().check_cond(cond, batch)
        bad = [c for c in cond if not isinstance(c, str)]
        if bad:
            raise TypeError(f"cond must hold text prompts (str) for Stable Diffusion, got {type(bad[0]).__name__} {bad[0]!r}")

    def combine_cond(self, cond, view_cond):
        """View-dependent prompt: ``"prompt, view_suffix"`` (e.g. ``"a cat, side view"``); a missing part is skipped."""
        parts = [c for c in (cond, view_cond) if c]
        return ", ".join(parts)

    @property
    def negative_prompt(self) -> str:
        """Text of the unconditional branch of classifier-free guidance."""
        return self._negative_prompt

    @negative_prompt.setter
    def negative_prompt(self, value):
        if not isinstance(value, str):
            raise TypeError(f"negative_prompt must be a str, got {type(value).__name__}")
        self._negative_prompt = value

    @torch.no_grad()
    def embed(self, prompts) -> torch.Tensor:
        """CLIP text embeddings ``[B, L, D]`` (weights dtype, on the device) of a list of prompts.

        Each distinct prompt is encoded once and cached (``L = tokenizer.model_max_length``, 77 for SD),
        padded to ``max_length`` as in ``StableDiffusionPipeline.encode_prompt``.
        """
        new = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if new and self.text_encoder is None:
            raise ValueError(f"no text encoder and no embedding for the prompt {new[0]!r}: pass it in embeddings= "
                             f"(known prompts: {sorted(self._embeddings)})")
        if new:
            tok = self.tokenizer(new, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")
            mask = tok.attention_mask.to(self.device) if getattr(self.text_encoder.config, "use_attention_mask", False) else None
            out = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
            for p, e in zip(new, out.to(self.weights_dtype)):
                self._embeddings[p] = e
        return torch.stack([self._embeddings[p] for p in prompts])

    # ------------------------------------------------------------------ the network call
    def _unet_eps(self, x_vp, t, emb, sigma) -> torch.Tensor:
        """One UNet pass on VP inputs ``x_vp`` ``[B, C, h, w]``; returns the noise ``eps`` in float32."""
        bs = self.batch_size or x_vp.shape[0]
        out = torch.cat([
            self.unet(x_vp[i:i + bs].to(self.weights_dtype), t[i:i + bs], encoder_hidden_states=emb[i:i + bs]).sample
            for i in range(0, x_vp.shape[0], bs)]).to(x_vp.dtype)
        return eps_from_prediction(out, x_vp, sigma, self.prediction_type)

    def _eps(self, x, sigma, cond, guidance_scale):
        t = self.schedule.timestep_of(sigma).to(self.device)
        x_vp = ve_to_vp(x, sigma)

        def eps_of(*prompts):  # one list of B prompts per copy of the inputs
            n = len(prompts)
            return self._unet_eps(x_vp.repeat(n, 1, 1, 1), t.repeat(n), self.embed([p for ps in prompts for p in ps]),
                                  sigma.repeat(n))

        negative = [self.negative_prompt] * x.shape[0]
        return classifier_free_guidance(eps_of, list(cond), negative,
                                        None if guidance_scale is None else float(guidance_scale))

    # ------------------------------------------------------------------ display
    @torch.no_grad()
    def decode(self, x: torch.Tensor, *, value_range=(0.0, 1.0), batch_size: int = 8) -> torch.Tensor:
        """Decode latents ``[B, C, h, w]`` with the VAE to RGB images ``[B, 3, height, width]`` (float32, CPU
        tensors stay on their device).

        The latents are divided by the VAE's ``scaling_factor`` (0.18215 for SD 1.x, from the VAE config;
        ``shift_factor`` is added back where the config has one) before ``vae.decode``.

        Args:
            value_range: ``(0, 1)`` (default; display-ready, ``image / 2 + 1/2`` clamped) or ``(-1, 1)``
                (the VAE's own range, clamped).
            batch_size: latents decoded per VAE call.
        """
        self._need_vae("decode")
        vr = tuple(float(v) for v in value_range)
        if vr not in ((0.0, 1.0), (-1.0, 1.0)):
            raise ValueError(f"value_range must be (0, 1) or (-1, 1), got {value_range!r}")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:2]) != self.data_shape[:1]:
            raise ValueError(f"x must be latents [B, {self.data_shape[0]}, h, w], got "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        cfg = self.vae.config
        z = x.to(self.device, self.weights_dtype) / cfg.scaling_factor
        if getattr(cfg, "shift_factor", None) is not None:
            z = z + cfg.shift_factor
        img = torch.cat([self.vae.decode(z[i:i + batch_size]).sample for i in range(0, z.shape[0], batch_size)])
        img = img.float()
        return (img / 2 + 0.5).clamp(0, 1) if vr == (0.0, 1.0) else img.clamp(-1, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, *, value_range=(0.0, 1.0)) -> torch.Tensor:
        """Encode RGB images ``[B, 3, height, width]`` (in ``value_range``) to latents ``[B, C, h, w]`` (float32):
        the mean of the VAE posterior times ``scaling_factor`` — the inverse of :meth:`decode` up to the VAE's error."""
        self._need_vae("encode")
        vr = tuple(float(v) for v in value_range)
        if vr not in ((0.0, 1.0), (-1.0, 1.0)):
            raise ValueError(f"value_range must be (0, 1) or (-1, 1), got {value_range!r}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        img = images * 2 - 1 if vr == (0.0, 1.0) else images
        cfg = self.vae.config
        z = self.vae.encode(img.to(self.device, self.weights_dtype)).latent_dist.mean
        if getattr(cfg, "shift_factor", None) is not None:
            z = z - cfg.shift_factor
        return (z * cfg.scaling_factor).float()

    def _need_vae(self, what):
        if self.vae is None:
            raise ValueError(f"{what} needs a VAE; this StableDiffusionPrior was built without one (pass vae=)")

    def __repr__(self):
        return (f"StableDiffusionPrior(data_shape={self.data_shape}, image={self.height}x{self.width}, "
                f"prediction_type={self.prediction_type!r}, weights_dtype={self.weights_dtype}, device={self.device})")
