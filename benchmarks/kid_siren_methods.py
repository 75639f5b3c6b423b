"""Issue 3's KID question: are DDR SIREN samples from the shipped digits model closer (KID) to the model's
own DDIM samples than SJC's and SDS's at classifier-free guidance 3? Prints JSON (KID and diversity per
method, fixed seeds, small sizes). Not yet a test: the ordering is unverified on the final weights (see the
issue note); run `python benchmarks/kid_siren_methods.py`.
"""
import json

import diffrep_lite as dl
from diffrep_lite import metrics
from diffrep_lite.diffreps import SirenImage

CFG, LABEL, N = 3.0, 3, 16


def main():
    prior = dl.priors.load_digits_prior()
    rep = SirenImage(16, 1, hidden=64, hidden_layers=2)
    kw = dict(n=N, seed=0, cond=LABEL, guidance_scale=CFG, progress=False)
    ref = dl.sample("reference", prior, None, steps=50, n=64, seed=1000, cond=LABEL, guidance_scale=CFG,
                    progress=False).x[:, 0]
    x = {
        "ddr": dl.sample("ddr", prior, rep, steps=20, solver="cg", solver_iters=10, **kw).x[:, 0],
        "sjc": dl.sample("sjc", prior, rep, steps=100, lr=1e-3, **kw).x[:, 0],
        "sds": dl.sample("sds", prior, rep, steps=100, lr=1e-3, **kw).x[:, 0],
        "reference": dl.sample("reference", prior, None, steps=20, **kw).x[:, 0],
    }
    feats = metrics.digits_features()
    fref = feats(ref)
    kid = {m: metrics.kid(feats(v), fref, features=None) for m, v in x.items()}
    div = {m: metrics.diversity(v) for m, v in x.items()}
    print(json.dumps({"cfg": CFG, "label": LABEL, "n": N, "kid": kid, "diversity": div}, indent=1))


if __name__ == "__main__":
    main()
