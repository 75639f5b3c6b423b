"""The Stable Diffusion prior on a tiny random-weight pipeline built from configs (nothing is downloaded).

Exact checks compare the prior with direct calls of the same diffusers components (an independently
loaded ``StableDiffusionPipeline``): the CFG formula, the VE->VP scaling and tick choice, the v-prediction
conversion (against ``DDIMScheduler.step``'s own x0 estimate) and the VAE decode. Then every sampler runs
through the latent path with CFG.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite.priors import StableDiffusionPrior
from diffrep_lite.samplers.common import setup
from diffrep_lite.samplers.sdi import guided_eps
from diffrep_lite.testing import make_tiny_stable_diffusion

PROMPTS = ["the cat", "a dog on grass"]


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    return make_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd") / "eps", seed=0)


@pytest.fixture(scope="module")
def prior(sd_path):
    return StableDiffusionPrior.from_pretrained(sd_path, local_files_only=True)


@pytest.fixture(scope="module")
def pipe(sd_path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(sd_path, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)


def _manual_eps(pipe, x_ve, sigma, tick, prompts, negative=""):
    """eps_u and eps_c straight from the pipeline's UNet with its own prompt encoding."""
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True, [negative] * len(prompts))
        x_vp = x_ve / (1 + sigma**2) ** 0.5
        t = torch.full((x_ve.shape[0],), tick, dtype=torch.long)
        e_c = pipe.unet(x_vp, t, encoder_hidden_states=cond).sample
        e_u = pipe.unet(x_vp, t, encoder_hidden_states=uncond).sample
    return e_u, e_c, x_vp


def test_loads_offline_with_the_pipelines_schedule(prior, pipe):
    assert prior.data_shape == (4, 8, 8) and (prior.height, prior.width) == (16, 16)
    assert prior.dtype == torch.float32 and prior.weights_dtype == torch.float32
    assert prior.prediction_type == "epsilon"
    assert torch.equal(prior.schedule.alphas_cumprod, pipe.scheduler.alphas_cumprod.double())


def test_cfg_matches_two_manual_unet_passes(prior, pipe):
    g = torch.Generator().manual_seed(1)
    tick = 500
    sigma = float(prior.schedule.sigmas[tick])
    x = torch.randn(2, 4, 8, 8, generator=g) * (1 + sigma**2) ** 0.5
    e_u, e_c, _ = _manual_eps(pipe, x, sigma, tick, PROMPTS)
    for s in (0.0, 1.0, 3.0, 7.5):
        got = prior.eps(x, sigma, PROMPTS, s)
        torch.testing.assert_close(got, e_u + s * (e_c - e_u), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prior.eps(x, sigma, PROMPTS, None), e_c, atol=1e-5, rtol=1e-5)  # None = conditional
    # SDI's mirrored inversion guidance: a negative scale on the same CFG line
    torch.testing.assert_close(guided_eps(prior, x, sigma, PROMPTS, -7.5), e_u - 7.5 * (e_c - e_u), atol=1e-5, rtol=1e-5)
    assert [prior.evals_per_call(s) for s in (None, 0.0, 1.0, 7.5)] == [1, 1, 1, 2]


def test_negative_prompt_is_the_unconditional_branch(sd_path, pipe):
    p = StableDiffusionPrior.from_pretrained(sd_path, negative_prompt="the dog")
    sigma, tick = float(p.schedule.sigmas[300]), 300
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    e_u, e_c, _ = _manual_eps(pipe, x, sigma, tick, ["the cat"], negative="the dog")
    torch.testing.assert_close(p.eps(x, sigma, ["the cat"], 5.0), e_u + 5.0 * (e_c - e_u), atol=1e-5, rtol=1e-5)


def test_ve_scaling_and_nearest_tick(prior, pipe):
    # sigma between two ticks: the UNet sees x / sqrt(1 + sigma^2) at the tick nearest in log-sigma
    sig = prior.schedule.sigmas
    sigma = float((sig[410] * sig[411]) ** 0.5 * 1.0001)  # just past the log-midpoint -> tick 411
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    _, e_c, _ = _manual_eps(pipe, x, sigma, 411, ["the cat"] * 3)
    torch.testing.assert_close(prior.eps(x, sigma, ["the cat"] * 3), e_c, atol=1e-5, rtol=1e-5)
    # per-sample sigmas
    sigmas = torch.tensor([float(sig[10]), float(sig[500]), float(sig[999])])
    got = prior.eps(x, sigmas, ["the cat"] * 3)
    for i, tk in enumerate((10, 500, 999)):
        _, e_i, _ = _manual_eps(pipe, x[i:i + 1], float(sigmas[i]), tk, ["the cat"])
        torch.testing.assert_close(got[i:i + 1], e_i, atol=1e-5, rtol=1e-5)


