"""The size model: what one run may ask of this machine, checked before anything is allocated.

Every configuration (:class:`sims.config.ExperimentConfig`) passes :func:`check_config` when
it is built, and the swept values of a direct ``train(key, swept)`` call pass
:func:`check_scales`. A refusal is one ``ValueError`` line naming the field, its value, the
estimate and the limit. The model has three parts.

**Memory** (:func:`run_bytes`): a rough upper estimate of one run's working memory in
float32 words, doubled for XLA's temporaries. One run must fit in :data:`MEMORY_FRACTION` of
this machine's memory (:func:`memory_limit`; ``INFONCE_LAB_MEMORY_LIMIT`` in bytes overrides
it, e.g. for an accelerator with less memory than its host). A sweep chunks its runs so
that a chunk fits its memory budget, so one run is what must fit.

**Structure**: limits on what the compiled program unrolls or the host loops over, where
memory is not the constraint but compilation or host time is (:data:`MAX_DEPTH` layers,
:data:`MAX_CLUSTERS` clusters, :data:`MAX_SETS` sets, :data:`MAX_INPUT_DIM` for the
``D × D`` orthogonal embedding, :data:`MAX_CURVE_POINTS`, :data:`MAX_STEPS`) and int32 index
ranges (:data:`MAX_INDEX`).

**Scales** (:func:`check_scales`): the data are computed in float32, so the layout's
diameter ``X`` (all clusters side by side), its square, and ``L·X`` (what a network of
Lipschitz bound ``L`` can make of it before its head) must stay far inside float32's range
(:data:`MAX_DIAMETER`, :data:`MAX_LIPSCHITZ_SPAN`), and the gap δ must be resolvable next to
``X`` (``δ ≥ X · 2^-16``, :data:`MIN_GAP_FRACTION`; float32 resolves ``2^-24``): otherwise
sets that are apart by design would touch in float32 and every certificate would be wrong.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import numpy as np

#: most layers of an MLP (each is its own operation in the compiled program).
MAX_DEPTH = 64
#: most clusters (the generator lays them out one by one; metrics are O(m²)).
MAX_CLUSTERS = 1024
#: most augmentation sets in all (the certificate's set graph is O(N³)).
MAX_SETS = 4096
#: most points in all (``n_sets · points_per_set``; the certificate measures all of them).
MAX_POINTS = 2**21
#: largest input dimension (the random embedding is the QR of a ``D × D`` Gaussian).
MAX_INPUT_DIM = 4096
#: most points of the returned loss curve.
MAX_CURVE_POINTS = 100_000
#: most optimisation steps of one run.
MAX_STEPS = 10**8
#: largest index of a flattened array the program builds (int32).
MAX_INDEX = 2**31 - 1
#: largest diameter of the data layout (its square, in float32, keeps a factor 2^28 of room).
MAX_DIAMETER = 1e15
#: largest ``lipschitz × diameter`` (a network's output before the head, squared in float32).
MAX_LIPSCHITZ_SPAN = 1e15
#: smallest ``gap / diameter`` (float32 resolves 2^-24 of the diameter; keep 2^8 of room).
MIN_GAP_FRACTION = 2.0**-16
#: smallest temperature: the logits (up to 2/τ for embeddings in the unit ball), the
#: per-example losses and their squares stay far inside float32's range.
MIN_TEMPERATURE = 1e-6
#: share of this machine's memory one run may use.
MEMORY_FRACTION = 0.5
#: environment variable that sets the memory limit in bytes.
MEMORY_ENV = "INFONCE_LAB_MEMORY_LIMIT"


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
def _layout_units(geometry: str, counts: tuple[int, ...], points_per_set: int) -> tuple[float, float]:
    """``(x span in gaps, y span in gaps for the lattice)`` of the layout, summed over clusters."""
    from sims.data import _layout_units as units

    xs, ys = 0.0, 0.0
    for n in sorted(set(counts)):
        xu, yu = units(geometry, n, points_per_set)
        xs += float(xu.max()) * counts.count(n)
        ys = max(ys, float(yu.max()))
    return xs, ys


def layout_diameter(spec, gap, separation, extent) -> np.ndarray:
    """The diameter of the whole data layout (an upper bound), for scalars or arrays."""
    xs, ys = _layout_units(spec.geometry, spec.set_counts, spec.points_per_set)
    gap, separation, extent = (np.asarray(v, np.float64) for v in (gap, separation, extent))
    width = xs * gap + (spec.n_clusters - 1) * separation
    height = ys * gap if spec.geometry == "lattice" else extent
    return np.hypot(width, height)


def _first(values: np.ndarray, bad: np.ndarray) -> float:
    return float(np.broadcast_to(values, bad.shape)[bad].flat[0])


def check_scales(spec, model=None, swept: Mapping[str, Any] | None = None) -> None:
    """Refuse data (and Lipschitz) scales whose float32 computation would be wrong.

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
    diameter = layout_diameter(spec, gap, sep, extent)
    big = diameter > MAX_DIAMETER
    if big.any():
        name = "cluster_separation" if np.any((sep * (spec.n_clusters - 1) >= diameter / 3) & big) \
            else "set_extent" if np.any((extent >= diameter / 3) & big) else "gap"
        raise ValueError(f"data.{name}: the data's diameter would be {_first(diameter, big):.3g}, "
                         f"above {MAX_DIAMETER:.0e} (computed in float32), got "
                         f"{_first(np.asarray(values[name], np.float64), big)!r}")
    fine = gap < MIN_GAP_FRACTION * diameter
    if fine.any():
        raise ValueError(f"data.gap: must be at least diameter/{int(1 / MIN_GAP_FRACTION)} = "
                         f"{_first(MIN_GAP_FRACTION * diameter, fine):.3g} so that float32 resolves "
                         f"it next to the data's diameter {_first(diameter, fine):.3g}, got "
                         f"{_first(gap, fine)!r}")
    if model is not None and model.capped:
        lip = np.asarray(values["lipschitz"], np.float64)
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
            _refuse(field, value, f"must be at most {limit:,} (size model, sims.limits)")
    if spec.n_sets > MAX_SETS:
        _refuse("data.sets_per_cluster", spec.sets_per_cluster,
                f"{spec.n_sets:,} sets in all, more than {MAX_SETS:,} (size model, sims.limits)")
    if spec.n_sets * spec.points_per_set > MAX_POINTS:
        _refuse("data.points_per_set", spec.points_per_set,
                f"{spec.n_sets * spec.points_per_set:,} points in all, more than {MAX_POINTS:,} "
                "(size model, sims.limits)")
    check_scales(spec)


