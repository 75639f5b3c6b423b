"""3-D consistency of sampled scenes seen from a ring of azimuths: an azimuth classifier, the Janus rate and
per-azimuth KID (the toy objects of :func:`diffrep_lite.data.toy_objects`).

A 2-D image model conditioned on the view knows what each view should look like, but nothing ties the views
of one sample together except the shared 3-D parameters. A sample is **Janus** (two-faced) when some of its
views show the object from the wrong side -- e.g. a face where the back should be. We measure it with a small
CNN, :class:`AzimuthNet`, trained on data renders to predict the azimuth bin of a view (and, as a second head,
to regress the object's generating attributes, so that its features also see colour and shape):

* **Janus rate**: a sample is Janus when the predicted bin of some render is ``>= 2`` bins (circular distance)
  from the bin of the camera that rendered it (:func:`janus`);
* **per-azimuth KID**: the KID between a method's renders at bin ``b`` and held-out data renders at bin ``b``,
  with the classifier's 64-d penultimate layer as features (:func:`azimuth_features`).

The features are those of a net trained on this data set only: they measure what it learned to tell apart
(view, colour, size, ears), not general image quality. The shipped net is in
``diffrep_lite/models/objects_features`` (trained by ``scripts/train_objects_features.py``).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .metrics import SmallConvNet

__all__ = ["AzimuthNet", "load_azimuth_net", "azimuth_features", "predict_bins", "circular_distance", "janus",
           "per_azimuth_kid", "two_faced", "face_sides", "object_nerf", "evaluate_scenes", "colour_spread",
           "colour_diversity"]


class AzimuthNet(SmallConvNet):
    """A small CNN for 16x16 RGB views in ``[-1, 1]``: ``forward`` gives the azimuth-bin logits, :meth:`attributes`
    the regressed object attributes (standardised), :meth:`features` the 64-d penultimate layer (divided by
    ``feature_scale``, the RMS feature value on the training renders, so KID lands on the usual scale).

    Layout: the :class:`~diffrep_lite.metrics.SmallConvNet` trunk (3 input channels, width 32), then
    linear(64->bins) and linear(64->n_attributes).
    """

    inputs = "RGB views in [-1, 1]"

    def __init__(self, bins: int = 8, n_attributes: int = 8, width: int = 32, feat_dim: int = 64,
                 feature_scale: float = 1.0):
        super().__init__(3, width, feat_dim, feature_scale, bins=bins, n_attributes=n_attributes)
        self.head_bin = nn.Linear(feat_dim, bins)
        self.head_attr = nn.Linear(feat_dim, n_attributes)
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Azimuth-bin logits ``[N, bins]``."""
        return self.head_bin(self._hidden(x))

    def attributes(self, x: torch.Tensor) -> torch.Tensor:
        """Regressed (standardised) object attributes ``[N, n_attributes]``."""
        return self.head_attr(self._hidden(x))


@lru_cache(maxsize=None)
def load_azimuth_net() -> AzimuthNet:
    """The shipped :class:`AzimuthNet` (``diffrep_lite/models/objects_features``), on the CPU."""
    from .priors.shipped import shipped_model_path

    return AzimuthNet.load(shipped_model_path("objects_features"))


def azimuth_features():
    """KID features of the toy objects: a callable ``views [N, 3, H, W] in [-1, 1] -> [N, 64]`` (the shipped
    :class:`AzimuthNet`'s penultimate layer, float32 CPU), for :func:`diffrep_lite.metrics.kid`'s ``features=``."""
    net = load_azimuth_net()
    return lambda x: net.features(x.detach().to("cpu", torch.float32))


def predict_bins(views: torch.Tensor, net: AzimuthNet | None = None, batch_size: int = 512) -> torch.Tensor:
    """Predicted azimuth bins of views ``[..., 3, H, W]`` -> long ``[...]`` (default net: the shipped one)."""
    net = load_azimuth_net() if net is None else net
    flat = views.detach().to("cpu", torch.float32).reshape(-1, *views.shape[-3:])
    with torch.no_grad():
        out = torch.cat([net(flat[i:i + batch_size]).argmax(1) for i in range(0, flat.shape[0], batch_size)])
    return out.reshape(views.shape[:-3])


#: A view is wrong (and its sample Janus) when its predicted bin is this many bins or more from its camera's.
JANUS_THRESHOLD = 2


def circular_distance(a, b, bins: int) -> torch.Tensor:
    """``min(|a - b| mod bins, bins - |a - b| mod bins)``: how many bins apart two azimuth bins are."""
    d = (torch.as_tensor(a) - torch.as_tensor(b)).remainder(bins)
    return torch.minimum(d, bins - d)