def test_x0_matches_diffusers_ddim_step(prior, pipe):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(10)
    tick = int(sched.timesteps[3])
    sigma = float(prior.schedule.sigmas[tick])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4)) * (1 + sigma**2) ** 0.5
    e_u, e_c, x_vp = _manual_eps(pipe, x, sigma, tick, PROMPTS)
    ref = sched.step(e_u + 7.5 * (e_c - e_u), tick, x_vp).pred_original_sample
    torch.testing.assert_close(prior.x0(x, sigma, PROMPTS, 7.5), ref, atol=1e-4, rtol=1e-4)


def test_v_prediction_converts_exactly(tmp_path, sd_path, pipe):
    from diffusers import DDIMScheduler

    # the same checkpoint with SD 2.x's v-prediction scheduler config (the UNet's output is read as v)
    path = tmp_path / "v"
    shutil.copytree(sd_path, path)
    cfg_file = path / "scheduler" / "scheduler_config.json"
    cfg_file.write_text(json.dumps(dict(json.loads(cfg_file.read_text()), prediction_type="v_prediction")))
    pv = StableDiffusionPrior.from_pretrained(path)
    assert pv.prediction_type == "v_prediction"
    tick = 700
    sigma = float(pv.schedule.sigmas[tick])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * (1 + sigma**2) ** 0.5
    v_u, v_c, x_vp = _manual_eps(pipe, x, sigma, tick, PROMPTS)  # the same UNet; its outputs are read as v
    a, b = (1 + sigma**2) ** -0.5, sigma * (1 + sigma**2) ** -0.5  # sqrt(abar), sqrt(1 - abar)
    v = v_u + 3.0 * (v_c - v_u)
    torch.testing.assert_close(pv.eps(x, sigma, PROMPTS, 3.0), a * v + b * x_vp, atol=1e-5, rtol=1e-5)
    sched = DDIMScheduler.from_config(dict(pipe.scheduler.config, prediction_type="v_prediction"))
    sched.set_timesteps(10)
    ref = sched.step(v, tick, x_vp).pred_original_sample
    torch.testing.assert_close(pv.x0(x, sigma, PROMPTS, 3.0), ref, atol=1e-4, rtol=1e-4)


def test_decode_is_the_vae_with_its_scaling_factor(prior, pipe):
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        raw = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample
    img = prior.decode(z)
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32
    torch.testing.assert_close(img, (raw / 2 + 0.5).clamp(0, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prior.decode(z, value_range=(-1, 1), batch_size=2), raw.clamp(-1, 1), atol=1e-5, rtol=1e-5)
    assert prior.encode(img).shape == (3, 4, 8, 8)
    with pytest.raises(ValueError, match="value_range"):
        prior.decode(z, value_range=(0, 255))


def test_text_embeddings_are_cached_per_prompt(sd_path):
    p = StableDiffusionPrior.from_pretrained(sd_path)
    calls = []
    p.text_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    e1 = p.embed(["the cat", "the dog", "the cat"])
    e2 = p.embed(["the dog"])
    assert e1.shape == (3, 77, 32) and calls == [2]  # one encoder call, two distinct prompts
    assert torch.equal(e1[1], e2[0]) and torch.equal(e1[0], e1[2])


def test_lower_precision_weights_keep_float32_io(sd_path, prior):
    pb = StableDiffusionPrior.from_pretrained(sd_path, dtype=torch.bfloat16)
    assert pb.weights_dtype == torch.bfloat16 and pb.dtype == torch.float32
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    e16, e32 = pb.eps(x, 2.0, PROMPTS, 7.5), prior.eps(x, 2.0, PROMPTS, 7.5)
    assert e16.dtype == torch.float32
    # bf16 has an 8-bit mantissa: relative error of a few 1e-2 through a 2-block UNet
    assert (e16 - e32).norm() / e32.norm() < 0.1


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 0.02), (torch.bfloat16, 0.1)])
def test_half_precision_unet_samples_a_latent_nerf_like_float32(sd_path, prior, dtype, tol):
    """The Colab setting: the UNet in half precision, the NeRF, the pull-back and the optimisers in float32.
    Every NeRF method runs with it, keeps float32 parameters, and renders what the float32 UNet gives to within
    the half type's rounding (measured: 0.5 % float16, 4.5 % bfloat16 for DDR; the distillation runs closer)."""
    from diffrep_lite.diffreps import VoxelNeRF, cameras_on_sphere

    half = StableDiffusionPrior.from_pretrained(sd_path, dtype=dtype)
    nerf = VoxelNeRF(cameras_on_sphere(2, 15.0, radius=2.0, fov=60.0), 8, grid=6, channels=4, n_samples=12,
                     background="learned")
    kw = dict(steps=3, n=1, seed=0, cond="the cat", guidance_scale=7.5, progress=False)
    for method, extra in (("ddr", dict(solver_iters=3, repaint_iters=2)), ("sjc", {}), ("sds", {})):
        a, b = dl.sample(method, half, nerf, **kw, **extra), dl.sample(method, prior, nerf, **kw, **extra)
        assert a.x.dtype == torch.float32 and all(t.dtype == torch.float32 for t in a.params.values())
        assert torch.isfinite(a.x).all()
        assert (a.x - b.x).norm() / b.x.norm() < tol, method


