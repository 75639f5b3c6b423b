"""KID (unbiased MMD^2, cubic polynomial kernel) and diversity against hand computations."""
import math
import sys

import pytest
import torch

from diffrep_lite import metrics
from diffrep_lite.data import load_digits16


def test_polynomial_kernel_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    # d = 2: k = (x.y / 2 + 1)^3
    want = torch.tensor([[1.5**3, 2.0**3], [1.5**3, 0.5**3]])
    torch.testing.assert_close(metrics.polynomial_kernel(x, y), want)


def test_mmd2_unbiased_by_hand():
    # d = 1, k(a, b) = (ab + 1)^3. X = {0, 1}, Y = {2, 3}:
    # within X: k(0,1) = 1 -> 1; within Y: k(2,3) = 7^3 = 343 -> 343;
    # across: k(0,2) = k(0,3) = 1, k(1,2) = 27, k(1,3) = 64 -> mean 93/4.  MMD^2 = 1 + 343 - 2 * 93/4 = 297.5
    assert metrics.mmd2_unbiased([[0.0], [1.0]], [[2.0], [3.0]]) == pytest.approx(297.5, abs=1e-12)
    assert metrics.kid(torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]]), features=None) == \
        pytest.approx(297.5, abs=1e-12)


def test_mmd2_matches_a_double_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.5
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    syy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    sxy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-12)


def test_kid_is_unbiased_for_one_distribution():
    """20 pairs of independent N(0, I_8) samples (m = n = 100): the mean KID is 0 within 3 standard errors
    (a 0.3 % two-sided Monte-Carlo tolerance, fixed seed). The biased V-statistic (diagonal kept) is
    visibly positive on the same data, so the test can tell the estimators apart."""
    g = torch.Generator().manual_seed(1)
    vals, biased = [], []
    for _ in range(20):
        x, y = torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g)
        vals.append(metrics.kid(x, y, features=None))
        k = metrics.polynomial_kernel
        xd, yd = x.double(), y.double()
        biased.append(float(k(xd, xd).mean() + k(yd, yd).mean() - 2 * k(xd, yd).mean()))
    v = torch.tensor(vals)
    se = float(v.std()) / math.sqrt(len(v))
    assert abs(float(v.mean())) < 3 * se
    assert float(torch.tensor(biased).mean()) > 10 * se
    # and a real difference is detected: a mean shift of 0.5 per coordinate
    x, y = torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g) + 0.5
    assert metrics.kid(x, y, features=None) > 20 * se


def test_kid_subsets_average_the_full_estimate_when_subsets_are_everything():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g) + 0.3
    mean, std = metrics.kid_subsets(x, y, features=None, n_subsets=3, subset_size=30)
    assert mean == pytest.approx(metrics.kid(x, y, features=None), rel=1e-10) and std == pytest.approx(0.0, abs=1e-9)
    mean, std = metrics.kid_subsets(x, y, features=None, n_subsets=50, subset_size=10)
    assert std > 0


def test_digits_features_separate_real_digits_from_noise():
    x, y = load_digits16()
    feats = metrics.digits_features()(x[:8])
    assert feats.shape == (8, 64) and feats.dtype == torch.float32
    net = metrics._digits_net()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    assert acc > 0.97  # trained on 80 % of these, 99.2 % held-out accuracy (train_log.json)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    a, b = x[perm[:300]], x[perm[300:600]]
    same = metrics.kid(a, b)
    noise = metrics.kid(a, torch.rand(300, 1, 16, 16, generator=g) * 2 - 1)
    ones = metrics.kid(a[y[perm[:300]] == 1], b[y[perm[300:600]] == 7])
    assert abs(same) < 0.02 * noise and abs(same) < 0.1 * ones


def test_diversity_by_hand():
    # 1-d points 0, 3, 4: distances 3, 4, 1 -> mean 8/3
    assert metrics.diversity(torch.tensor([[0.0], [3.0], [4.0]])) == pytest.approx(8 / 3)
    assert metrics.diversity(torch.ones(5, 1, 4, 4)) == 0.0
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.diversity(torch.ones(1, 3))


def test_errors(monkeypatch):
    with pytest.raises(ValueError, match="feature dimensions differ"):
        metrics.mmd2_unbiased(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="features must be"):
        metrics.kid(torch.zeros(3, 2), torch.zeros(3, 2), features="vgg")
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid_subsets(torch.zeros(3, 2), torch.zeros(3, 2), features=None, subset_size=1)
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # as if torchmetrics were not installed
    monkeypatch.setitem(sys.modules, "torchmetrics.image", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    with pytest.raises(ImportError, match="pip install torchmetrics"):
        metrics.inception_features()


def test_panorama_patch_metrics_exact_answers():
    """A strip of the photo the patches came from scores 0 on both measures; a constant shift by 0.1 of every
    pixel is 0.1 from the nearest patch (the same one); two different patches side by side disagree on their
    shared columns by exactly their RMS difference there."""
    from diffrep_lite.data import image_patches, load_photo

    img = load_photo("china.jpg", 4)
    assert tuple(img.shape) == (3, 106, 160) and float(img.min()) >= -1 and float(img.max()) <= 1
    P = image_patches(img, 16, 4)
    assert tuple(P.shape) == (23 * 37, 3, 16, 16)
    assert torch.equal(P[37 * 2 + 5], img[:, 8:24, 20:36])       # row 2, column 5 of the patch grid
    strip = img[None, :, 40:56, :128]
    assert float(metrics.nearest_patch_distance(strip, P, stride=4)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics.window_seam_score(strip, P, view_stride=8)[0]) == pytest.approx(0.0, abs=1e-6)
    # a tiny shift keeps every window nearest to its own patch: the distance is the shift
    assert float(metrics.nearest_patch_distance(strip + 0.01, P, stride=8)[0]) == pytest.approx(0.01, abs=1e-5)
    # two patches side by side, windows at stride 8: window 1 straddles them, but the score compares the two
    # nearest patches of neighbouring windows on their 8 shared columns
    a, b = P[0], P[300]
    can = torch.cat([a, b], 2)[None]                                     # [1, 3, 16, 32]: windows at 0, 8, 16
    idx = metrics._nearest_rms(torch.stack([can[0, :, :, o:o + 16].reshape(-1) for o in (0, 8, 16)]), P)[1]
    na, nm, nb = P[idx]
    want = ((na[..., 8:] - nm[..., :8]).pow(2).mean().sqrt() + (nm[..., 8:] - nb[..., :8]).pow(2).mean().sqrt()) / 2
    assert idx[0] == 0 and idx[2] == 300
    assert float(metrics.window_seam_score(can, P, 8)[0]) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="view_stride"):
        metrics.window_seam_score(strip, P, 16)
    with pytest.raises(ValueError, match="stride"):
        metrics.nearest_patch_distance(strip, P, 0)
    with pytest.raises(ValueError, match="name must be one of"):
        load_photo("moon.jpg")