def janus(views: torch.Tensor, bins_of_views, *, bins: int | None = None, threshold: int = JANUS_THRESHOLD,
          net: AzimuthNet | None = None, up_to_rotation: bool = False) -> dict:
    """Which samples are Janus: ``views`` ``[B, V, 3, H, W]`` rendered from cameras in azimuth bins
    ``bins_of_views`` (``V`` ints).

    A view is *wrong* when its predicted bin is ``>= threshold`` bins (circular distance) from its camera's bin;
    a sample is Janus when any of its views is wrong.

    With ``up_to_rotation=True`` the object may face any way: each sample's camera bins are first shifted by the
    offset ``k`` (``0 <= k < bins``) that leaves the fewest wrong views (ties: the smallest summed distance), so
    a consistent object turned by ``45 k`` degrees is not Janus, but one that shows its face (or its back) from
    opposite sides still is. Use it when the prior was not told the cameras (e.g. the null label).

    Returns:
        ``{"janus": bool [B], "rate": float, "wrong_views": long [B] (wrong views per sample), "predicted": long
        [B, V], "view_accuracy": float (share of views predicted exactly, after the shift), "rotation": long [B]
        (the offset ``k``; 0 unless ``up_to_rotation``)}``.
    """
    net = load_azimuth_net() if net is None else net
    bins = net.bins if bins is None else bins
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"threshold must be an int >= 1 (bins), got {threshold!r}")
    if views.ndim != 5:
        raise ValueError(f"views must be [B, V, 3, H, W], got shape {list(views.shape)}")
    cam = torch.as_tensor(list(bins_of_views), dtype=torch.long)
    if cam.numel() != views.shape[1]:
        raise ValueError(f"bins_of_views must give one bin per view ({views.shape[1]}), got {cam.numel()}")
    return _janus_of_predictions(predict_bins(views, net), cam, bins, threshold, up_to_rotation)


def _janus_of_predictions(pred: torch.Tensor, cam: torch.Tensor, bins: int, threshold: int,
                          up_to_rotation: bool) -> dict:
    """:func:`janus` from the predicted bins ``pred`` ``[B, V]`` of views whose cameras are in bins ``cam``."""
    shifts = torch.arange(bins if up_to_rotation else 1)
    dist = circular_distance(pred[:, None, :], (cam[None, None, :] + shifts[None, :, None]).remainder(bins), bins)
    score = (dist >= threshold).sum(-1) * (bins * cam.numel() + 1) + dist.sum(-1)  # [B, shifts]: wrong views first
    k = score.argmin(1)
    dist = dist[torch.arange(len(k)), k]  # [B, V]
    wrong = (dist >= threshold).sum(1)
    jan = wrong > 0
    return {"janus": jan, "rate": float(jan.float().mean()), "wrong_views": wrong, "predicted": pred,
            "view_accuracy": float((dist == 0).float().mean()), "rotation": shifts[k]}


def _body_colours(views: torch.Tensor, net: AzimuthNet | None) -> torch.Tensor:
    """The attribute head's body colour of every view of ``views`` ``[B, V, 3, H, W]`` -> ``[B, V, 3]``."""
    net = load_azimuth_net() if net is None else net
    flat = views.detach().to("cpu", torch.float32).reshape(-1, *views.shape[-3:])
    with torch.no_grad():
        return net.attributes(flat)[:, :3].reshape(views.shape[0], views.shape[1], 3)


def colour_spread(views: torch.Tensor, net: AzimuthNet | None = None) -> torch.Tensor:
    """How much the views of each sample disagree on the object's body colour: ``[B]``.

    ``views`` ``[B, V, 3, H, W]``; the classifier's attribute head regresses the body colour (standardised
    units of the training attributes) from every view; the result is the standard deviation across the ``V``
    views, averaged over the three colour channels. About 0.1-0.2 for data objects (regression noise); a scene
    whose views show different colours scores higher. The Janus rate does not see colour; this does.
    """
    return _body_colours(views, net).std(1).mean(-1)


