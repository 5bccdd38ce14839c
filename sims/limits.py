"""The size model: what one run may ask, checked before anything is allocated.

The numbers are :mod:`theory.limits` (one table for the whole project, each limit under its
own name); this module holds the functions that apply the training run's limits (``RUN_*``
and the structural ones). A refusal is one ``ValueError`` line naming the field, its value,
the estimate and the limit. The model has three parts, structure, scales and memory, and
only the last one depends on the machine.

**Structure and scales** hold whatever machine reads the configuration: every configuration
(:class:`sims.config.ExperimentConfig`) passes :func:`check_config` when it is built (its data
section :func:`check_data`), and the swept values of a direct ``train(key, swept)`` call pass
:func:`check_scales`. So a run folder written on one machine is read (summarised, plotted,
resumed) on any other.

* Structure: limits on what the compiled program unrolls or the host loops over, where
  memory is not the constraint but compilation or host time is (:data:`~theory.limits.MAX_DEPTH`
  layers, :data:`~theory.limits.MAX_CLUSTERS` clusters, :data:`~theory.limits.RUN_MAX_SETS`
  sets, :data:`~theory.limits.MAX_INPUT_DIM` for the ``D × D`` orthogonal embedding,
  :data:`~theory.limits.MAX_CURVE_POINTS`, :data:`~theory.limits.RUN_MAX_STEPS`) and int32
  index ranges (:data:`~theory.limits.MAX_INDEX`).
* Scales (:func:`check_scales`): the data are computed in float32, so the layout's diameter
  ``X`` (:func:`layout_diameter`, in either cluster layout), its square, and ``L·X`` (what a
  network of Lipschitz bound ``L`` can make of it before its head) must stay far inside
  float32's range (:data:`~theory.limits.MAX_DIAMETER`, :data:`~theory.limits.MAX_LIPSCHITZ_SPAN`),
  and the gap δ must be resolvable next to ``X`` (``δ ≥ X · 2^-16``,
  :data:`~theory.limits.MIN_GAP_FRACTION`; float32 resolves ``2^-24``): otherwise sets that
  are apart by design would touch in float32 and every certificate would be wrong.
  Overlapping sets (δ <= 0, chain only, :func:`check_gap`) are counted in point spacings
  ``h = set_extent/(P − 1)``, which must be resolvable in the same way (``h ≥ X · 2^-16``).

**Memory** depends on the machine that trains, so it is checked where runs start, not when a
configuration is built (:func:`check_memory`: :func:`sims.train.grid_inputs` and
:func:`sims.train.make_train`, the sweep engine before it writes or trains anything, and
``infonce-lab sweep --dry-run`` for the groups it lists):
:func:`run_bytes` is a rough upper estimate of one run's working memory in float32 words,
doubled for XLA's temporaries, and one run must fit in
:data:`~theory.limits.MEMORY_FRACTION` of this machine's memory (:func:`memory_limit`;
``INFONCE_LAB_MEMORY_LIMIT`` in bytes overrides it, e.g. for an accelerator with less memory
than its host). A sweep chunks its runs so that a chunk fits its memory budget, so one run is
what must fit.

The static layout of one cluster (:func:`layout_units`, :func:`shared_spacings`) is defined
here, below :mod:`sims.data`, which builds the points from it: the diameter bound and the
generator read one definition, and this module imports nothing of :mod:`sims` but
:mod:`sims.digits` (the digits' diameter bound), which imports nothing of :mod:`sims` either.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import numpy as np

from sims import digits
from theory.limits import (
    MAX_CLUSTERS,
    MAX_CURVE_POINTS,
    MAX_DEPTH,
    MAX_DIAMETER,
    MAX_INDEX,
    MAX_INPUT_DIM,
    MAX_LIPSCHITZ_SPAN,
    MEMORY_ENV,
    MEMORY_FRACTION,
    MIN_GAP_FRACTION,
    MIN_OWN_POINTS,
    RUN_MAX_POINTS,
    RUN_MAX_SETS,
    RUN_MAX_STEPS,
)

#: teeth per comb in the interleaved geometry (two periods make the set graph a ring).
TEETH = 2


def lattice_sequence(n: int, p: int) -> np.ndarray:
    """Colour sequence of length ``n·p``: each colour ``p`` times, every pair consecutive once."""
    seq: list[int] = []
    for d in range(1, n // 2 + 1):
        for x in range(n):
            seq += [x, (x + d) % n]
    counts = np.bincount(np.array(seq, dtype=int), minlength=n) if seq else np.zeros(n, int)
    rest = p - counts  # equal for every colour: each block emits every colour twice
    for _ in range(int(rest[0])):
        seq += list(range(n))
    return np.array(seq, dtype=int)


def layout_units(geometry: str, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Static layout of one cluster: x in units of δ and y in units of the extent (or δ).

    Returns ``(x_units [n, p], y_units [n, p])``. For chain and interleaved, y is a fraction of
    ``set_extent``; for the lattice, y is in units of δ (the grid is δ-spaced in both axes).
    """
    i = np.arange(p)
    if geometry == "chain":
        x = np.repeat(np.arange(n)[:, None], p, axis=1).astype(float)
        y = np.broadcast_to(i / (p - 1), (n, p)).astype(float)
        return x, y
    if geometry == "interleaved":
        tooth = i % TEETH
        rows = -(-p // TEETH)
        x = (tooth[None, :] * n + np.arange(n)[:, None]).astype(float)
        y = np.broadcast_to((i // TEETH) / max(rows - 1, 1), (n, p)).astype(float)
        return x, y
    if geometry == "lattice":
        seq = lattice_sequence(n, p)
        width = int(np.ceil(np.sqrt(n * p)))
        t = np.arange(n * p)
        row, col = t // width, t % width
        col = np.where(row % 2 == 0, col, width - 1 - col)
        x = np.zeros((n, p))
        y = np.zeros((n, p))
        for s in range(n):
            idx = np.flatnonzero(seq == s)
            x[s], y[s] = col[idx], row[idx]
        return x, y
    raise ValueError(f"data.geometry: unknown geometry {geometry!r}")


def shared_spacings(gap, extent, p: int, xp=np):
    """``r = round(|δ| / h)`` with ``h = set_extent / (P − 1)``: the point spacings that
    consecutive overlapping sets share (they share ``r + 1`` points); 0 where δ > 0.

    Computed in float32 as ``round((−δ)·(P − 1) / set_extent)`` (round half to even) both
    on the host (``xp=numpy``, any shape) and in the compiled program (``xp=jax.numpy``,
    traced float32 δ), so the host copy of the data (:func:`sims.data.design_points`)
    realises the same overlap as the training data.
    """
    if xp is np:
        g = np.asarray(gap, np.float32)
        e = np.asarray(extent, np.float32)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = np.round(-g * np.float32(p - 1) / e)
        return np.where(g > 0, 0.0, r).astype(np.float64) + 0.0  # + 0.0: no −0 at δ = 0
    r = xp.round(-gap * (p - 1) / extent)
    return xp.where(gap > 0, xp.zeros_like(r), r)


def fixed_spacings(gap, extent, n: int, p: int, xp=np):
    """The ``fixed`` overlap layout's :func:`shared_spacings`: ``r = round(|δ| / h₀)`` for a
    cluster of ``n`` sets, ``h₀ = ℓ/(P − 1)`` the point spacing of a set of length
    ``ℓ = (set_extent − (n − 1)·δ)/n`` (:func:`fixed_set_length`); 0 where δ > 0.

    Computed in float32 as ``round((−δ)·n(P − 1) / (set_extent − (n − 1)·δ))`` both on the host
    (``xp=numpy``) and in the compiled program (``xp=jax.numpy``), like :func:`shared_spacings`.
    """
    if xp is np:
        g = np.asarray(gap, np.float32)
        e = np.asarray(extent, np.float32)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = np.round(-g * np.float32(n * (p - 1)) / (e - np.float32(n - 1) * g))
        return np.where(g > 0, 0.0, r).astype(np.float64) + 0.0  # + 0.0: no −0 at δ = 0
    r = xp.round(-gap * (n * (p - 1)) / (extent - (n - 1) * gap))
    return xp.where(gap > 0, xp.zeros_like(r), r)


def fixed_set_length(gap, extent, n: int):
    """``ℓ = (set_extent − (n − 1)·δ)/n``: the length of a set of a ``fixed`` chain cluster of ``n``
    sets, whose sets with gaps δ > 0 (or overlaps ``|δ|``) between them span ``set_extent``."""
    return (extent - (n - 1) * gap) / n


def overlap_grid(spec, n: int, gap, extent) -> tuple[np.ndarray, np.ndarray]:
    """``(r, h)`` of a chain cluster of ``n`` sets, in float64 (scalars or arrays).

    ``r``: the point spacings consecutive sets share (``k = r + 1`` shared points) where
    δ <= 0, else 0; ``h``: the spacing of the grid its points lie on where δ <= 0, and of each
    set's points where δ > 0. ``stretch``: ``r`` of :func:`shared_spacings` and ``h =
    set_extent/(P − 1)``. ``fixed``: ``r`` of :func:`fixed_spacings`; where δ <= 0, ``h =
    set_extent/(n(P − 1) − (n − 1)r)`` (the line is ``set_extent`` long exactly), where δ > 0
    ``h = ℓ/(P − 1)`` (:func:`fixed_set_length`).
    """
    gap, extent = np.broadcast_arrays(np.asarray(gap, np.float64), np.asarray(extent, np.float64))
    p = spec.points_per_set
    if spec.overlap_layout != "fixed":
        return shared_spacings(gap, extent, p), extent / (p - 1)
    r = fixed_spacings(gap, extent, n, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(gap > 0, fixed_set_length(gap, extent, n) / (p - 1),
                     extent / (n * (p - 1) - (n - 1) * r))
    return r, h


def memory_limit() -> int:
    """Bytes one run may use: ``$INFONCE_LAB_MEMORY_LIMIT``, else half of physical memory."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            value = int(float(text))
        except ValueError:
            raise ValueError(f"{MEMORY_ENV}: must be a number of bytes, got {text!r}") from None
        if value <= 0:
            raise ValueError(f"{MEMORY_ENV}: must be a positive number of bytes, got {text!r}")
        return value
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 8 * 2**30
    return int(MEMORY_FRACTION * total)


def run_terms(config) -> dict[str, int]:
    """The terms of :func:`run_bytes` in float32 words, keyed by the field that drives each."""
    d, m, t = config.data, config.model, config.train
    per_anchor = t.negatives if t.negative_mode == "independent" else 0
    shared = t.negatives if t.negative_mode == "shared" else 0
    step_points = t.batch_size * (2 + per_anchor) + shared
    eval_points = t.eval_batch * (2 + per_anchor) + shared
    widths = m.width * m.depth + m.out_dim + d.input_dim
    params = d.input_dim * m.width + max(m.depth - 1, 0) * m.width**2 + m.width * m.out_dim
    step_words = 3 * step_points * widths + 3 * t.batch_size * (t.negatives + 1)
    eval_words = eval_points * widths + t.eval_batch * (t.negatives + 1)
    return {
        "train.batch_size" if t.batch_size * (2 + per_anchor) >= shared else "train.negatives":
            step_words,
        "train.eval_batch": eval_words,
        "model.width": 4 * params,
        "data.points_per_set": d.n_sets * d.points_per_set * d.input_dim,
        "data.input_dim": d.input_dim**2,
        "train.steps": 3 * t.steps + t.curve_points,  # per-step keys and losses
    }


def run_bytes(config) -> int:
    """A rough upper estimate of one run's memory, in bytes.

    Counted in float32 words and doubled for XLA's temporaries:

    * activations: the points embedded in one step, ``2·batch + K`` (shared negatives) or
      ``batch·(K + 2)`` (independent), times the layer widths ``width·depth + out_dim``,
      times 3 (forward values kept for the backward pass, and their gradients), plus the
      similarity logits ``batch·(K + 1)`` (×3 as well); or the evaluation batch once,
      whichever is larger;
    * parameters with their gradients and Adam's two moments (×4);
    * the materialised point clouds ``n_sets·points_per_set·input_dim`` and the ``D × D``
      orthogonal matrix of the random embedding;
    * one key and one loss per step.
    """
    terms = run_terms(config)
    step = terms.pop("train.batch_size", 0) + terms.pop("train.negatives", 0)
    evaluation = terms.pop("train.eval_batch")
    return int(2 * 4 * (max(step, evaluation) + sum(terms.values())))


@functools.lru_cache(maxsize=4096)
def _layout_span(geometry: str, counts: tuple[int, ...], points_per_set: int) -> tuple[float, float]:
    """``(x span in gaps, y span in gaps for the lattice)`` of the layout, summed over clusters."""
    xs, ys = 0.0, 0.0
    for n in sorted(set(counts)):
        xu, yu = layout_units(geometry, n, points_per_set)
        xs += float(xu.max()) * counts.count(n)
        ys = max(ys, float(yu.max()))
    return xs, ys


@functools.lru_cache(maxsize=4096)
def _cluster_units(geometry: str, n: int, points_per_set: int) -> tuple[float, float]:
    """``(x span in gaps, y span in gaps for the lattice)`` of one cluster of ``n`` sets."""
    xu, yu = layout_units(geometry, n, points_per_set)
    return float(xu.max()), float(yu.max())


def _spacing(spec, extent: np.ndarray) -> np.ndarray:
    """``h = set_extent / (P − 1)``, the point spacing of a segment."""
    return extent / (spec.points_per_set - 1)


def _overlap_length(spec, n: int, gap: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Length ``((n − 1)(P − 1 − r) + P − 1)·h`` of a chain of ``n`` overlapping sets
    (``set_extent`` in the ``fixed`` layout, :func:`overlap_grid`)."""
    p = spec.points_per_set
    r, h = overlap_grid(spec, n, gap, extent)
    return ((n - 1) * (p - 1 - r) + (p - 1)) * h


def cluster_box(spec, n: int, gap, extent) -> tuple[np.ndarray, np.ndarray]:
    """``(width, height)`` of one cluster's 2-D layout of ``n`` sets (every coordinate in
    ``[0, width] × [0, height]``, a point at the origin), in float64.

    In every layout two opposite corners of the box are data points (the chain's ends, the
    combs' outer teeth, the serpentine lattice's first point and the far end of its last
    row), so ``hypot(width, height)`` is the cluster's diameter exactly (its extent,
    :func:`sims.data.design_certificate`).
    """
    gap = np.asarray(gap, np.float64)
    if spec.geometry == "chain" and spec.overlap_layout == "fixed":  # one line, set_extent long
        return 0.0 * gap, np.asarray(extent, np.float64) * np.ones_like(gap)
    xw, yh = _cluster_units(spec.geometry, n, spec.points_per_set)
    width = xw * gap
    height = yh * gap if spec.geometry == "lattice" else extent * np.ones_like(gap)
    if spec.geometry == "chain":
        over = gap <= 0
        if np.any(over):
            width = np.where(over, 0.0, width)
            height = np.where(over, _overlap_length(spec, n, gap, extent), height)
    return width, height


def layout_diameter(spec, gap, separation, extent) -> np.ndarray:
    """The diameter of the whole data layout (an upper bound), for scalars or arrays.

    ``row``: ``hypot(Σ_c w_c + (m − 1)·Δ, max_c h_c)`` (exact for the chain), with ``w_c × h_c``
    each cluster's box; for overlapping chains (δ <= 0: width 0, height ``h_c`` the chain's
    length) exactly ``max_c hypot(max(c, m − 1 − c)·Δ, h_c)``.
    ``simplex``: each cluster's points are at most ``R_c = hypot(w_c + Δ/√2, h_c)`` from the
    origin, and points of two clusters (orthogonal planes) are ``sqrt(|p|² + |q|²)`` apart,
    so ``sqrt(R_1² + R_2²)`` with ``R_1 >= R_2`` the two largest radii bounds every distance
    (within a cluster, ``hypot(w_c, h_c) <= R_c``); exact when the farthest corner of the two
    largest clusters is a data point (the chain).
    """
    gap, separation, extent = (np.asarray(v, np.float64) for v in (gap, separation, extent))
    if spec.source == "digits":  # real images: the swept layout values do not enter
        return np.full(np.broadcast(gap, separation, extent).shape, digits.diameter_bound(spec))
    if spec.cluster_layout == "simplex":
        radius = {n: np.hypot(cluster_box(spec, n, gap, extent)[0] + separation / np.sqrt(2.0),
                              cluster_box(spec, n, gap, extent)[1])
                  for n in set(spec.set_counts)}
        radii = np.stack(np.broadcast_arrays(*(radius[n] for n in spec.set_counts)))
        top = np.sort(radii, axis=0)[-2:]
        return np.sqrt(top[0] ** 2 + top[1] ** 2)
    if spec.geometry == "chain" and spec.overlap_layout == "fixed":
        # every cluster a segment set_extent long along y, clusters Δ apart along x
        return np.hypot((spec.n_clusters - 1) * separation, extent * np.ones_like(gap))
    xs, ys = _layout_span(spec.geometry, spec.set_counts, spec.points_per_set)
    width = xs * gap + (spec.n_clusters - 1) * separation
    height = ys * gap if spec.geometry == "lattice" else extent
    if spec.geometry == "chain" and np.any(gap <= 0):
        # overlapping chains are vertical segments from y = 0, clusters Δ apart along x:
        # cluster c's farthest point is the far end cluster's point at y = 0 (or its own ends)
        m = spec.n_clusters
        reach = np.maximum(np.arange(m), m - 1 - np.arange(m)) * 1.0
        length = {n: _overlap_length(spec, n, gap, extent) for n in set(spec.set_counts)}
        exact = np.max(np.stack(np.broadcast_arrays(
            *(np.hypot(reach[c] * separation, length[n]) for c, n in enumerate(spec.set_counts)))), axis=0)
        return np.where(gap <= 0, exact, np.hypot(width, height))
    return np.hypot(width, height)


def _first(values: np.ndarray, bad: np.ndarray) -> float:
    return float(np.broadcast_to(values, bad.shape)[bad].flat[0])


def own_points_needed(spec) -> tuple[int, int]:
    """``(a, b)``: with consecutive sets sharing ``k`` points, a set keeps ``P − a·k`` points of
    its own (``a = 2`` when a cluster has an inner set, ``n >= 3``; else 1), which must be at
    least :data:`MIN_OWN_POINTS`: so ``r = k − 1 <= b``, the largest shared spacing count."""
    a = 2 if max(spec.set_counts) >= 3 else 1
    return a, (spec.points_per_set - MIN_OWN_POINTS) // a - 1


def check_gap(spec, gap, extent) -> None:
    """Refuse gaps the generator does not define: overlapping sets (δ <= 0) and, in the
    ``fixed`` overlap layout, gaps too wide for the line.

    δ <= 0 is defined for the chain geometry only, and the overlap, ``k = r + 1`` shared
    points with ``r = round(|δ|/h)``, ``h = set_extent/(P − 1)`` (:func:`shared_spacings`),
    must leave every set at least :data:`MIN_OWN_POINTS` points of its own: ``P − 2k >= 2``
    when a cluster has three sets or more (inner sets share with two neighbours), else
    ``P − k >= 2``. Then only consecutive sets meet. So ``|δ| < (b + 1/2)·h`` with ``b`` of
    :func:`own_points_needed` (about ``set_extent/2`` for ``n >= 3``; the rounding of ``|δ|/h``
    decides at exactly ``b + 1/2``), and δ <= 0 needs ``P >= 4`` (``P >= 3`` with two sets).
    The ``fixed`` layout counts ``r`` in its sets' own spacing (:func:`fixed_spacings`), so
    ``|δ| < (b + 1/2)·set_extent / (n(P − 1) − (n − 1)(b + 1/2))``, about ``set_extent/(n + 1)``;
    and its sets must have a length, ``ℓ = (set_extent − (n − 1)·δ)/n > 0``: ``δ <
    set_extent/(n − 1)``. Both bind hardest for the largest cluster, ``n = max(set_counts)``.
    """
    gap, extent = np.broadcast_arrays(np.asarray(gap, np.float64), np.asarray(extent, np.float64))
    over = gap <= 0
    n = max(spec.set_counts)
    fixed = spec.overlap_layout == "fixed"
    if fixed:
        wide = ~over & ((n - 1) * gap >= extent)
        if wide.any():
            raise ValueError(f"data.gap: with data.overlap_layout \"fixed\" the {n} sets of a cluster span "
                             f"set_extent {_first(extent, wide):g}, so the gap must be below set_extent/"
                             f"{n - 1} = {_first(extent, wide) / (n - 1):.6g}, got {_first(gap, wide)!r}")
    if not over.any():
        return
    if spec.geometry != "chain":
        raise ValueError(f"data.gap: <= 0 (overlapping sets) is defined for the chain geometry only, "
                         f"got {_first(gap, over)!r}")
    a, most = own_points_needed(spec)
    if most < 0:
        raise ValueError(f"data.gap: <= 0 (overlapping sets) needs points_per_set >= "
                         f"{MIN_OWN_POINTS + a} so that every set keeps {MIN_OWN_POINTS} points of its "
                         f"own, got {_first(gap, over)!r} with points_per_set={spec.points_per_set}")
    r, h = overlap_grid(spec, n, gap, extent)
    bad = over & (r > most)
    if bad.any():
        e, half = _first(extent, bad), most + 0.5
        limit = half * e / (n * (spec.points_per_set - 1) - (n - 1) * half) if fixed \
            else half * e / (spec.points_per_set - 1)
        shared = int(_first(r, bad)) + 1
        raise ValueError(f"data.gap: an overlap of {-_first(gap, bad):.6g} shares {shared} of the "
                         f"{spec.points_per_set} points of neighbouring sets, leaving a set fewer than "
                         f"{MIN_OWN_POINTS} points of its own; must be > {-limit:.6g} (set_extent "
                         f"{e:g}), got {_first(gap, bad)!r}")


def check_scales(spec, model=None, swept: Mapping[str, Any] | None = None) -> None:
    """Refuse data (and Lipschitz) scales whose float32 computation would be wrong.

    Also the overlap rules of :func:`check_gap` (δ <= 0). The resolution check is ``δ >=
    X·2^-16`` for δ > 0, and for overlapping sets the point spacing ``h = set_extent/(P − 1)``
    (what the overlap is counted in) ``>= X·2^-16``; in the ``fixed`` overlap layout the
    spacing of its largest cluster's points (:func:`overlap_grid`) for every gap.

    Args:
      spec: the :class:`~sims.config.MixtureSpec` (its static fields and default values).
      model: the :class:`~sims.config.ModelConfig` (for ``L·X``), or ``None``.
      swept: swept values (scalars or arrays, by flat name) that override the fields.
    """
    values = {"gap": spec.gap, "cluster_separation": spec.cluster_separation,
              "set_extent": spec.set_extent, **({"lipschitz": model.lipschitz} if model else {}),
              **(swept or {})}
    gap, sep, extent = (np.asarray(values[n], np.float64)
                        for n in ("gap", "cluster_separation", "set_extent"))
    if spec.source == "digits":
        _check_digits_swept(spec, values)
        if model is not None:
            check_lipschitz_span(model, values["lipschitz"], layout_diameter(spec, gap, sep, extent))
        return
    check_gap(spec, gap, extent)
    diameter = layout_diameter(spec, gap, sep, extent)
    big = diameter > MAX_DIAMETER
    if big.any():
        name = "cluster_separation" if np.any((sep * max(spec.n_clusters - 1, 1) >= diameter / 3) & big) \
            else "set_extent" if np.any((extent >= diameter / 3) & big) else "gap"
        raise ValueError(f"data.{name}: the data's diameter would be {_first(diameter, big):.3g}, "
                         f"above {MAX_DIAMETER:.0e} (computed in float32), got "
                         f"{_first(np.asarray(values[name], np.float64), big)!r}")
    positive = gap > 0
    fine = positive & (gap < MIN_GAP_FRACTION * diameter)
    if fine.any():
        raise ValueError(f"data.gap: must be at least diameter/{int(1 / MIN_GAP_FRACTION)} = "
                         f"{_first(MIN_GAP_FRACTION * diameter, fine):.3g} so that float32 resolves "
                         f"it next to the data's diameter {_first(diameter, fine):.3g}, got "
                         f"{_first(gap, fine)!r}")
    fixed = spec.geometry == "chain" and spec.overlap_layout == "fixed"
    # the fixed layout's smallest spacing is its largest cluster's (overlap_grid), checked for
    # every gap: a set as short as set_extent/n or less must be resolved too
    spacing = overlap_grid(spec, max(spec.set_counts), gap, extent)[1] if fixed else _spacing(spec, extent)
    fine = (fixed | ~positive) & (spacing < MIN_GAP_FRACTION * diameter)
    if fine.any():
        what = ("with data.overlap_layout \"fixed\" needs the point spacing of its sets"
                if fixed else "<= 0 (overlapping sets) needs the point spacing set_extent/(points_per_set - 1)")
        raise ValueError(f"data.gap: {what} = {_first(spacing, fine):.3g} to be at least "
                         f"diameter/{int(1 / MIN_GAP_FRACTION)} = {_first(MIN_GAP_FRACTION * diameter, fine):.3g} "
                         f"so that float32 resolves it next to the data's diameter "
                         f"{_first(diameter, fine):.3g}, got {_first(gap, fine)!r}")
    if model is not None:
        check_lipschitz_span(model, values["lipschitz"], diameter)


def _check_digits_swept(spec, values: Mapping[str, Any]) -> None:
    """The digits have no layout: swept ``gap``, ``cluster_separation`` and ``set_extent``
    must keep the data section's values (its defaults), or they would be ignored."""
    for name in ("gap", "cluster_separation", "set_extent"):
        value = np.asarray(values[name], np.float64)
        other = value != np.float64(np.float32(getattr(spec, name)))
        if np.any(other & (value != getattr(spec, name))):
            raise ValueError(f"data.{name}: applies to data.source 'synthetic' only (the digits have no "
                             f"layout), got {_first(value, other)!r}")


def check_lipschitz_span(model, lipschitz, diameter) -> None:
    """Refuse a capped class whose ``lipschitz × diameter`` leaves float32's safe range."""
    if not model.capped:
        return
    lip = np.asarray(lipschitz, np.float64)
    span = lip * diameter
    wide = span > MAX_LIPSCHITZ_SPAN
    if wide.any():
        raise ValueError(f"model.lipschitz: lipschitz × data diameter would be "
                         f"{_first(span, wide):.3g}, above {MAX_LIPSCHITZ_SPAN:.0e} (float32), "
                         f"got {_first(lip, wide)!r}")


def check_data(spec) -> None:
    """The limits that concern the data alone (structure and scales)."""
    for field, value, limit in (("data.n_clusters", spec.n_clusters, MAX_CLUSTERS),
                                ("data.input_dim", spec.input_dim, MAX_INPUT_DIM)):
        if value > limit:
            _refuse(field, value, f"must be at most {limit:,} (size model, theory.limits)")
    if spec.cluster_layout == "simplex" and spec.input_dim < 2 * spec.n_clusters:
        _refuse("data.input_dim", spec.input_dim,
                f"the simplex cluster layout needs at least 2·n_clusters = {2 * spec.n_clusters} "
                f"(one plane per cluster)")
    if spec.n_sets > RUN_MAX_SETS:
        _refuse("data.sets_per_cluster", spec.sets_per_cluster,
                f"{spec.n_sets:,} sets in all, more than {RUN_MAX_SETS:,} (size model, theory.limits)")
    if spec.n_sets * spec.points_per_set > RUN_MAX_POINTS:
        _refuse("data.points_per_set", spec.points_per_set,
                f"{spec.n_sets * spec.points_per_set:,} points in all, more than {RUN_MAX_POINTS:,} "
                "(size model, theory.limits)")
    check_scales(spec)


def _refuse(field: str, value: Any, why: str) -> None:
    raise ValueError(f"{field}: {why}, got {value!r}")


def check_structure(config) -> None:
    """The structural limits of the module docstring (one line naming the field)."""
    d, m, t = config.data, config.model, config.train
    for field, value, limit in (
        ("model.depth", m.depth, MAX_DEPTH), ("train.steps", t.steps, RUN_MAX_STEPS),
        ("train.curve_points", t.curve_points, MAX_CURVE_POINTS),
    ):
        if value > limit:
            _refuse(field, value, f"must be at most {limit:,} (size model, theory.limits)")
    per_anchor = t.negatives if t.negative_mode == "independent" else 1
    big_k = "train.negatives"
    for field, count in (
        (big_k if t.negatives * per_anchor > t.batch_size else "train.batch_size",
         3 * t.batch_size + t.negatives * per_anchor),
        (big_k if t.negatives > t.eval_batch else "train.eval_batch", t.eval_batch * (t.negatives + 2)),
        ("model.width", m.width * max(m.width, d.input_dim)),
    ):
        if count > MAX_INDEX:
            section, name = field.split(".")
            _refuse(field, getattr(getattr(config, section), name),
                    f"needs arrays of {count:,} entries, more than int32 indexes ({MAX_INDEX:,})")


def check_memory(config) -> None:
    """Refuse a run whose memory estimate (:func:`run_bytes`) exceeds :func:`memory_limit`.

    Checked where runs start on this machine (training, a sweep before it writes anything),
    never when a configuration is read: a run folder made under a larger limit stays readable.
    """
    need, limit = run_bytes(config), memory_limit()
    if need > limit:
        terms = run_terms(config)
        field = max(terms, key=terms.get)
        section, name = field.split(".")
        value = getattr(getattr(config, section), name)
        needs, has = f"{need / 2**30:.3g} GiB", f"{limit / 2**30:.3g} GiB"
        if needs == has:  # close: the bytes tell them apart
            needs, has = f"{needs} ({need:,} bytes)", f"{has} ({limit:,} bytes)"
        _refuse(field, value, f"one run needs ~{needs} (size model, theory.limits), more than this "
                              f"machine's limit of {has} ({MEMORY_ENV})")


def check_config(config) -> None:
    """The limits of one configuration that hold on every machine: structure and scales.

    The data's own limits (:func:`check_data`) are checked when its section is built; the
    memory estimate (:func:`check_memory`) where a run starts.
    """
    check_structure(config)
    spec = config.data  # its own scales were checked when it was built (check_data)
    check_lipschitz_span(config.model, config.model.lipschitz,
                         layout_diameter(spec, spec.gap, spec.cluster_separation, spec.set_extent))
