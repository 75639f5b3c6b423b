"""Sample-quality metrics: KID with a pluggable feature extractor, and sample diversity.

**KID** (Kernel Inception Distance, Bińkowski et al. 2018) is the squared maximum mean discrepancy
between two feature sets ``X = {x_i}_{i<m}``, ``Y = {y_j}_{j<n}`` under the cubic polynomial kernel
``k(x, y) = (x . y / d + 1)^3`` (``d`` = feature dimension), estimated without bias::

    MMD^2_u = 1/(m(m-1)) sum_{i != i'} k(x_i, x_i') + 1/(n(n-1)) sum_{j != j'} k(y_j, y_j')
              - 2/(m n) sum_{i, j} k(x_i, y_j)

It is 0 in expectation when both sets come from one distribution (so small sets can give slightly
negative values) and it needs no large sample, unlike FID.

Feature extractors (``features=``):

* ``"digits"`` (default, offline): the 64-d penultimate layer of a small CNN trained to classify the
  scikit-learn digits at 16x16 (shipped in ``diffrep_lite/models/digits_features``; trained by
  ``scripts/train_digits_features.py``). Inputs are images ``[N, 1, H, W]`` in ``[-1, 1]``.
* :func:`inception_features` — Inception-v3 pool features through ``torchmetrics`` (Colab; its weights
  are downloaded on first use).
* any callable ``images -> [N, d]``, or ``None`` when the inputs already are features ``[N, d]``.

**Diversity**: the mean pairwise L2 distance between samples (0 for a collapsed set).

**Static** (noise-textured samples): :func:`total_variation` is the anisotropic total variation
``sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|`` of each image; a sample whose TV lies above the 99th
percentile of the training digits' TV has more pixel-to-pixel jitter than any but the noisiest 1 % of real
digits: :func:`noise_textured_fraction` (the percentile for the 16x16 digits is in the ``digits16`` model card).
TV also grows with contrast: a clean but bold, saturated stroke (guided samples of a "0") can cross that
line with no noise at all. :func:`second_variation` sums absolute *second* differences instead, which a
smooth stroke keeps small and pixel noise makes large; ``noise_textured_fraction(..., measure="second")``
flags samples above the real digits' 99th percentile of it (the "static" figure of the quality report).

**Panoramas** (a canvas against the patches its prior was built from): :func:`nearest_patch_distance` is the
RMS distance of every window of the canvas to its nearest patch (0 when every window is a patch);
:func:`window_seam_score` snaps each of the sampler's overlapping windows to its nearest patch and measures how
much neighbouring windows' patches disagree on the columns they share (0 when they agree, as crops of one image do).

**Accuracy**: :func:`heldout_digit_classifier` is an RBF support-vector classifier trained on the held-out
20 % of the digits (:func:`diffrep_lite.data.digits_split`), so it never saw the images the shipped
diffusion model was trained on (its accuracy on the training split is in the ``digits16`` model card).
"""
from __future__ import annotations

import json
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kid", "kid_subsets", "diversity", "total_variation", "laplacian_energy",
           "second_variation", "noise_textured_fraction", "heldout_digit_classifier", "digits_quality", "digits_kid_floor", "DigitsFeatureNet", "digits_features",
           "inception_features", "get_features", "psnr", "SmallConvNet",
           "nearest_patch_distance", "window_seam_score"]


