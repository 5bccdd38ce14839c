"""Lipschitz chain bound and predicted regimes (docs/theory.md §3.D and §3.E).

Everything here follows from a :class:`theory.certificates.Certificate` and a certified
Lipschitz bound ``L``; no training is involved.

* **Chain bound** (docs/theory.md §3.D). If ``f`` is ``L``-Lipschitz with spread
  ``r = max_s max_{x∈A_s} ‖f(x) − z̄_s‖`` (``z̄_s`` the mean of ``f`` on set ``s``), then for
  two sets of one cluster joined by a set-graph path of length ``p`` with ``h`` hops,
  ``‖z̄_s − z̄_s'‖ <= L·p + 2·h·r``: each hop crosses the closest pair of points ``a, a'`` of
  two sets (``‖f(a) − f(a')‖ <= L·g``) and enters and leaves a set (``<= r`` each).
* **Regimes** (docs/theory.md §3.E), with ``e_m = sqrt(2m/(m−1))`` the simplex edge, ``Δ`` the
  smallest distance between clusters and ``D_c`` the largest chain diameter:
  ``collapsed`` if ``L·Δ < e_m`` (the class cannot place two clusters an edge apart),
  ``split`` if ``L·D_c >= e_m`` (the class can pull a cluster's sets an edge apart),
  ``preserved`` in between. The lines ``L = e_m/Δ`` and ``L = e_m/D_c`` are the theory
  overlay of the phase diagram. They are sufficient-condition lines from the chain bound,
  not the paper's constants; how far the measured boundary sits from them is a result.

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.D and §3.E.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from theory import validate
from theory.certificates import Certificate
from theory.floors import simplex_edge

#: the three regimes, in the order they appear as ``L`` grows (docs/theory.md §3.E, §5).
REGIMES = ("collapsed", "preserved", "split")
#: the certified regime where the lower bounds do not decide between regimes (docs/theory.md §3.G).
UNDECIDED = "undecided"
#: an embedding is ``collapsed`` when ``max(W, B) < COLLAPSE_FRACTION · e_m`` (docs/theory.md §5).
COLLAPSE_FRACTION = 0.5
#: otherwise it is ``split`` when ``W / B >= SPLIT_RATIO`` (docs/theory.md §5), else ``preserved``.
SPLIT_RATIO = 0.5


def _nonnegative(name: str, value) -> np.ndarray:
    return validate.real_array(name, value, nonnegative=True)


def _edge(n_clusters, name: str = "n_clusters"):
    """``e_m`` for ``n_clusters`` checked under the caller's name (integers >= 2)."""
    m = validate.integer_array(name, n_clusters, 2)
    return simplex_edge(int(m) if m.ndim == 0 else m)


def _check_certificate(certificate) -> Certificate:
    if not isinstance(certificate, Certificate):
        raise ValueError(f"certificate: must be a theory.Certificate, got {type(certificate).__name__}")
    return certificate


@dataclass(frozen=True)
class ChainBound:
    """Per-cluster bounds on the learned within-cluster diameter (docs/theory.md §3.D).

    Attributes:
      tight: ``L·D_c + 2·h·r`` with ``h = max_hops`` of the cluster, shape
        ``broadcast(L, r).shape + (n_clusters,)``.
      loose: ``L·D_c + 2·(n_c − 1)·r`` with ``n_c`` the cluster's number of sets, same shape.
    """

    tight: np.ndarray
    loose: np.ndarray

    @property
    def tight_max(self):
        """Largest tight bound over clusters (float for scalar inputs)."""
        out = self.tight.max(axis=-1)
        return float(out) if out.ndim == 0 else out

    @property
    def loose_max(self):
        """Largest loose bound over clusters (float for scalar inputs)."""
        out = self.loose.max(axis=-1)
        return float(out) if out.ndim == 0 else out