def _refuse(field: str, value: Any, why: str) -> None:
    raise ValueError(f"{field}: {why}, got {value!r}")


def check_structure(config) -> None:
    """The structural limits of the module docstring (one line naming the field)."""
    d, m, t = config.data, config.model, config.train
    for field, value, limit in (
        ("model.depth", m.depth, MAX_DEPTH), ("train.steps", t.steps, MAX_STEPS),
        ("train.curve_points", t.curve_points, MAX_CURVE_POINTS),
    ):
        if value > limit:
            _refuse(field, value, f"must be at most {limit:,} (size model, sims.limits)")
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
    """Refuse a run whose memory estimate (:func:`run_bytes`) exceeds :func:`memory_limit`."""
    need, limit = run_bytes(config), memory_limit()
    if need > limit:
        terms = run_terms(config)
        field = max(terms, key=terms.get)
        section, name = field.split(".")
        value = getattr(getattr(config, section), name)
        _refuse(field, value, f"one run needs ~{need / 2**30:.3g} GiB (size model, sims.limits), "
                              f"more than this machine's limit of {limit / 2**30:.3g} GiB")


def check_config(config) -> None:
    """Every limit of the size model for one configuration (structure, memory, scales);
    the data's own limits (:func:`check_data`) are checked when its section is built."""
    check_structure(config)
    check_memory(config)
    check_scales(config.data, config.model)
