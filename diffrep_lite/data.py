"""Small data sets that need no download: bundled with a PyPI package, or procedural.

``load_digits16`` gives scikit-learn's bundled handwritten digits (1797 images of 8x8, values 0..16,
ten classes) upsampled to 16x16 and scaled to ``[-1, 1]``: the training data of the shipped model
(:func:`diffrep_lite.priors.load_digits_prior`). scikit-learn is imported lazily (it is in the
``notebooks`` extra, not a hard dependency).

``toy_objects`` renders procedural 3-D creatures (a body, a face on the front, a tail on the back) with the
package's own voxel renderer from a ring of azimuth bins: the training data of the shipped view-conditioned
model (:func:`diffrep_lite.priors.load_objects_prior`). ``blob_scenes`` makes the random blob scenes of the
exact 3-D toy prior (:func:`diffrep_lite.priors.scene_mixture`). Both are deterministic in their seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["load_digits16", "upsample_digits", "digits_split", "object_cameras", "toy_object_params",
           "object_renderer", "toy_objects", "objects_split", "blob_scenes",
           "toy_object_attributes", "OBJECT_ATTRIBUTES", "SAMPLE_PHOTOS", "load_photo", "image_patches"]


def upsample_digits(images, size: int = 16) -> torch.Tensor:
    """Map raw 8x8 digit images (values 0..16) to ``[N, 1, size, size]`` float32 in ``[-1, 1]``.

    Bilinear upsampling (``align_corners=False``), then ``x / 16 * 2 - 1``.

    Args:
        images: array-like ``[N, 8, 8]`` with values in ``[0, 16]``.
        size: output side length in pixels (>= 8).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 3:
        raise ValueError(f"images must have shape [N, 8, 8], got {list(x.shape)}")
    x = (x / 16.0)[:, None]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0)


