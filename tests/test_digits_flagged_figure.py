"""The models page's flagged-digit figure is drawn from stored samples, and those are the measured ones.

``benchmarks/results/digits16_flagged.npz`` holds every sample the roughness measures flagged in seed sets 0-4
(``python -m benchmarks.digits_model_quality ... --flagged-data``); ``--figure-from`` redraws the figure from it
without sampling. Here: the stored samples are exactly those the stored measurement
(``digits16_quality.json``) counted, and the redraw is the column's width with every digit upsampled by whole
pixels. Cheap: no sampling.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks import digits_model_quality as dmq

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NPZ, PNG = RESULTS / "digits16_flagged.npz", RESULTS / "digits16_flagged.png"


@pytest.fixture(scope="module")
def data():
    return dmq.load_flagged(NPZ)


def test_stored_samples_are_the_measured_ones(data):
    """Per prior, CFG scale and seed set: the stored samples' TVs above the threshold are the TVs the JSON lists,
    and the stored thresholds are the JSON's."""
    tv = json.loads((RESULTS / "digits16_quality.json").read_text())["tv_by_seed"]
    assert data["thr"] == pytest.approx(tv["threshold"])
    measured = {("model", r["cfg"], r["seed"]): r["flagged_tv"] for r in tv["rows"]}
    measured.update({("exact_prior", r["cfg"], r["seed"]): r["flagged_tv"] for r in tv["exact_prior"]["rows"]})
    stored = {}
    for d in data["flagged"]:
        if d["tv"] > data["thr"]:
            stored.setdefault((d["prior"], d["cfg"], d["seed"]), []).append(round(d["tv"], 1))
    for key, tvs in measured.items():
        if key[2] < data["seeds"]:
            assert sorted(stored.get(key, [])) == tvs, key
    assert {k for k in stored} <= {k for k in measured}
    assert Counter(d["prior"] for d in data["flagged"]).keys() == {"model", "exact_prior"}
    assert all(d["tv"] > data["thr"] or d["sv"] > data["sthr"] for d in data["flagged"])


def test_redraw_fits_the_column_with_whole_pixel_digits(data, tmp_path):
    from PIL import Image

    out = tmp_path / "f.png"
    dmq.main(["--figure-from", str(NPZ), "--figure", str(out)])
    im = np.asarray(Image.open(out).convert("L"))
    assert im.shape[1] == dmq.FIG_WIDTH <= 688  # the book's column at 1300 px: shown unscaled
    assert dmq.FIG_FONT / 72 * 100 >= 10  # text >= 10 px in the PNG, so >= 9 px on screen
    # the first flagged sample, found in the PNG as its 4x-upsampled self
    z = dmq.FIG_ZOOM
    big = np.kron(np.clip((data["flagged"][0]["image"] + 1) / 2, 0, 1), np.ones((z, z))) * 255
    x = int((dmq.FIG_WIDTH // dmq.FIG_COLS - 16 * z) / 2)  # the first column's digit
    hits = [y for y in range(400) if np.abs(im[y:y + 16 * z, x:x + 16 * z] - big).max() <= 2]
    assert hits, "the first flagged digit is not drawn pixel for pixel"
    assert Image.open(PNG).size == Image.open(out).size  # the stored figure is this redraw
