"""Acceptance of issue 3: DDR SIREN samples from the shipped digits model are closer (KID) to the model's
own DDIM samples than SJC's and SDS's at classifier-free guidance 3 (fixed seeds, small sizes)."""
import torch

import diffrep_lite as dl
from diffrep_lite import metrics
from diffrep_lite.diffreps import SirenImage

CFG, LABEL, N = 3.0, 3, 16


def test_ddr_kid_below_sjc_and_sds_at_cfg3():
    prior = dl.priors.load_digits_prior()
    rep = SirenImage(16, 1, hidden=64, hidden_layers=2)
    kw = dict(n=N, seed=0, cond=LABEL, guidance_scale=CFG, progress=False)
    ref = dl.sample("reference", prior, None, steps=50, n=64, seed=1000, cond=LABEL, guidance_scale=CFG,
                    progress=False).x[:, 0]
    x = {
        "ddr": dl.sample("ddr", prior, rep, steps=20, solver="cg", solver_iters=10, **kw).x[:, 0],
        "sjc": dl.sample("sjc", prior, rep, steps=100, **kw).x[:, 0],
        "sds": dl.sample("sds", prior, rep, steps=100, **kw).x[:, 0],
        "reference": dl.sample("reference", prior, None, steps=20, **kw).x[:, 0],
    }
    feats = metrics.digits_features()
    fref = feats(ref)
    kid = {m: metrics.kid(feats(v), fref, features=None) for m, v in x.items()}
    print({m: round(k, 4) for m, k in kid.items()})
    assert kid["ddr"] < kid["sjc"] and kid["ddr"] < kid["sds"]