def colour_diversity(views: torch.Tensor, net: AzimuthNet | None = None) -> float:
    """How much the samples differ in body colour: a float.

    ``views`` ``[B, V, 3, H, W]`` (``B >= 2``); each sample's body colour is the classifier's attribute head
    (standardised units) averaged over its ``V`` views; the result is its standard deviation across the ``B``
    samples, averaged over the three colour channels. Data objects score about 1 (the attributes are
    standardised on the training objects); samples that all share one colour score 0. Mode-seeking samplers
    (SDS) lose this diversity while each render still looks like the data at its bin, which the per-azimuth KID
    in the classifier's features does not see.
    """
    if views.ndim != 5 or views.shape[0] < 2:
        raise ValueError(f"views must be [B, V, 3, H, W] with B >= 2 samples, got shape {list(views.shape)}")
    return float(_body_colours(views, net).mean(1).std(0).mean())


def per_azimuth_kid(views: torch.Tensor, data: torch.Tensor, bins_of_views, *, features=None) -> list[float]:
    """KID of each view column against the data at the same bin.

    Args:
        views: ``[B, V, 3, H, W]`` renders (``B >= 2``) from cameras in bins ``bins_of_views``.
        data: ``[N, bins, 3, H, W]`` held-out data renders (every bin).
        features: a feature callable (default :func:`azimuth_features`).

    Returns:
        ``V`` floats: ``KID(views[:, v], data[:, bins_of_views[v]])``.
    """
    from .metrics import kid

    fe = azimuth_features() if features is None else features
    return [kid(views[:, v], data[:, int(b)], features=fe) for v, b in enumerate(bins_of_views)]


def two_faced(params: dict) -> dict:
    """A Janus version of voxel scenes: the front half (``x > 0``) mirrored onto the back (``x -> -x``).

    ``params``: :class:`~diffrep_lite.diffreps.VoxelNeRF` parameters (``density`` ``[B, 1, G, G, G]``,
    ``features`` ``[B, C, G, G, G]``, indexed ``[z, y, x]``); a ``background`` entry is kept as it is. The result
    shows its face from the front *and* from the back: what :func:`janus` must flag.
    """
    out = dict(params)
    for k in ("density", "features"):
        t = params[k]
        G = t.shape[-1]
        mirrored = t.flip(-1)
        back = torch.arange(G, device=t.device) < G // 2  # x < 0 half of the vertices
        out[k] = torch.where(back, mirrored, t)
    return out