def chain_bound(lipschitz, certificate: Certificate, spread) -> ChainBound:
    """Bound on ``max ‖z̄_s − z̄_s'‖`` over sets of each cluster (docs/theory.md §3.D).

    ``tight_c = L·D_c + 2·h_c·r`` and ``loose_c = L·D_c + 2·(n_c − 1)·r``

    where ``h_c`` is the cluster's ``max_hops``: the largest hop count of a shortest path
    between two of its sets, so the tight bound holds for every pair of sets (it equals the
    hop count of the diameter path on the chain, interleaved and lattice geometries). It
    holds exactly for the ball head and on point-cloud sets; a violation means the
    certified ``L`` is wrong.

    Args:
      lipschitz: certified Lipschitz bound ``L >= 0`` (scalar or array).
      certificate: the data's :class:`~theory.certificates.Certificate`.
      spread: ``r = max_s max_{x∈A_s} ‖f(x) − z̄_s‖ >= 0`` (scalar or array broadcasting
        with ``lipschitz``).

    Returns:
      :class:`ChainBound` with arrays of shape ``broadcast(L, r).shape + (n_clusters,)``.

    Example:
      >>> from theory import certificate
      >>> pts = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [3.0, 0], [3.1, 0]])
      >>> cert = certificate(pts, [0, 1, 2, 3, 4], [0, 0, 0, 1, 1])
      >>> np.round(chain_bound(2.0, cert, 0.01).tight, 6).tolist()
      [0.42, 0.22]

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.D.
    """
    cert = _check_certificate(certificate)
    lip = _nonnegative("lipschitz", lipschitz)
    r = _nonnegative("spread", spread)
    try:
        lip, r = np.broadcast_arrays(lip, r)
    except ValueError:
        raise ValueError(
            f"lipschitz and spread must broadcast together, got shapes {np.shape(lipschitz)} and {np.shape(spread)}"
        ) from None
    diameter = np.array([c.chain_diameter for c in cert.clusters])
    hops = np.array([c.max_hops for c in cert.clusters], dtype=np.float64)
    sets = np.array([c.n_sets for c in cert.clusters], dtype=np.float64)
    lip, r = lip[..., None], r[..., None]
    return ChainBound(tight=lip * diameter + 2.0 * hops * r, loose=lip * diameter + 2.0 * (sets - 1.0) * r)


def phase_lines(cluster_distance, chain_diameter, n_clusters):
    """The two theory lines of the phase diagram (docs/theory.md §3.E).

    ``collapse_line = e_m / Δ`` and ``split_line = e_m / D_c`` with ``e_m = sqrt(2m/(m−1))``:
    below the first the class is too weak to separate clusters, above the second it can
    split a cluster. Sufficient-condition lines, not the paper's constants. A zero distance
    gives an infinite line.

    Args:
      cluster_distance: ``Δ >= 0`` (scalar or array).
      chain_diameter: ``D_c >= 0`` (scalar or array).
      n_clusters: ``m >= 2``.

    Returns:
      ``(collapse_line, split_line)``: python floats for scalar input, else float arrays.

    Example:
      >>> [round(v, 4) for v in phase_lines(1.0, 0.15, 3)]
      [1.7321, 11.547]
    """
    delta = _nonnegative("cluster_distance", cluster_distance)
    diameter = _nonnegative("chain_diameter", chain_diameter)
    edge = np.asarray(_edge(n_clusters), dtype=np.float64)
    with np.errstate(divide="ignore"):
        collapse = np.where(delta > 0, edge / np.where(delta > 0, delta, 1.0), np.inf)
        split = np.where(diameter > 0, edge / np.where(diameter > 0, diameter, 1.0), np.inf)
    if collapse.ndim == 0 and split.ndim == 0:
        return float(collapse), float(split)
    return collapse, split


#: the certified split constant ``c`` (docs/theory.md §3.G, §7): the smallest ``L·D_c/e_m`` at which
#: ``infonce-lab constant``'s adversarial search certified every set-level minimiser of an
#: instance split (an interleaved instance; README, "The constant, searched adversarially";
#: ``figures/constant.csv``, which a test compares it with). No condition ``L·D_c <= c·e_m``
#: guarantees preservation with ``c`` at or above it.
CERTIFIED_SPLIT_CONSTANT = 0.439


@dataclass(frozen=True)
class Condition:
    """Whether the theorem's condition can hold for some ``L`` (docs/theory.md §7).

    Attributes:
      ratio: ``D_c/Δ``, the largest chain diameter over the smallest distance between clusters.
      chain_diameter: ``D_c`` (largest over clusters).
      cluster_distance: ``Δ`` (smallest over pairs of clusters).
      constant: the split constant ``c`` it is compared with.
      holds: ``ratio < constant``: some ``L`` has ``L·Δ >= e_m`` and ``L·D_c < c·e_m``.
      caps: ``(e_m/Δ, c·e_m/D_c)``, the caps between which it holds (an empty range when not).
    """

    ratio: float
    chain_diameter: float
    cluster_distance: float
    constant: float
    holds: bool
    caps: tuple[float, float]


