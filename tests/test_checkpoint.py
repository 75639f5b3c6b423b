"""Every sampler checkpoints and resumes bit for bit; nothing a user has is overwritten; a checkpoint knows its run.

Each sampler runs once uninterrupted, once interrupted (a callback raises after update 3, the process
goes on) and resumed, and once killed with SIGKILL in a subprocess while writing its second checkpoint
(after the temporary file is written, before it replaces the first) and resumed here: the results must be
equal to the last bit.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import diffrep_lite as dl
from diffrep_lite.diffreps import SirenImage
from diffrep_lite.priors import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 6
#: method name, keywords: every sampler, DDR also with RePaint blocks and convention A
CASES = {
    "reference": ("reference", dict(eta=0.5, repaint_iters=2)),
    "ddr": ("ddr", dict(eta=0.5)),
    "ddr-repaint": ("ddr", dict(repaint_iters=2, jump=2, jump_eta=1.0, fit_iters=2, solver_iters=3)),
    "ddr-A": ("ddr", dict(convention="A", repaint_iters=2, jump_eta=0.5)),
    "sjc": ("sjc", dict(sigma_schedule="random")),
    "sds": ("sds", {}),
    "sdi": ("sdi", dict(inversion_steps=2)),
}
TOY = """
import torch
from diffrep_lite.diffreps import SirenImage
from diffrep_lite.priors import GaussianMixture
g = torch.Generator().manual_seed(0)
prior = GaussianMixture(torch.ones(3), torch.randn(3, 1, 8, 8, generator=g).clamp(-1, 1), 0.05)
rep = SirenImage(8, 1, hidden=16, hidden_layers=1)
"""


@pytest.fixture(scope="module")
def toy():
    ns = {}
    exec(TOY, ns)
    return ns["prior"], ns["rep"]


def _run(toy, case, **kw):
    method, extra = CASES[case]
    prior, rep = toy
    return dl.sample(method, prior, None if method == "reference" else rep, steps=STEPS, n=2, seed=7,
                     progress=False, **extra, **kw)


def _same(a, b):
    assert torch.equal(a.x, b.x)
    if a.params is not None:
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


class Stop(Exception):
    pass


def _interrupt_after(k):
    def cb(i, info):
        if i == k:
            raise Stop

    return cb


@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_run_resumes_bit_identical(toy, case, tmp_path):
    full = _run(toy, case)
    ck = tmp_path / "run.pt"
    with pytest.raises(Stop):
        _run(toy, case, checkpoint_path=ck, callback=_interrupt_after(3))
    assert torch.load(ck, weights_only=True)["step"] in (2, 3)  # the last block boundary before the interrupt
    resumed = _run(toy, case, checkpoint_path=ck, resume_from=ck)
    _same(full, resumed)
    assert not (tmp_path / "run.pt.tmp").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_kill_during_checkpoint_write_keeps_the_last_checkpoint(toy, case, tmp_path):
    ck = tmp_path / "run.pt"
    method, extra = CASES[case]
    script = TOY + textwrap.dedent(f"""
        import os, signal
        import diffrep_lite as dl
        torch.set_num_threads(1)
        calls = []
        real = os.replace
        def replace(a, b):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: the .tmp is written, not yet in place
            real(a, b)
        os.replace = replace
        dl.sample({method!r}, prior, None if {method!r} == "reference" else rep, steps={STEPS}, n=2, seed=7,
                  progress=False, checkpoint_path={str(ck)!r}, **{extra!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr
    first = torch.load(ck, weights_only=True)["step"]
    assert 1 <= first < STEPS
    resumed = _run(toy, case, checkpoint_path=ck, resume_from=ck)
    _same(_run(toy, case), resumed)


def test_existing_file_is_never_overwritten(toy, tmp_path):
    notes = tmp_path / "my_notes.txt"
    notes.write_text("keep me")
    with pytest.raises(ValueError, match="checkpoint_path=.*my_notes.txt.* exists"):
        _run(toy, "ddr", checkpoint_path=notes)
    assert notes.read_text() == "keep me"
    _run(toy, "ddr", checkpoint_path=notes, overwrite=True)  # explicit
    assert torch.load(notes, weights_only=True)["step"] == STEPS


def test_missing_folder_fails_before_any_work(toy, tmp_path):
    prior, rep = toy
    calls = []
    real = prior.eps
    prior.eps = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        with pytest.raises(ValueError, match="checkpoint_path=.*does not exist"):
            _run(toy, "ddr", checkpoint_path=tmp_path / "nope" / "run.pt")
    finally:
        del prior.eps
    assert not calls and not (tmp_path / "nope").exists()


def test_failed_write_leaves_no_temporary_file(toy, tmp_path, monkeypatch):
    def broken(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        _run(toy, "sjc", checkpoint_path=tmp_path / "run.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, named", [
    (dict(seed=8), "seed/generator"),
    (dict(solver_iters=5), "solver"),
    (dict(eta=0.25), "eta"),
    (dict(guidance_scale=None, n=3), "n=2 in the checkpoint, n=3 in this run"),
])
def test_resume_with_other_settings_lists_each_difference(toy, tmp_path, change, named):
    ck = tmp_path / "run.pt"
    prior, rep = toy
    kw = dict(steps=STEPS, n=2, seed=7, eta=0.5, progress=False)
    with pytest.raises(Stop):
        dl.sample("ddr", prior, rep, checkpoint_path=ck, callback=_interrupt_after(2), **kw)
    with pytest.raises(ValueError, match="other settings") as info:
        dl.sample("ddr", prior, rep, **{**kw, **change}, resume_from=ck)
    assert named in str(info.value)


def test_resume_with_another_prior_or_diffrep_is_refused(toy, tmp_path):
    ck = tmp_path / "run.pt"
    prior, rep = toy
    with pytest.raises(Stop):
        dl.sample("sds", prior, rep, steps=STEPS, n=2, seed=0, progress=False, checkpoint_path=ck,
                  callback=_interrupt_after(2))
    means = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    other = GaussianMixture(torch.ones(3), means + 0.01, 0.05)  # the toy prior with its means moved
    with pytest.raises(ValueError, match="prior=GaussianMixture [0-9a-f]+ in the checkpoint"):
        dl.sample("sds", other, rep, steps=STEPS, n=2, seed=0, progress=False, resume_from=ck)
    with pytest.raises(ValueError, match="diffrep=SirenImage [0-9a-f]+ in the checkpoint"):
        dl.sample("sds", prior, SirenImage(8, 1, hidden=16, hidden_layers=1, omega_0=20.0), steps=STEPS, n=2,
                  seed=0, progress=False, resume_from=ck)


@pytest.mark.parametrize("content", [b"some notes\n", b"", "torch-dict"])
def test_foreign_file_gets_one_clear_error(toy, tmp_path, content):
    f = tmp_path / "foreign.pt"
    if content == "torch-dict":
        torch.save({101: torch.zeros(2)}, f)
    else:
        f.write_bytes(content)
    with pytest.raises(ValueError, match="resume_from=.*foreign.pt.* is not a diffrep-lite checkpoint"):
        _run(toy, "ddr", resume_from=f)


def test_callback_payload_is_one_type_for_every_method(toy):
    for case in ("reference", "ddr", "sjc", "sds", "sdi"):
        seen = []
        out = _run(toy, case, callback=lambda i, info: seen.append(info))
        assert [s.step for s in seen] == list(range(STEPS)) and all(s.method == out.method for s in seen)
        assert set(seen[-1]) == {"method", "step", "sigma", "x", "params", "eps"}
        assert torch.equal(seen[-1]["x"], out.x)
        assert "sigmas" in out.trace