# --------------------------------------------------------------------------- kernel and MMD
def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """``k(x, y) = (x . y / d + coef0) ** degree`` for all pairs: ``x`` ``[m, d]``, ``y`` ``[n, d]`` -> ``[m, n]``."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(fx: torch.Tensor, fy: torch.Tensor, kernel=polynomial_kernel) -> float:
    """Unbiased estimate of ``MMD^2`` between feature sets ``fx`` ``[m, d]`` and ``fy`` ``[n, d]`` (float64).

    Raises:
        ValueError: fewer than 2 rows in a set, or different feature dimensions.
    """
    fx, fy = _as_features(fx, "fx"), _as_features(fy, "fy")
    if fx.shape[1] != fy.shape[1]:
        raise ValueError(f"feature dimensions differ: fx has {fx.shape[1]}, fy has {fy.shape[1]}")
    m, n = fx.shape[0], fy.shape[0]
    kxx, kyy, kxy = kernel(fx, fx), kernel(fy, fy), kernel(fx, fy)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def _as_features(f, name):
    f = torch.as_tensor(f).detach().to("cpu", torch.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be a [N, d] feature matrix with N >= 2, got shape {list(f.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    return f


# --------------------------------------------------------------------------- KID
def kid(x, y, *, features="digits", batch_size: int = 256) -> float:
    """KID between sample sets ``x`` and ``y``: unbiased ``MMD^2`` of their features (all pairs).

    Args:
        x, y: images ``[m, C, H, W]`` and ``[n, C, H, W]`` (or features ``[m, d]`` with ``features=None``).
        features: ``"digits"`` (default), ``"inception"``, ``None`` or a callable ``images -> [N, d]``.
        batch_size: images per feature-extractor call.

    Returns:
        A float; about 0 for two samples of one distribution (it can be slightly negative), larger is worse.
    """
    fe = get_features(features)
    return mmd2_unbiased(_featurise(fe, x, batch_size), _featurise(fe, y, batch_size))


def kid_subsets(x, y, *, features="digits", n_subsets: int = 100, subset_size: int = 100, seed: int = 0,
                batch_size: int = 256) -> tuple[float, float]:
    """KID as in Bińkowski et al. / torchmetrics: mean and std of ``MMD^2_u`` over random subsets.

    Each of ``n_subsets`` rounds draws ``min(subset_size, m, n)`` rows of each set without replacement.

    Returns:
        ``(mean, std)`` over the subsets.
    """
    for v, name in ((n_subsets, "n_subsets"), (subset_size, "subset_size")):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "n_subsets" else 2):
            raise ValueError(f"{name} must be an int >= {1 if name == 'n_subsets' else 2}, got {v!r}")
    fe = get_features(features)
    fx, fy = _featurise(fe, x, batch_size), _featurise(fe, y, batch_size)
    k = min(subset_size, fx.shape[0], fy.shape[0])
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor([
        mmd2_unbiased(fx[torch.randperm(fx.shape[0], generator=g)[:k]], fy[torch.randperm(fy.shape[0], generator=g)[:k]])
        for _ in range(n_subsets)], dtype=torch.float64)
    return float(vals.mean()), float(vals.std()) if n_subsets > 1 else 0.0


def diversity(x) -> float:
    """Mean pairwise L2 distance ``2/(N(N-1)) sum_{i<j} ||x_i - x_j||`` of ``N >= 2`` samples ``[N, ...]``."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"x must hold N >= 2 samples along its first dimension, got shape {list(x.shape)}")
    d = torch.cdist(x.reshape(x.shape[0], -1)[None], x.reshape(x.shape[0], -1)[None])[0]
    n = x.shape[0]
    return float(d.sum() / (n * (n - 1)))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` per leading index (dB); the mean square error
    is over all other dimensions. ``data_range = 2`` for data in ``[-1, 1]``."""
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def total_variation(x) -> torch.Tensor:
    """Anisotropic total variation of each image of ``x`` ``[N, C, H, W]``: a ``[N]`` tensor (float64)."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 4:
        raise ValueError(f"x must be images [N, C, H, W], got shape {list(x.shape)}")
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
            + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1))


def second_variation(x) -> torch.Tensor:
    """Sum of absolute second differences along rows and columns of each image of ``x`` ``[N, C, H, W]``:
    ``sum |x[i+1, j] - 2 x[i, j] + x[i-1, j]| + |x[i, j+1] - 2 x[i, j] + x[i, j-1]|``, a ``[N]`` tensor (float64)."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 4:
        raise ValueError(f"x must be images [N, C, H, W], got shape {list(x.shape)}")
    return ((x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]).abs().flatten(1).sum(1)
            + (x[..., :, 2:] - 2 * x[..., :, 1:-1] + x[..., :, :-2]).abs().flatten(1).sum(1))


def laplacian_energy(x) -> torch.Tensor:
    """Mean absolute 4-neighbour Laplacian over the interior pixels of each image of ``x`` ``[N, C, H, W]``,
    a ``[N]`` tensor (float64). Smooth renders score low and leftover pixel noise high: the objects model's
    "noise-textured" figure counts samples above the largest value of the held-out data renders."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if x.ndim != 4:
        raise ValueError(f"x must be images [N, C, H, W], got shape {list(x.shape)}")
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.abs().mean((1, 2, 3))


def _check_canvas_patches(canvas, patches):
    canvas = torch.as_tensor(canvas).detach().to("cpu", torch.float32)
    patches = torch.as_tensor(patches).detach().to("cpu", torch.float32)
    if canvas.ndim != 4 or patches.ndim != 4 or canvas.shape[1] != patches.shape[1]:
        raise ValueError(f"canvas must be [B, C, H, W] and patches [N, C, h, w] with the same C, got "
                         f"{list(canvas.shape)} and {list(patches.shape)}")
    if patches.shape[2] > canvas.shape[2] or patches.shape[3] > canvas.shape[3]:
        raise ValueError(f"patches ({patches.shape[2]} x {patches.shape[3]}) must fit in the canvas "
                         f"({canvas.shape[2]} x {canvas.shape[3]})")
    return canvas, patches


def _nearest_rms(windows, patches):
    """RMS (per entry) distance of each row of ``windows`` ``[M, D]`` to its nearest row of ``patches`` ``[N, D]``,
    and that row's index."""
    d = torch.cdist(windows[None], patches.reshape(patches.shape[0], -1)[None],
                    compute_mode="donot_use_mm_for_euclid_dist")[0]
    best, idx = d.min(1)
    return best / windows.shape[1] ** 0.5, idx


def nearest_patch_distance(canvas, patches, stride: int = 4) -> torch.Tensor:
    """Mean over the windows of ``canvas`` of the RMS distance to the nearest of ``patches``, a ``[B]`` tensor.

    Args:
        canvas: ``[B, C, H, W]`` canvases.
        patches: ``[N, C, h, w]`` the patch set (e.g. :func:`diffrep_lite.data.image_patches` of a photo).
        stride: step (pixels, >= 1) between the ``h x w`` windows, along both axes; windows that straddle the
            sampler's own view boundaries are counted too, so a blend of two patches scores badly.
    """
    canvas, patches = _check_canvas_patches(canvas, patches)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    B, C = canvas.shape[:2]
    h, w = patches.shape[2:]
    win = canvas.unfold(2, h, stride).unfold(3, w, stride)  # [B, C, nh, nw, h, w]
    nh, nw = win.shape[2:4]
    win = win.permute(0, 2, 3, 1, 4, 5).reshape(B * nh * nw, -1)
    return _nearest_rms(win, patches)[0].reshape(B, -1).mean(1)


def window_seam_score(canvas, patches, view_stride: int) -> torch.Tensor:
    """How much overlapping windows of a panorama disagree, a ``[B]`` tensor.

    The windows are the ``h x w`` crops at column offsets ``0, view_stride, 2 view_stride, ...`` (the views of a
    :class:`~diffrep_lite.diffreps.Panorama` with that stride; the canvas is as tall as a patch). Each is
    replaced by its nearest patch; the score is the mean over neighbouring windows of the RMS difference of their
    two patches on the ``w - view_stride`` columns they share. Crops of one image score 0; windows that each
    resemble a different patch and are blended where they overlap score high.
    """
    canvas, patches = _check_canvas_patches(canvas, patches)
    h, w = patches.shape[2:]
    if canvas.shape[2] != h:
        raise ValueError(f"canvas must be as tall as a patch ({h}), got height {canvas.shape[2]}")
    if isinstance(view_stride, bool) or not isinstance(view_stride, int) or not 1 <= view_stride < w:
        raise ValueError(f"view_stride must be an int in [1, {w - 1}], got {view_stride!r}")
    B, C = canvas.shape[:2]
    win = canvas.unfold(3, w, view_stride)  # [B, C, h, V, w]
    V = win.shape[3]
    if V < 2:
        raise ValueError(f"the canvas (width {canvas.shape[3]}) holds fewer than two windows at stride {view_stride}")
    win = win.permute(0, 3, 1, 2, 4).reshape(B * V, -1)
    nearest = patches[_nearest_rms(win, patches)[1]].reshape(B, V, C, h, w)
    shared = nearest[:, :-1, ..., view_stride:] - nearest[:, 1:, ..., : w - view_stride]
    return shared.pow(2).mean((2, 3, 4)).sqrt().mean(1)


_ROUGHNESS = {"tv": total_variation, "second": second_variation}


def noise_textured_fraction(x, reference, quantile: float = 0.99, measure: str = "tv") -> float:
    """Share of images in ``x`` whose roughness exceeds the ``quantile`` of ``reference``'s.

    Args:
        x: samples ``[N, C, H, W]`` (clamped to ``[-1, 1]`` first, as they are displayed).
        reference: real images ``[M, C, H, W]`` (e.g. the training digits) setting the threshold.
        quantile: in ``(0, 1)``; 0.99 flags samples rougher than the roughest 1 % of real images.
        measure: ``"tv"`` (:func:`total_variation`) or ``"second"`` (:func:`second_variation`).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if measure not in _ROUGHNESS:
        raise ValueError(f"measure must be one of {sorted(_ROUGHNESS)}, got {measure!r}")
    rough = _ROUGHNESS[measure]
    thr = rough(reference).quantile(quantile)
    return float((rough(torch.as_tensor(x).clamp(-1, 1)) > thr).double().mean())


@lru_cache(maxsize=None)
def heldout_digit_classifier():
    """An RBF SVM (scikit-learn ``SVC(C=10)``) fitted on the held-out split of the 16x16 digits.

    Returns:
        A callable ``images [N, 1, 16, 16] in [-1, 1] -> predicted labels [N]`` (long tensor).
    """
    from sklearn.svm import SVC

    from .data import digits_split

    xh, yh = digits_split()["heldout"]
    clf = SVC(C=10.0).fit(xh.flatten(1).numpy(), yh.numpy())

    def predict(x):
        x = torch.as_tensor(x).detach().to("cpu", torch.float32).clamp(-1, 1)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 16, 16):
            raise ValueError(f"images must be [N, 1, 16, 16], got shape {list(x.shape)}")
        return torch.as_tensor(clf.predict(x.flatten(1).numpy()), dtype=torch.long)

    return predict


def digits_quality(x, labels) -> dict:
    """Quality figures of 16x16 digit samples ``x`` ``[N, 1, 16, 16]`` drawn for class ``labels`` ``[N]``.

    Returns:
        ``accuracy`` (share the :func:`heldout_digit_classifier` labels as requested), ``noise_textured``
        (:func:`noise_textured_fraction` with total variation, against the training split), ``static`` (the
        same with :func:`second_variation`), ``kid_heldout`` (KID with the shipped features against the
        held-out split), ``diversity``.
    """
    from .data import digits_split

    x = torch.as_tensor(x).detach().to("cpu", torch.float32).clamp(-1, 1)
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have one entry per sample ({x.shape[0]}), got {labels.shape[0]}")
    split = digits_split()
    return dict(accuracy=float((heldout_digit_classifier()(x) == labels).double().mean()),
                noise_textured=noise_textured_fraction(x, split["train"][0]),
                static=noise_textured_fraction(x, split["train"][0], measure="second"),
                kid_heldout=kid(x, split["heldout"][0]), diversity=diversity(x))


def digits_kid_floor(per_class: int = 20, rounds: int = 20, seed: int = 0) -> dict:
    """The KID a perfect digits model would score in :func:`digits_quality`: stratified subsets of the
    *training* split (``per_class`` images of each digit, like a class-balanced sample set) against the
    held-out split, over ``rounds`` random subsets.

    It is negative: the unbiased estimator assumes i.i.d. draws, and a class-balanced set has fewer same-class
    pairs than i.i.d. draws would, so its within-set kernel mean is lower. Compare a model's KID with this floor,
    not with 0 (its value for the shipped model's setting: the ``digits16`` model card).

    Returns:
        ``{"mean", "std", "rounds", "subset"}``.
    """
    from .data import digits_split

    split = digits_split()
    (xt, yt), (xh, _) = split["train"], split["heldout"]
    g = torch.Generator().manual_seed(seed)
    fe = digits_features()
    fh = _featurise(fe, xh, 256)
    vals = []
    for _ in range(rounds):
        idx = torch.cat([(yt == c).nonzero().flatten()[torch.randperm(int((yt == c).sum()), generator=g)[:per_class]]
                         for c in range(10)])
        vals.append(mmd2_unbiased(_featurise(fe, xt[idx], 256), fh))
    v = torch.tensor(vals, dtype=torch.float64)
    return dict(mean=float(v.mean()), std=float(v.std()) if rounds > 1 else 0.0, rounds=rounds, subset=10 * per_class)


def _featurise(fe, x, batch_size):
    if fe is None:
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    with torch.no_grad():
        return torch.cat([fe(x[i:i + batch_size]).detach().cpu() for i in range(0, x.shape[0], batch_size)])


def get_features(features):
    """Resolve a ``features=`` argument to a callable (or None): ``"digits"``, ``"inception"``, None, callable."""
    if features is None or callable(features):
        return features
    if features == "digits":
        return digits_features()
    if features == "inception":
        return inception_features()
    raise ValueError(f"features must be 'digits', 'inception', None or a callable, got {features!r}")


# --------------------------------------------------------------------------- the small feature nets
class SmallConvNet(nn.Module):
    """The trunk of the shipped feature nets, on 16x16 inputs in ``[-1, 1]`` (clamped; other sizes resized first,
    bilinear and antialiased): conv3x3(C->w) ReLU maxpool2, conv3x3(w->2w) ReLU maxpool2, linear(2w*16->feat_dim)
    ReLU (:meth:`_hidden`). Subclasses add their heads; ``config`` holds the constructor's arguments, so that
    :meth:`save` / :meth:`load` round-trip a net as ``config.json`` + ``model.safetensors``."""

    #: what the inputs are, for the error message of a wrong shape
    inputs = "images in [-1, 1]"

    def __init__(self, in_channels: int, width: int, feat_dim: int, feature_scale: float, **config):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 16, feat_dim)
        self.in_channels, self.feature_scale = in_channels, float(feature_scale)
        self.config = dict(config, width=width, feat_dim=feat_dim, feature_scale=self.feature_scale)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [N, {self.in_channels}, H, W] {self.inputs}, got shape {list(x.shape)}")
        x = x.to(self.conv1.weight).clamp(-1, 1)
        if x.shape[-2:] != (16, 16):
            x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` inputs -> ``[N, feat_dim]`` features, divided by ``feature_scale`` (the RMS feature value
        over the training data, stored with the weights), so that they are O(1) like Inception's and KID values
        land on the usual scale."""
        return self._hidden(x) / self.feature_scale

    def save(self, directory):
        """Write ``config.json`` and ``model.safetensors`` to ``directory``."""
        from pathlib import Path

        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(d / "model.safetensors"))
        with open(d / "config.json", "w") as f:
            json.dump(self.config, f)

    @classmethod
    def load(cls, directory):
        """Load a net written by :meth:`save` (eval mode, no gradients)."""
        from pathlib import Path

        from safetensors.torch import load_file

        d = Path(directory)
        with open(d / "config.json") as f:
            net = cls(**json.load(f))
        net.load_state_dict(load_file(str(d / "model.safetensors")))
        return net.eval().requires_grad_(False)


class DigitsFeatureNet(SmallConvNet):
    """A small CNN classifier for 16x16 grey digits in ``[-1, 1]``: the :class:`SmallConvNet` trunk (1 input
    channel), then linear(64->10). :meth:`features` is its 64-d penultimate layer (used for KID), ``forward`` the
    10 class logits.
    """

    inputs = "grey images"

    def __init__(self, width: int = 16, feat_dim: int = 64, n_classes: int = 10, feature_scale: float = 1.0):
        super().__init__(1, width, feat_dim, feature_scale, n_classes=n_classes)
        self.fc2 = nn.Linear(feat_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, n_classes]``."""
        return self.fc2(self.features(x) * self.feature_scale)