# ----------------------------------------------------------------------------------------- the NeRF experiment
def face_sides(predicted, camera_bins=None, bins: int = 8) -> dict:
    """Which way each sample's views face: two-faced, faceless or consistent.

    Bin 0 looks at the face and bin ``bins / 2`` at the back (:func:`~diffrep_lite.data.object_cameras`); the
    *face side* is the bins within one of 0, the *back side* those within one of ``bins / 2``. A view *shows a
    face* when its predicted bin is on the face side, *the back* when it is on the back side.

    Args:
        predicted: ``[B, V]`` predicted bins (:func:`predict_bins`); camera_bins: the ``V`` cameras' bins
            (default ``0 .. V-1``).

    Returns:
        ``{"two_faced": bool [B] (a face at a back-side camera), "faceless": bool [B] (the back at a face-side
        camera), "consistent": bool [B] (neither)}``.
    """
    pred = torch.as_tensor(predicted, dtype=torch.long)
    cam = torch.arange(pred.shape[1]) if camera_bins is None else torch.as_tensor(list(camera_bins), dtype=torch.long)
    if pred.ndim != 2 or cam.numel() != pred.shape[1]:
        raise ValueError(f"predicted must be [B, V] with one camera bin per column, got {list(pred.shape)} and "
                         f"{cam.numel()} camera bins")
    face = circular_distance(pred, torch.zeros_like(pred), bins) <= 1
    back = circular_distance(pred, torch.full_like(pred, bins // 2), bins) <= 1
    cam_face = circular_distance(cam, torch.zeros_like(cam), bins) <= 1
    cam_back = circular_distance(cam, torch.full_like(cam, bins // 2), bins) <= 1
    two = (face & cam_back[None]).any(1)
    less = (back & cam_face[None]).any(1)
    return {"two_faced": two, "faceless": less, "consistent": ~(two | less)}


def object_nerf(sampled_bins=(0, 1, 2, 4, 5, 6), *, grid: int = 12, n_samples: int | None = None, bins: int | None = None,
                **kw):
    """The voxel NeRF that samples a toy object with a view-conditioned prior: cameras at the azimuth bins
    ``sampled_bins`` (of :func:`~diffrep_lite.data.object_cameras`), each view conditioned on its own bin, raw RGB
    features over the data's plain background, a ``grid^3`` voxel grid (``2 grid`` samples per ray).
    Extra keywords go to :class:`~diffrep_lite.diffreps.VoxelNeRF` (default ``init_features=0``); ``view_conds``
    replaces the per-view labels (default: each view's own bin), e.g. the null label for views the prior is not
    told the camera of."""
    from .data import OBJECT_BINS, object_cameras, object_renderer

    bins = OBJECT_BINS if bins is None else bins
    sampled = [int(b) for b in sampled_bins]
    if not sampled or any(not 0 <= b < bins for b in sampled) or len(set(sampled)) != len(sampled):
        raise ValueError(f"sampled_bins must be distinct azimuth bins in [0, {bins}), got {list(sampled_bins)}")
    cams = object_cameras(bins)
    kw.setdefault("init_features", 0.0)
    kw.setdefault("view_conds", sampled)
    return object_renderer(bins, cameras=[cams[b] for b in sampled], grid=grid,
                           n_samples=2 * grid if n_samples is None else n_samples, **kw)


def evaluate_scenes(nerf, params: dict, data: torch.Tensor, *, sampled_bins=None, features=None,
                    net: AzimuthNet | None = None, up_to_rotation: bool = False) -> dict:
    """Render sampled scenes from every azimuth bin and score their 3-D consistency.

    Args:
        nerf: the :func:`object_nerf` the scenes were sampled with (its renderer settings are reused).
        params: its parameters ``[B, ...]`` (``B >= 2``).
        data: held-out data renders ``[N, bins, 3, H, W]`` (e.g. ``toy_objects(256, 0, start=10**6)``).
        sampled_bins: the bins the NeRF was sampled on (default: its view conditions); the others are held out.
        up_to_rotation: score Janus up to a turn of the object (:func:`janus`); for priors not told the cameras.
            The per-azimuth KID is not affected (it compares each bin with data at that bin).

    Returns:
        ``{"renders": [B, bins, 3, H, W], "janus": bool [B] (over all bins), "janus_rate", "janus_rate_sampled"
        (the sampled views only), "janus_rate_heldout" (the held-out views only), "view_accuracy",
        "colour_spread" (mean of :func:`colour_spread` over the samples, all bins), "colour_diversity"
        (:func:`colour_diversity` of the sampled views), "kid_pooled" (all renders
        against all data renders, whatever their bins: what the views look like, not whether they fit their bin),
        "kid_per_bin": [bins], "kid_sampled", "kid_heldout" (means over those bins), "sampled_bins",
        "heldout_bins", "predicted": long [B, bins] (the classifier's bin for every render; see :func:`face_sides`),
        "rotation": long [B] (:func:`janus`'s offset; 0 unless ``up_to_rotation``)}``.
    """
    from .data import object_cameras
    from .metrics import kid

    bins = data.shape[1]
    if sampled_bins is None:
        sampled = [int(b) for b in nerf.view_conds()]
        if len(set(sampled)) != len(sampled) or not all(0 <= b < bins for b in sampled):
            raise ValueError(f"sampled_bins: the NeRF's view conditions {sampled} are not its cameras' bins "
                             f"(0 to {bins - 1}, one per camera); pass the cameras' bins as sampled_bins")
    else:
        sampled = [int(b) for b in sampled_bins]
    held = [b for b in range(bins) if b not in sampled]
    with torch.no_grad():
        x = nerf.render(params, object_cameras(bins)).clamp(-1, 1).float().cpu()
    net = load_azimuth_net() if net is None else net
    pred = predict_bins(x, net)  # one classifier pass; each Janus rate below reads its views' columns

    def janus_of(views_bins):
        cols = torch.as_tensor(views_bins, dtype=torch.long)
        return _janus_of_predictions(pred[:, cols], cols, net.bins, JANUS_THRESHOLD, up_to_rotation)

    every, on = janus_of(list(range(bins))), janus_of(sampled)
    fe = azimuth_features() if features is None else features
    kids = per_azimuth_kid(x, data, range(bins), features=fe)
    out = {"renders": x, "predicted": pred, "rotation": every["rotation"], "janus": every["janus"],
           "janus_rate": every["rate"],
           "janus_rate_sampled": on["rate"],
           "view_accuracy": every["view_accuracy"], "kid_per_bin": kids,
           "colour_spread": float(colour_spread(x, net).mean()), "colour_diversity": colour_diversity(x[:, sampled], net),
           "kid_pooled": kid(x.flatten(0, 1), data.flatten(0, 1), features=fe),
           "kid_sampled": sum(kids[b] for b in sampled) / len(sampled), "sampled_bins": sampled, "heldout_bins": held}
    if held:
        out["janus_rate_heldout"] = janus_of(held)["rate"]
        out["kid_heldout"] = sum(kids[b] for b in held) / len(held)
    return out
