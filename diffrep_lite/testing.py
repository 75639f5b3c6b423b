"""Tiny random-weight diffusers checkpoints, built from configs, for offline tests and demos.

Nothing here downloads anything: every model is built from a small config with random weights
(seeded) and written with ``save_pretrained`` to a local folder, which the priors then load with
``from_pretrained(folder)`` exactly as they would load a real checkpoint. The outputs are noise-like
images (the weights are random); what these checkpoints prove is the *code path*: loading,
text encoding, classifier-free guidance, VE/VP scaling and VAE decoding.

* :func:`make_tiny_stable_diffusion` — a Stable Diffusion pipeline folder (UNet2DConditionModel,
  AutoencoderKL, CLIPTextModel + a 520-token CLIP tokenizer, DDIM scheduler), about 8 MB.
* :func:`make_tiny_unet2d` — a pixel-space DDPM folder (UNet2DModel + DDPM scheduler), the
  ``DDPMPipeline`` layout.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .priors.stable_diffusion import hf_progress_bars
from .schedule import check_prediction_type

__all__ = ["make_tiny_stable_diffusion", "make_tiny_unet2d", "TINY_SD_WORDS"]

#: Words the tiny tokenizer knows as single tokens (everything else is spelled byte by byte).
TINY_SD_WORDS = ("the", "cat", "dog")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-unicode table: every byte maps to a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _write_tiny_clip_vocab(folder: Path) -> None:
    """``vocab.json`` + ``merges.txt`` of a 520-token CLIP BPE: the 256 byte characters, the same with
    ``</w>``, the merges spelling ``the``, ``cat`` and ``dog`` as whole words, and the two specials."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = []
    for w in TINY_SD_WORDS:  # "t h", "th e</w>" ... each merge joins two tokens already in the vocab
        merges += [f"{w[0]} {w[1]}", f"{w[:2]} {w[2]}</w>"]
        tokens += [w[:2], w + "</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike folder, got {type(path).__name__}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"path must be a folder (it is written with save_pretrained), got the file {str(p)!r}")
    return p


def make_tiny_stable_diffusion(path, seed: int = 0, *, prediction_type: str = "epsilon",
                               sample_size: int = 8) -> str:
    """Build a tiny random-weight Stable Diffusion pipeline and ``save_pretrained`` it to ``path``.

    Components (``torch.manual_seed(seed)`` before building them):

    * ``UNet2DConditionModel``: blocks (32, 64), one cross-attention block, ``cross_attention_dim=32``,
      4 latent channels, ``sample_size`` (latent side, default 8): 1.4 M parameters.
    * ``AutoencoderKL``: blocks (32, 64), 4 latent channels, so ``vae_scale_factor = 2`` (an 8x8 latent
      decodes to a 16x16 RGB image): 0.66 M parameters.
    * ``CLIPTextModel``: 2 layers, width 32, 77 positions, and a ``CLIPTokenizer`` loaded with
      ``from_pretrained`` from a folder holding a written 520-token ``vocab.json``/``merges.txt``
      (words in :data:`TINY_SD_WORDS` are single tokens, other text is spelled byte by byte).
    * ``DDIMScheduler`` with Stable Diffusion's ``scaled_linear`` betas (0.00085 .. 0.012, 1000 ticks).

    Args:
        path: folder to write (created if missing; existing files are overwritten).
        seed: seed of the random weights (same seed, bit-identical checkpoint).
        prediction_type: one of :data:`~diffrep_lite.schedule.PREDICTION_TYPES` (written to the scheduler config,
            as SD 2.x checkpoints do with ``"v_prediction"``; the random UNet is the same either way).
        sample_size: the UNet's default latent side (the image side is twice that).

    Returns:
        ``str(path)``, ready for ``StableDiffusionPrior.from_pretrained(path)``.

    Raises:
        TypeError / ValueError: ``path`` not a folder path, unknown ``prediction_type``, bad ``sample_size``.
    """
    p = _check_path(path)
    check_prediction_type(prediction_type)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 2:
        raise ValueError(f"sample_size must be an int >= 2, got {sample_size!r}")
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tokdir:
        _write_tiny_clip_vocab(Path(tokdir))
        tok = CLIPTokenizer.from_pretrained(tokdir, model_max_length=77)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=sample_size, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=32)
        vae = AutoencoderKL(
            block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
            sample_size=2 * sample_size)
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
    finally:
        torch.random.set_rng_state(state)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    p.mkdir(parents=True, exist_ok=True)
    with hf_progress_bars(False):
        pipe.save_pretrained(str(p))
    return str(p)


def make_tiny_unet2d(path, seed: int = 0, *, sample_size: int = 16, channels: int = 1,
                     num_class_embeds: int | None = None, beta_schedule: str = "squaredcos_cap_v2") -> str:
    """Build a tiny random-weight pixel DDPM and save it in the ``DDPMPipeline`` layout
    (``model_index.json``, ``unet/``, ``scheduler/``).

    The UNet2DModel has blocks (16, 32), one layer per block, ``norm_num_groups=8`` (about 0.2 M
    parameters); with ``num_class_embeds=K`` it is class-conditional (``class_labels`` in ``0..K-1``).

    Args:
        path: folder to write. seed: seed of the random weights.
        sample_size: image side in pixels (must be divisible by 2). channels: image channels.
        num_class_embeds: number of classes, or None for an unconditional model.
        beta_schedule: the DDPM scheduler's ``beta_schedule`` (1000 ticks).

    Returns:
        ``str(path)``.
    """
    p = _check_path(path)
    for name, v, lo in (("sample_size", sample_size, 2), ("channels", channels, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if sample_size % 2:
        raise ValueError(f"sample_size must be divisible by 2 (one downsampling), got {sample_size}")
    if num_class_embeds is not None and (isinstance(num_class_embeds, bool) or not isinstance(num_class_embeds, int)
                                         or num_class_embeds < 1):
        raise ValueError(f"num_class_embeds must be None or an int >= 1, got {num_class_embeds!r}")
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                           block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                           num_class_embeds=num_class_embeds)
    finally:
        torch.random.set_rng_state(state)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule)
    p.mkdir(parents=True, exist_ok=True)
    with hf_progress_bars(False):
        DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(str(p))
    return str(p)
