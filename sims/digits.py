"""Real augmentations: the 8×8 handwritten digits as augmentation sets (docs/theory.md §7).

``data.source = "digits"`` replaces the synthetic layouts of :mod:`sims.data` by real images:
scikit-learn's copy of the UCI handwritten digits (1,797 grey images of 8×8 pixels, 10
classes, read from inside its wheel by ``sklearn.datasets.load_digits``: nothing is
downloaded). The structure fields of the data section keep their meaning:

* a **cluster** is a digit class: ``n_clusters = m`` takes the digits ``0, 1, …, m − 1``
  (at most 10);
* a **set** is one image: ``sets_per_cluster`` takes the first ``n_c`` images of class ``c``
  in the data set's order (at most the class's count, :data:`CLASS_COUNTS`);
* its ``points_per_set = P`` points are ``P`` augmentations of the image, each drawn
  independently, with intensities ``x/16`` in ``[0, 1]``:

  ``a = j · S_{(dx, dy)} R_θ x``, with ``dx, dy`` uniform integers in ``[−s, s]``
  (``data.shift``), ``θ`` uniform in ``[−r, r]`` degrees (``data.rotation``) about the image's
  centre, and ``j`` uniform in ``[1 − ι, 1 + ι]`` (``data.jitter``);

  ``R_θ`` resamples bilinearly (``scipy.ndimage.map_coordinates``, order 1, zero outside the
  image), ``S`` moves the image by whole pixels and fills with zeros. The names in
  ``data.augmentations`` (a comma-separated subset of :data:`AUGMENTATIONS`) say which of the
  three are applied; the others stay at the identity.

The draws of image ``i`` (its index in the whole data set) come from
``numpy.random.default_rng([data.seed, i])``: the same seed gives the same points, and an
image's augmentations do not depend on which other images are taken. With ``input_dim`` below
the 64 pixels, the points are projected on the leading ``input_dim`` principal axes of the
1,797 original images (scikit-learn's PCA, fitted on the whole set, so the map is fixed and
not learned; an orthogonal projection after centring, it never lengthens a distance,
docs/theory.md §7). The points are rounded to float32 once, so the float64 copy the
certificate and the class minimum read (:func:`sims.data.design_points`) is exactly the data
the compiled training program holds as a constant.

Sets need not be disjoint: two images whose augmentations coincide give a set distance 0,
which the certificate reports (``min_gap``; across classes, ``Δ = 0``), never hidden.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from theory import validate

#: the augmentation names ``data.augmentations`` may list (comma-separated).
AUGMENTATIONS = ("shift", "rotate", "jitter")
#: images of each digit class 0–9 in ``sklearn.datasets.load_digits`` (1,797 in all; a test
#: checks them against the data), so a request is refused before any image is read.
CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
#: the side of an image and its number of pixels (the input dimension without PCA).
SIDE = 8
PIXELS = SIDE * SIDE
#: the data set's intensities are integers 0–16; points hold ``x / INTENSITY_SCALE``.
INTENSITY_SCALE = 16.0
#: the largest ``data.shift`` (pixels): a shift of the whole side leaves an empty image.
MAX_SHIFT = SIDE - 1
#: the largest ``data.rotation`` (degrees).
MAX_ROTATION = 180.0
#: the default values of the digits fields of ``[data]`` (:class:`sims.config.MixtureSpec`).
DEFAULTS = {"augmentations": "shift,rotate,jitter", "shift": 1, "rotation": 10.0, "jitter": 0.1, "seed": 0}


def augmentation_names(value: Any, field: str = "data.augmentations") -> tuple[str, ...]:
    """The names of a comma-separated ``data.augmentations`` (spaces ignored), validated.

    Example:
      >>> augmentation_names("shift, jitter")
      ('shift', 'jitter')
      >>> augmentation_names("shift,blur")
      Traceback (most recent call last):
      ...
      ValueError: data.augmentations: unknown augmentation 'blur' (valid: shift, rotate, jitter), got 'shift,blur'
    """
    if not isinstance(value, str):
        validate.fail(field, value, f"must be a comma-separated text of augmentation names "
                                    f"({', '.join(AUGMENTATIONS)})")
    names = tuple(part.strip() for part in value.split(","))
    if names == ("",):
        return ()
    for name in names:
        if name not in AUGMENTATIONS:
            validate.fail(field, value, f"unknown augmentation {name!r} (valid: {', '.join(AUGMENTATIONS)})")
    if len(set(names)) != len(names):
        validate.fail(field, value, "names an augmentation twice")
    return names


def check_fields(spec) -> None:
    """The digits source's rules on a :class:`sims.config.MixtureSpec` (one-line ``ValueError``).

    At most 10 classes, at most :data:`CLASS_COUNTS` images of each, known augmentation names,
    ``0 <= shift <= 7`` pixels, ``0 <= rotation <= 180`` degrees, ``0 <= jitter < 1``, at most 64
    input dimensions (the pixels; fewer: PCA). (``points_per_set >= 2`` and ``n_clusters >= 2``
    are the mixture's own rules.)
    """
    if spec.n_clusters > len(CLASS_COUNTS):
        validate.fail("data.n_clusters", spec.n_clusters,
                      f"at most {len(CLASS_COUNTS)} with data.source \"digits\" (the digit classes 0-9)")
    for digit, count in enumerate(spec.set_counts):
        if count > CLASS_COUNTS[digit]:
            validate.fail("data.sets_per_cluster", spec.sets_per_cluster,
                          f"digit {digit} holds {CLASS_COUNTS[digit]} images, fewer than the {count} asked")
    if spec.input_dim > PIXELS:
        validate.fail("data.input_dim", spec.input_dim,
                      f"at most {PIXELS} with data.source \"digits\" (the 8x8 pixels; fewer: PCA)")
    augmentation_names(spec.augmentations)


def image_indices(set_counts) -> np.ndarray:
    """Indices (into the whole data set) of the images taken: the first ``n_c`` of each digit ``c``."""
    _, labels = digit_images()
    return np.concatenate([np.flatnonzero(labels == digit)[:n] for digit, n in enumerate(set_counts)])


@functools.lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as float64 ``[1797, 8, 8]`` with intensities in ``[0, 1]``, and their labels.

    Read by ``sklearn.datasets.load_digits`` from the copy inside scikit-learn's wheel.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.asarray(data.images, np.float64) / INTENSITY_SCALE
    images.flags.writeable = False
    labels = np.asarray(data.target, np.int64)
    labels.flags.writeable = False
    return images, labels


def augmentation_parameters(indices, points_per_set: int, shift: int, rotation: float, jitter: float,
                            names, seed: int) -> dict[str, np.ndarray]:
    """The draws behind :func:`augment`, ``[len(indices), points_per_set]`` each.

    ``dx``, ``dy``: integers uniform in ``[−shift, shift]``; ``angle``: degrees uniform in
    ``[−rotation, rotation]``; ``factor``: uniform in ``[1 − jitter, 1 + jitter]``; an
    augmentation not in ``names`` is the identity (0, 0 and 1). Image ``i`` draws from
    ``numpy.random.default_rng([seed, i])``, all four every time, so that leaving one
    augmentation out changes no other draw.
    """
    indices = np.asarray(indices, np.int64)
    n, p = indices.size, int(points_per_set)
    out = {"dx": np.zeros((n, p), np.int64), "dy": np.zeros((n, p), np.int64),
           "angle": np.zeros((n, p)), "factor": np.ones((n, p))}
    for row, index in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(index)])
        dx, dy = rng.integers(-shift, shift + 1, size=(2, p))
        angle = rng.uniform(-rotation, rotation, size=p)
        factor = rng.uniform(1.0 - jitter, 1.0 + jitter, size=p)
        if "shift" in names:
            out["dx"][row], out["dy"][row] = dx, dy
        if "rotate" in names:
            out["angle"][row] = angle
        if "jitter" in names:
            out["factor"][row] = factor
    return out


def augment(images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Augmented images ``[n, P, 64]`` from images ``[n, 8, 8]`` and :func:`augmentation_parameters`.

    Pixel ``(y, x)`` of augmentation ``a = j · S_{(dx, dy)} R_θ x`` reads the image at
    ``c + R_θ^{-1}((y − dy, x − dx) − c)``, ``c = (3.5, 3.5)`` the centre, bilinearly, 0
    outside it, and is multiplied by ``j``; ``R_θ`` turns the image as
    ``scipy.ndimage.rotate(x, θ, reshape=False, order=1)`` does. For ``θ = 0`` the coordinates are whole pixels and
    the shift is exact. One ``scipy.ndimage.map_coordinates`` call for every image and draw.
    """
    from scipy import ndimage

    images = np.asarray(images, np.float64)
    n, p = params["dx"].shape
    centre = (SIDE - 1) / 2.0
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    y = yy - params["dy"][..., None, None] - centre
    x = xx - params["dx"][..., None, None] - centre
    theta = np.deg2rad(params["angle"])[..., None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    # rotation by θ about the centre (the sense of ``scipy.ndimage.rotate(x, θ)``): the source
    # of an output pixel is its offset rotated back
    src_y = cos * y + sin * x + centre
    src_x = -sin * y + cos * x + centre
    which = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None, None], src_y.shape)
    moved = ndimage.map_coordinates(images, [which, src_y, src_x], order=1, mode="constant", cval=0.0)
    return (moved * params["factor"][..., None, None]).reshape(n, p, PIXELS)