@lru_cache(maxsize=None)
def _digits_net():
    from .priors.shipped import shipped_model_path

    return DigitsFeatureNet.load(shipped_model_path("digits_features"))


def digits_features():
    """The offline default extractor: the shipped :class:`DigitsFeatureNet`'s 64-d features (CPU).

    Returns:
        A callable ``images [N, 1, H, W] in [-1, 1] -> [N, 64]`` (float32, CPU).
    """
    net = _digits_net()
    return lambda x: net.features(x.detach().to("cpu", torch.float32))


def inception_features(device="cpu"):
    """Inception-v3 2048-d pool features via ``torchmetrics`` (for RGB or grey images in ``[-1, 1]``).

    Grey images are repeated to 3 channels; images are mapped to uint8 and resized to 299 by the network.
    torchmetrics (and torch-fidelity) are imported only here, and the FID Inception weights are downloaded
    on first use, so this is meant for Colab.

    Raises:
        ImportError: torchmetrics is not installed (``pip install torchmetrics torch-fidelity``).
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as e:
        raise ImportError("inception_features needs torchmetrics with its image extras: "
                          "pip install torchmetrics torch-fidelity") from e
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"]).to(device).eval()

    def fe(x):
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, 1 or 3, H, W] in [-1, 1], got shape {list(x.shape)}")
        x = x.detach().to(device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return net(u8).reshape(x.shape[0], -1).float()

    return fe