def test_view_dependent_prompts_are_combined(prior):
    assert prior.combine_cond("a cat", "side view") == "a cat, side view"
    assert prior.combine_cond("a cat", None) == "a cat"

    class TwoViews(dl.diffreps.Identity):
        n_views = 2

        def render(self, params, views=None):
            return torch.stack([params["x"], -params["x"]], 1)

        def view_conds(self, views=None):
            return ["front view", "back view"]

    s = setup(prior, TwoViews((4, 8, 8)), steps=2, n=2, seed=0, generator=None, params0=None,
              cond=["the cat", "the dog"], guidance_scale=3.0)
    assert s.item_conds == ["the cat, front view", "the cat, back view", "the dog, front view", "the dog, back view"]


@pytest.mark.parametrize("method", ["reference", "ddr", "sjc", "sds", "sdi"])
def test_every_method_runs_through_the_latent_path(prior, method):
    rep = dl.diffreps.SirenImage(8, channels=4, hidden=16, hidden_layers=1)
    kw = dict(steps=2, n=2, seed=0, cond="the cat", guidance_scale=7.5, progress=False)
    extra = {"ddr": dict(solver_iters=3), "sdi": dict(inversion_steps=2)}.get(method, {})
    out = dl.sample(method, prior, rep, **kw, **extra)
    assert out.x.shape == (2, 1, 4, 8, 8) and out.x.dtype == torch.float32
    assert torch.isfinite(out.x).all()
    if method != "reference":
        assert set(out.params) == set(rep.param_shapes()) and all(torch.isfinite(t).all() for t in out.params.values())
        torch.testing.assert_close(rep.render(out.params), out.x)
    img = out.decoded(prior)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    # NFE: 2 UNet passes (CFG) per view and step; SDI adds its inversion (mirrored CFG -7.5: two passes per step)
    if method == "sdi":
        t = [0.98, 0.2]
        assert out.nfe == sum(2 * max(1, int(2 * ti)) + 2 for ti in t)
    else:
        assert out.nfe == 2 * 2


# ---------------------------------------------------------------------- errors, all before any UNet call
def _count_unet(prior, monkeypatch):
    calls = []
    orig = prior._unet_eps
    monkeypatch.setattr(prior, "_unet_eps", lambda *a: calls.append(1) or orig(*a))
    return calls


def test_missing_prompt_bad_prompt_and_negative_cfg_fail_before_sampling(prior, monkeypatch):
    calls = _count_unet(prior, monkeypatch)
    rep = dl.diffreps.SirenImage(8, channels=4, hidden=8, hidden_layers=1)
    for method in dl.METHODS:
        with pytest.raises(ValueError, match="needs a text prompt"):
            dl.sample(method, prior, rep, steps=2, progress=False)
        with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
            dl.sample(method, prior, rep, steps=2, cond="the cat", guidance_scale=-1.0, progress=False)
    with pytest.raises(TypeError, match="text prompts"):
        dl.sample("ddr", prior, rep, steps=2, cond=3, progress=False)
    with pytest.raises(ValueError, match="diffrep renders views of shape"):
        dl.sample("sds", prior, dl.diffreps.SirenImage(16, channels=4), steps=2, cond="the cat", progress=False)
    assert calls == []


def test_prompt_given_to_an_unconditional_prior_fails():
    g = dl.priors.Gaussian(torch.zeros(2), torch.eye(2))
    for method in dl.METHODS:
        with pytest.raises(ValueError, match="unconditional"):
            dl.sample(method, g, dl.diffreps.Identity(2), steps=2, cond="the cat", progress=False)