def load_digits16(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(images [1797, 1, size, size] float32 in [-1, 1], labels [1797] long)``.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits16 needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    return upsample_digits(d.images, size), torch.as_tensor(d.target, dtype=torch.long)


def digits_split(size: int = 16, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's digits split into ``{"train": (x, y), "heldout": (x, y)}``: a stratified 80/20 split.

    For each class in turn, a ``torch.randperm`` (one generator seeded with ``seed``) picks the first
    fifth of that class's images as held out (359 of 1797 for ``seed=0``). The shipped DDPM trains on
    ``"train"`` only; the shipped KID feature net uses the same split; quality figures compare samples
    with ``"heldout"``.
    """
    x, y = load_digits16(size)
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[: len(idx) // 5])
    held = torch.cat(held)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[held] = False
    return {"train": (x[mask], y[mask]), "heldout": (x[held], y[held])}


# ----------------------------------------------------------------------------------------------- toy 3-D objects
#: Defaults of the procedural 3-D data set (the shipped view-conditioned model's training data).
OBJECT_BINS = 8               # azimuth bins (bin b: azimuth 360 b / bins degrees; bin 0 looks at the face)
OBJECT_ELEVATION = 20.0       # degrees above the ground plane, fixed
OBJECT_RADIUS = 2.5           # camera distance (the scene box is [-1, 1]^3)
OBJECT_FOV = 32.0             # horizontal field of view, degrees
OBJECT_BACKGROUND = (0.1, 0.2, 0.4)   # plain background colour, in [-1, 1] (a light grey-blue)
OBJECT_GRID = 32              # voxel grid the data are rendered from
FACE_COLOUR = (1.0, 0.95, 0.2)        # the "face" marker (bright yellow), in [-1, 1]
TAIL_COLOUR = (-0.9, -0.9, -0.9)      # the tail at the back (near black)


def object_cameras(bins: int = OBJECT_BINS, elevation: float = OBJECT_ELEVATION, *, radius: float = OBJECT_RADIUS,
                   fov: float = OBJECT_FOV, azimuths=None):
    """The cameras of the toy 3-D objects: ``bins`` azimuths ``360 b / bins`` (``b = 0 .. bins-1``) at one
    ``elevation`` (or the given ``azimuths`` in degrees), looking at the origin from ``radius``.

    Bin 0 (azimuth 0, the ``+x`` axis) sees the object's face; bin ``bins / 2`` sees its back (the tail).
    """
    from .diffreps.nerf import cameras_on_sphere

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    return cameras_on_sphere(bins if azimuths is None else azimuths, elevation, radius=radius, fov=fov)


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB (all in [0, 1]) on float64 tensors of equal shape -> ``[..., 3]``."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[..., None] - (v * s)[..., None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _object_draws(seed: int, i: int) -> torch.Tensor:
    """The 12 uniform numbers that define toy object ``i`` of ``seed`` (its own generator)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(i))
    return torch.rand(12, generator=g, dtype=torch.float64)


def _object_body(u):
    ax, ay, az = 0.38 + 0.12 * u[0], 0.26 + 0.1 * u[1], 0.26 + 0.14 * u[2]  # body semi-axes
    cz = -0.15 + 0.1 * u[3]  # body centre height
    body_c = _hsv_to_rgb((0.2 + 0.85 * u[4]) % 1.0, 0.55 + 0.4 * u[5], 0.4 + 0.35 * u[6]) * 2 - 1
    return ax, ay, az, cz, body_c


#: Names of the columns of :func:`toy_object_attributes`.
OBJECT_ATTRIBUTES = ("body_r", "body_g", "body_b", "length", "width", "height", "centre_z", "ears")


def toy_object_attributes(n: int, seed: int = 0, *, start: int = 0) -> torch.Tensor:
    """The generating attributes of toy objects ``start .. start+n-1`` of ``seed``: ``[n, 8]`` float32, columns
    :data:`OBJECT_ATTRIBUTES` (body colour in ``[-1, 1]``, body semi-axes, body centre height, ears 0/1). The
    azimuth classifier of :mod:`diffrep_lite.consistency` also regresses these, so its features see appearance."""
    rows = []
    for i in range(start, start + n):
        u = _object_draws(seed, i)
        ax, ay, az, cz, body_c = _object_body(u)
        rows.append(torch.cat([body_c, torch.stack([ax, ay, az, cz]), (u[10] < 0.5).double()[None]]))
    return torch.stack(rows).float()


def toy_object_params(n: int, seed: int = 0, *, start: int = 0, grid: int = OBJECT_GRID, peak_density: float = 40.0,
                      density_shift: float = -1.0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """``n`` procedural 3-D objects as :class:`~diffrep_lite.diffreps.VoxelNeRF` parameters (RGB features in
    ``[-1, 1]``, ``output="raw"``) on a ``grid^3`` voxel grid over ``[-1, 1]^3``.

    Object ``i`` (``start <= i < start + n``) is drawn from its own generator seeded with ``(seed, i)``, so any
    index range of one ``seed`` is the same whatever the batch. Each object is a little creature facing ``+x``
    (azimuth 0): an ellipsoid body of random size and colour (random hue away from yellow, saturation
    0.55-0.95, value 0.4-0.75), a bright yellow **face** disc on its front (``+x``), a near-black **tail** ball on its back
    (``-x``) and, with probability 1/2, two ears on top in the body's colour. Front, back and the two sides look
    different from one another at 16 px, so a two-faced ("Janus") object is visible.

    Densities are ``peak_density * sum_parts sigmoid((1 - r_part) / 0.08)`` (``r`` the ellipsoidal radius of the
    part), stored as raw values ``softplus^{-1}(sigma) - density_shift``; each vertex's colour is a softmax blend
    of the parts' colours by (about) its signed depth in each part, face and tail drawn over the body.
    """
    from .diffreps.nerf import inverse_softplus, voxel_positions

    for name, v in (("n", n), ("grid", grid)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    pos = voxel_positions(grid, 1.0, dtype=torch.float64)  # [G, G, G, 3]
    face_c = torch.tensor(FACE_COLOUR, dtype=torch.float64)
    tail_c = torch.tensor(TAIL_COLOUR, dtype=torch.float64)
    dens, feats = [], []
    for i in range(start, start + n):
        u = _object_draws(seed, i)
        ax, ay, az, cz, body_c = _object_body(u)
        fr = 0.16 + 0.04 * u[7]  # face disc radius
        fz = cz + (0.05 + 0.15 * u[8]) * az  # face height on the front
        tr = 0.11 + 0.05 * u[9]
        ears = bool(u[10] < 0.5)
        # parts: (centre, semi-axes, colour, colour priority)
        parts = [((0.0, 0.0, cz), (ax, ay, az), body_c, 0.0),
                 ((ax, 0.0, fz), (0.6 * fr, fr, fr), face_c, 1.0),
                 ((-ax - 0.4 * tr, 0.0, cz), (tr, tr, tr), tail_c, 1.0)]
        if ears:
            er = 0.09 + 0.04 * u[11]
            for side in (-1.0, 1.0):
                parts.append(((0.15 * ax, side * 0.55 * ay, cz + 0.92 * az), (er, er, 1.4 * er), body_c * 0.8, 0.0))
        occ, logits, cols = [], [], []
        for centre, axes, colour, w in parts:
            r = ((pos - torch.tensor(centre, dtype=torch.float64)) / torch.tensor(axes, dtype=torch.float64)).norm(dim=-1)
            occ.append(torch.sigmoid((1 - r) / 0.08))
            logits.append((1 - r) * min(axes) / 0.02 + w)  # ~ signed depth in the part, plus a priority
            cols.append(colour)
        sigma = peak_density * torch.stack(occ, -1).sum(-1)
        wts = torch.softmax(torch.stack(logits, -1), -1)  # [G, G, G, P]
        col = wts @ torch.stack(cols)  # [G, G, G, 3]
        dens.append(inverse_softplus(sigma.clamp_min(1e-4)) - density_shift)
        feats.append(col.permute(3, 0, 1, 2))
    return {"density": torch.stack(dens)[:, None].to(dtype), "features": torch.stack(feats).to(dtype)}


def object_renderer(bins: int = OBJECT_BINS, resolution: int = 16, *, grid: int = OBJECT_GRID, cameras=None, **kw):
    """The :class:`~diffrep_lite.diffreps.VoxelNeRF` that renders the toy objects: raw RGB features, the plain
    background ``OBJECT_BACKGROUND``, ``2 grid`` samples per ray, cameras :func:`object_cameras` ``(bins)``
    unless ``cameras`` are given. Extra keywords go to ``VoxelNeRF``."""
    from .diffreps.nerf import VoxelNeRF

    cams = object_cameras(bins) if cameras is None else cameras
    kw.setdefault("background", OBJECT_BACKGROUND)
    return VoxelNeRF(cams, resolution, grid=grid, channels=3, output="raw", **kw)


def toy_objects(n: int, seed: int = 0, *, start: int = 0, bins: int = OBJECT_BINS, resolution: int = 16,
                batch: int = 64) -> torch.Tensor:
    """Renders of ``n`` toy objects (:func:`toy_object_params`) from every azimuth bin:
    ``[n, bins, 3, resolution, resolution]`` float32 in ``[-1, 1]``, deterministic in ``(seed, start)``.

    Image ``[i, b]`` is object ``start + i`` seen from bin ``b`` (azimuth ``360 b / bins``, elevation
    ``OBJECT_ELEVATION``). Nothing is downloaded: the package's own voxel renderer makes them.
    """
    for name, v in (("n", n), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    nerf = object_renderer(bins, resolution)
    out = []
    with torch.no_grad():
        for s in range(start, start + n, batch):
            p = toy_object_params(min(batch, start + n - s), seed, start=s)
            out.append(nerf.render(p).clamp(-1, 1))
    return torch.cat(out)


def objects_split(n_train: int = 2048, n_heldout: int = 256, *, bins: int = OBJECT_BINS, resolution: int = 16,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The toy-object data set: ``{"train": [n_train, bins, 3, H, W], "heldout": [n_heldout, bins, 3, H, W]}``.

    The training objects are indices ``0 .. n_train-1`` of ``seed``, the held-out ones indices
    ``10**6 .. 10**6 + n_heldout - 1`` (disjoint, and unchanged when ``n_train`` grows).
    """
    return {"train": toy_objects(n_train, seed, bins=bins, resolution=resolution),
            "heldout": toy_objects(n_heldout, seed, start=10**6, bins=bins, resolution=resolution)}


# ----------------------------------------------------------------------------------------------- blob scenes
def blob_scenes(k: int, grid: int, *, n_blobs: int = 3, channels: int = 3, bbox_half: float = 1.0,
                peak_density: float = 30.0, radius=(0.2, 0.35), density_shift: float = -1.0,
                colour_range=(-1.0, 1.0), generator: torch.Generator | None = None, dtype=torch.float32):
    """``k`` random scenes of ``n_blobs`` coloured soft balls each, as :class:`~diffrep_lite.diffreps.VoxelNeRF`
    parameters on a ``grid^3`` voxel grid (``{"density": [k, 1, G, G, G], "features": [k, C, G, G, G]}``).

    Ball ``b`` has centre ``c_b`` (inside ``0.5 * bbox_half``), radius ``r_b`` in ``radius`` and a colour in
    ``colour_range``; the density is ``peak_density * sum_b exp(-|x - c_b|^2 / (2 (r_b/2)^2))`` smoothed to a
    ball, stored as raw values ``d = softplus^{-1}(sigma) - density_shift`` so the renderer reproduces it.
    Features are the density-weighted mean colour of the balls.
    """
    from .diffreps.nerf import inverse_softplus, voxel_positions

    g = generator
    pos = voxel_positions(grid, bbox_half, dtype=torch.float64)  # [G, G, G, 3]
    dens, feats = [], []
    for _ in range(k):
        centres = (torch.rand(n_blobs, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.5 * bbox_half
        radii = radius[0] + (radius[1] - radius[0]) * torch.rand(n_blobs, generator=g, dtype=torch.float64)
        radii = radii * bbox_half
        lo, hi = colour_range
        cols = lo + (hi - lo) * torch.rand(n_blobs, channels, generator=g, dtype=torch.float64)
        dist = (pos[..., None, :] - centres).norm(dim=-1)  # [G, G, G, n_blobs]
        w = torch.sigmoid((radii - dist) / (0.25 * radii))  # soft balls
        sigma = peak_density * w.sum(-1)
        col = (w[..., None] * cols).sum(-2) / (w.sum(-1, keepdim=True) + 1e-6)
        dens.append(inverse_softplus(sigma.clamp_min(1e-4)) - density_shift)
        feats.append(col.permute(3, 0, 1, 2))
    return {"density": torch.stack(dens)[:, None].to(dtype), "features": torch.stack(feats).to(dtype)}


# ----------------------------------------------------------------------------------------------- photo patches
#: scikit-learn's bundled photographs (427 x 640 RGB each), the offline natural images of the panorama demo.
SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")


def load_photo(name: str = "china.jpg", factor: int = 4) -> torch.Tensor:
    """One of scikit-learn's bundled photographs, shrunk by an integer ``factor`` (average pooling), as
    ``[3, H, W]`` float32 in ``[-1, 1]`` (``china.jpg`` with ``factor=4``: 106 x 160).

    Args:
        name: one of :data:`SAMPLE_PHOTOS`.
        factor: integer downsampling factor (>= 1); each output pixel is the mean of a ``factor x factor`` block.

    Raises:
        ValueError: ``name`` or ``factor`` out of range.
        ImportError: scikit-learn is not installed.
    """
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"name must be one of {list(SAMPLE_PHOTOS)}, got {name!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got {factor!r}")
    try:
        from sklearn.datasets import load_sample_image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("load_photo needs scikit-learn: pip install scikit-learn") from e
    x = torch.tensor(load_sample_image(name), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1.0
    return F.avg_pool2d(x, factor)[0]


def image_patches(image: torch.Tensor, size: int = 16, stride: int = 4) -> torch.Tensor:
    """Every ``size x size`` patch of ``image`` ``[C, H, W]`` whose corner lies on a ``stride`` grid, as
    ``[N, C, size, size]`` (row-major: ``N = (1 + (H - size) // stride) * (1 + (W - size) // stride)``).

    Raises:
        ValueError: ``image`` not ``[C, H, W]``, or ``size`` / ``stride`` not positive ints with ``size <= H, W``.
    """
    image = torch.as_tensor(image)
    if image.ndim != 3:
        raise ValueError(f"image must be [C, H, W], got shape {list(image.shape)}")
    C, H, W = image.shape
    for name, v in (("size", size), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if size > min(H, W):
        raise ValueError(f"size must be <= the image's height and width ({H}, {W}), got {size}")
    p = image.unfold(1, size, stride).unfold(2, size, stride)  # [C, nh, nw, size, size]
    return p.permute(1, 2, 0, 3, 4).reshape(-1, C, size, size).contiguous()