def condition(certificate: Certificate, constant: float = CERTIFIED_SPLIT_CONSTANT) -> Condition:
    """The one number that decides whether the condition can hold for any ``L``: ``D_c/Δ``.

    Clusters are kept apart only if ``L·Δ >= e_m`` (docs/theory.md §3.E), and no minimiser is
    certified unsplit beyond ``L·D_c = c·e_m`` (``c`` the certified split constant). Both hold
    for some ``L`` iff ``e_m/Δ <= L < c·e_m/D_c``, i.e. iff ``D_c/Δ < c``, whatever ``m``.
    ``Δ = 0`` (two clusters share a point) gives ``inf``.

    Example:
      >>> pts = np.array([[0.0, 0], [0.1, 0], [0.3, 0], [5.0, 0], [5.2, 0]])
      >>> from theory.certificates import certificate
      >>> round(condition(certificate(pts, [0, 1, 2, 3, 4], [0, 0, 0, 1, 1])).ratio, 6)
      0.06383
    """
    cert = _check_certificate(certificate)
    c = validate.real("constant", constant, positive=True)
    diameter, delta = float(cert.chain_diameter), float(cert.cluster_distance)
    ratio = diameter / delta if delta > 0 else math.inf
    collapse, split = phase_lines(delta, diameter, cert.n_clusters)
    return Condition(ratio=ratio, chain_diameter=diameter, cluster_distance=delta, constant=c,
                     holds=bool(ratio < c), caps=(collapse, c * split))


def classify_regime(lipschitz, cluster_distance, chain_diameter, n_clusters):
    """Predicted regime from ``L``, ``Δ`` and ``D_c`` (docs/theory.md §3.E).

    ``collapsed`` if ``L·Δ < e_m``; else ``split`` if ``L·D_c >= e_m``; else ``preserved``.
    Monotone in ``L``: collapsed, then preserved, then split (the preserved band is empty
    when ``D_c >= Δ``).

    Args:
      lipschitz: ``L >= 0`` (scalar or array); the other arguments broadcast with it.
      cluster_distance: ``Δ >= 0``.
      chain_diameter: ``D_c >= 0``.
      n_clusters: ``m >= 2``.

    Returns:
      A regime name (str) for scalar input, else an array of names.

    Example:
      >>> classify_regime([0.5, 3.0, 20.0], 1.0, 0.15, 3).tolist()
      ['collapsed', 'preserved', 'split']
    """
    lip = _nonnegative("lipschitz", lipschitz)
    delta = _nonnegative("cluster_distance", cluster_distance)
    diameter = _nonnegative("chain_diameter", chain_diameter)
    edge = np.asarray(_edge(n_clusters), dtype=np.float64)
    regime = np.where(lip * delta < edge, "collapsed", np.where(lip * diameter >= edge, "split", "preserved"))
    return str(regime) if regime.ndim == 0 else regime


@dataclass(frozen=True)
class RegimePrediction:
    """Predicted regime and the phase-diagram lines for one data set (docs/theory.md §3.E).

    Attributes:
      regime: ``"collapsed"``, ``"preserved"`` or ``"split"`` (an array for array ``L``).
      lipschitz: the ``L`` it was computed for.
      collapse_line: ``e_m/Δ``, the smallest ``L`` that can separate clusters.
      split_line: ``e_m/D_c``, the ``L`` from which a cluster's sets can be split.
      edge: ``e_m``.
      cluster_distance: ``Δ``.
      chain_diameter: ``D_c`` (largest over clusters).
    """

    regime: object
    lipschitz: object
    collapse_line: float
    split_line: float
    edge: float
    cluster_distance: float
    chain_diameter: float


def predict_regime(certificate: Certificate, lipschitz, n_clusters=None) -> RegimePrediction:
    """Predict the regime of an ``L``-Lipschitz minimiser on certified data (docs/theory.md §3.E).

    ``collapsed`` if ``L·Δ < e_m``; ``split`` if ``L·D_c >= e_m``; else ``preserved``, with
    ``Δ = certificate.cluster_distance``, ``D_c = certificate.chain_diameter`` (largest over
    clusters) and ``e_m = sqrt(2m/(m−1))``. The lines ``L = e_m/Δ`` and ``L = e_m/D_c`` are
    sufficient-condition lines from the chain bound, not the paper's constants.

    Args:
      certificate: the data's :class:`~theory.certificates.Certificate`.
      lipschitz: certified ``L >= 0`` (scalar or array).
      n_clusters: ``m`` for ``e_m``; defaults to the number of clusters in the certificate.

    Returns:
      :class:`RegimePrediction` (``regime`` is a str for scalar ``L``, else an array).

    Example:
      >>> from theory import certificate
      >>> pts = np.array([[0.0, 0], [0.1, 0], [3.0, 0], [3.1, 0]])
      >>> cert = certificate(pts, [0, 1, 2, 3], [0, 0, 1, 1])
      >>> predict_regime(cert, 1.0).regime
      'preserved'

    Reference: Parulekar et al., COLT 2023; docs/theory.md §3.E.
    """
    cert = _check_certificate(certificate)
    m = cert.n_clusters if n_clusters is None else int(validate.integer("n_clusters", n_clusters, minimum=2))
    edge = _edge(m)
    delta, diameter = cert.cluster_distance, cert.chain_diameter
    collapse, split = phase_lines(delta, diameter, m)
    lip = _nonnegative("lipschitz", lipschitz)
    regime = classify_regime(lip, delta, diameter, m)
    return RegimePrediction(
        regime=regime,
        lipschitz=float(lip) if lip.ndim == 0 else lip,
        collapse_line=collapse,
        split_line=split,
        edge=edge,
        cluster_distance=delta,
        chain_diameter=diameter,
    )