@functools.lru_cache(maxsize=1)
def _pca_basis() -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[64]`` and principal axes ``[64, 64]`` (rows, by decreasing variance) of the
    1,797 original images (``sklearn.decomposition.PCA`` with the full SVD: deterministic,
    signs fixed by scikit-learn's convention)."""
    from sklearn.decomposition import PCA

    images, _ = digit_images()
    pca = PCA(n_components=PIXELS, svd_solver="full").fit(images.reshape(-1, PIXELS))
    return np.asarray(pca.mean_, np.float64), np.asarray(pca.components_, np.float64)


def project(points: np.ndarray, dim: int) -> np.ndarray:
    """``points [..., 64]`` on the leading ``dim`` principal axes of the whole data set
    (centred by its mean); unchanged when ``dim`` is 64."""
    if dim >= PIXELS:
        return points
    mean, axes = _pca_basis()
    return (points - mean) @ axes[:dim].T


@functools.lru_cache(maxsize=64)
def digits_points(spec) -> np.ndarray:
    """The points ``[n_sets, P, input_dim]`` of a digits :class:`~sims.config.MixtureSpec`,
    float64 values of float32 numbers (read-only; computed once per specification)."""
    indices = image_indices(spec.set_counts)
    images, _ = digit_images()
    params = augmentation_parameters(indices, spec.points_per_set, spec.shift, spec.rotation, spec.jitter,
                                     augmentation_names(spec.augmentations), spec.seed)
    points = project(augment(images[indices], params), spec.input_dim)
    points = points.astype(np.float32).astype(np.float64)
    points.flags.writeable = False
    return points


def diameter_bound(spec) -> float:
    """An upper bound on the distance between two points of any digits data of ``spec``:
    every pixel is in ``[0, 1 + jitter]`` (bilinear resampling and zero fill keep ``[0, 1]``),
    so two images are at most ``8·(1 + jitter)`` apart, and PCA does not lengthen it."""
    jitter = float(spec.jitter) if "jitter" in augmentation_names(spec.augmentations) else 0.0
    return SIDE * (1.0 + jitter)