def test_unknown_model_paths_fail_before_loading(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="neither an existing local folder nor a Hugging Face hub id"):
        StableDiffusionPrior.from_pretrained(str(tmp_path / "no" / "such" / "model"))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        StableDiffusionPrior.from_pretrained(tmp_path / "weights.safetensors")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(ValueError, match="not a Stable Diffusion pipeline folder"):
        StableDiffusionPrior.from_pretrained(tmp_path / "half")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        StableDiffusionPrior.from_pretrained("diffrep-lite-tests/no-such-model-xyz")
    with pytest.raises(TypeError, match="model_id_or_path"):
        StableDiffusionPrior.from_pretrained(None)


def test_unsupported_resolution_fails_before_loading(sd_path):
    with pytest.raises(ValueError, match="multiple of the VAE's scale factor 2"):
        StableDiffusionPrior.from_pretrained(sd_path, height=15)
    with pytest.raises(ValueError, match="either latent_size or height"):
        StableDiffusionPrior.from_pretrained(sd_path, height=16, latent_size=8)
    with pytest.raises(ValueError, match="latent_size"):
        StableDiffusionPrior.from_pretrained(sd_path, latent_size=0)
    p = StableDiffusionPrior.from_pretrained(sd_path, height=32, width=24)
    assert p.data_shape == (4, 16, 12) and (p.height, p.width) == (32, 24)
    x = torch.randn(1, 4, 16, 12)
    assert p.eps(x, 1.0, ["the cat"], 2.0).shape == x.shape and p.decode(x).shape == (1, 3, 32, 24)


# ----------------------------------------------------------------------------- from components
def test_from_components_with_text_encoder_equals_from_pretrained(prior, pipe):
    comp = StableDiffusionPrior.from_components(pipe.unet, pipe.scheduler.config, text_encoder=pipe.text_encoder,
                                                tokenizer=pipe.tokenizer, vae=pipe.vae)
    assert comp.data_shape == prior.data_shape and (comp.height, comp.width) == (prior.height, prior.width)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.7, 3.0])
    assert torch.equal(comp.eps(x, sigma, PROMPTS, 7.5), prior.eps(x, sigma, PROMPTS, 7.5))


def test_from_components_with_embeddings_and_no_vae(prior, pipe):
    emb = prior.embed(["", "the cat"])
    comp = StableDiffusionPrior.from_components(pipe.unet, dict(pipe.scheduler.config),
                                                embeddings={"": emb[0], "the cat": emb[1]})
    assert comp.text_encoder is None and comp.vae is None
    assert comp.data_shape == (4, 8, 8) and (comp.height, comp.width) == (64, 64)  # SD's factor 8 without a VAE
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.2, 1.0, 9.0])
    for g in (None, 0.0, 3.0):
        assert torch.equal(comp.eps(x, sigma, ["the cat"] * 3, g), prior.eps(x, sigma, ["the cat"] * 3, g))
    with pytest.raises(ValueError, match="'a dog'"):
        comp.eps(x, sigma, ["a dog"] * 3, 3.0)
    with pytest.raises(ValueError, match="needs a VAE"):
        comp.decode(x)
    with pytest.raises(ValueError, match="needs a VAE"):
        comp.encode(torch.zeros(1, 3, 64, 64))
    # and a sampler runs through it
    out = dl.sample("ddr", comp, dl.diffreps.SirenImage(8, channels=4, hidden=8, hidden_layers=1), steps=2, n=1,
                    cond="the cat", guidance_scale=3.0, solver_iters=2, progress=False)
    assert torch.isfinite(out.x).all() and out.nfe == 4


def test_from_components_rejects_incomplete_text_inputs(pipe):
    cfg = pipe.scheduler.config
    with pytest.raises(ValueError, match="embeddings"):
        StableDiffusionPrior.from_components(pipe.unet, cfg)
    with pytest.raises(ValueError, match="text_encoder and tokenizer together"):
        StableDiffusionPrior.from_components(pipe.unet, cfg, text_encoder=pipe.text_encoder)
    with pytest.raises(ValueError, match=r"embeddings\['x'\] must be \[L, 32\]"):
        StableDiffusionPrior.from_components(pipe.unet, cfg, embeddings={"x": torch.zeros(77, 16)})
    with pytest.raises(ValueError, match="scheduler_config"):
        StableDiffusionPrior(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer)