def classify_embedding(within: float, between: float, n_clusters: int) -> str:
    """Regime of a representation from its geometry (docs/theory.md §5), one rule for every map.

    With ``W`` the within-cluster diameter of the set means, ``B`` the smallest distance
    between cluster means and ``e_m = sqrt(2m/(m−1))``: ``collapsed`` if
    ``max(W, B) < e_m/2`` (nothing is separated); otherwise ``split`` if ``W/B >= 1/2``
    (sets inside a cluster are pulled apart at least half as far as clusters are); otherwise
    ``preserved``. Used alike for trained networks and for the class minimum
    (:func:`theory.lipschitz_minimum`). Non-finite input gives ``""``.

    Example:
      >>> classify_embedding(0.1, 1.7, 3), classify_embedding(0.9, 1.2, 3)
      ('preserved', 'split')
    """
    for name, value in (("within", within), ("between", between)):
        if not validate.is_real(value):
            validate.fail(name, value, "must be a real number")
    edge = _edge(validate.integer("n_clusters", n_clusters, minimum=2))
    if not (np.isfinite(float(within)) and np.isfinite(float(between))):
        return ""
    if max(within, between) < COLLAPSE_FRACTION * edge:
        return "collapsed"
    if within >= SPLIT_RATIO * between:
        return "split"
    return "preserved"


def cluster_geometry(set_means, set_clusters) -> tuple[float, float]:
    """``(W, B)`` of an embedding from its set means (docs/theory.md §5).

    ``W = max_c max_{s,s' ∈ c} ‖z̄_s − z̄_s'‖`` and ``B = min_{c≠c'} ‖z̄_c − z̄_c'‖`` with
    ``z̄_c`` the mean of cluster ``c``'s set means (every set carries equal weight).

    Args:
      set_means: ``(S, d)`` mean embedding of each set.
      set_clusters: ``(S,)`` cluster label of each set (at least two clusters).

    Returns:
      ``(within_diameter, between_distance)`` as python floats.

    Example:
      >>> cluster_geometry([[0.0, 0], [0.1, 0], [1.0, 0]], [0, 0, 1])
      (0.1, 0.95)
    """
    z = validate.real_array("set_means", set_means)
    labels, index = np.unique(np.asarray(set_clusters), return_inverse=True)
    if z.ndim != 2 or index.shape != (z.shape[0],):
        raise ValueError(f"set_means: must be (S, d) with one cluster per row, got shapes {z.shape} and {index.shape}")
    if labels.size < 2:
        raise ValueError("set_clusters: a single cluster; W and B need at least 2")
    dist = np.sqrt(np.maximum(np.sum((z[:, None] - z[None]) ** 2, -1), 0.0))
    within = float(np.max(np.where(index[:, None] == index[None, :], dist, 0.0)))
    member = np.eye(labels.size)[index].T
    centres = member @ z / member.sum(1, keepdims=True)
    cdist = np.sqrt(np.maximum(np.sum((centres[:, None] - centres[None]) ** 2, -1), 0.0))
    between = float(np.min(cdist[~np.eye(labels.size, dtype=bool)]))
    return within, between


def majority_regime(labels) -> str:
    """The most frequent regime among ``labels`` (one per seed), with one tie rule everywhere.

    A tie goes to the regime reached at the larger ``L``, in the order of :data:`REGIMES`
    (split over preserved over collapsed): one seed that got there shows the class can.
    Empty labels (runs without a regime, e.g. diverged) are not counted; with none left the
    result is ``""``.

    Example:
      >>> majority_regime(["preserved", "split"]), majority_regime(["collapsed"] * 2 + ["split"])
      ('split', 'collapsed')
    """
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        validate.fail("labels", labels, "must be a sequence of regime names")
    counts = {r: 0 for r in REGIMES}
    for label in labels:
        if label:
            if label not in counts:
                raise ValueError(f"labels: unknown regime {label!r}; valid: {', '.join(REGIMES)}")
            counts[label] += 1
    if not any(counts.values()):
        return ""
    return max(REGIMES, key=lambda r: (counts[r], REGIMES.index(r)))
