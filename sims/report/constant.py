"""The constant of the condition, searched adversarially (docs/theory.md §3.G, §4).

The theorem's condition compares ``L·D_c`` with ``e_m``: the sets of a cluster must be close
(``D_c``, the chain diameter of its set graph) relative to the complexity ``L`` of the class,
and its sufficient split line is ``L = e_m/D_c`` (``e_m = sqrt(2m/(m−1))``, the simplex edge).
A condition of the form ``L·D_c <= c·e_m`` can guarantee preservation only for ``c`` below
the ratio ``L·D_c/e_m`` at which some instance's minimisers are *certified* split. This module
searches for the smallest such ratio, and for the largest ratio at which preservation is
certified, over random instances of a geometry family (``chain``, ``interleaved``,
``lattice``: clusters, sets per cluster, gap δ, separation Δ and set extent drawn), driven by
``hypothesis.target`` on each ratio.

For one instance (:func:`evaluate`), the set-level class minimum is certified
(:func:`theory.lipschitz_minimum` with ``certify=True``: the regime of **every** minimiser
over set-constant L-Lipschitz maps into the ball, in every output dimension) at the caps
``L = r·e_m/D_c`` for the ratios ``r`` of :data:`RATIOS`; ``split_ratio`` is the smallest
``r`` certified split, ``preserved_ratio`` the largest certified preserved (``nan`` where
none is), each then sharpened by bisection between it and its neighbour on the grid.
:func:`search` runs the search; :func:`write` saves every instance's row
(``constant.csv``) and, per family, the instance attaining each extreme
(``constant_<family>_split.npz``, ``constant_<family>_preserved.npz``: its points, set and
cluster ids, the cap and the loss's settings, which :func:`evaluate` of the same settings
reproduces).

Reference: Parulekar et al., COLT 2023; docs/theory.md §3.E, §3.G. Targeted property-based
search: MacIver et al., *Hypothesis*, JOSS 2019.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable


#: the geometry families searched.
FAMILIES = ("chain", "interleaved", "lattice")
#: the caps of one instance, as ratios ``L·D_c/e_m`` (half-octave steps from 1/16 to 2).
RATIOS = tuple(2.0 ** (k / 2) for k in range(-8, 3))
#: the loss's settings of every instance (those of the bundled phase sweeps).
NEGATIVES, TEMPERATURE, DIM = 16, 0.5, 3
#: bisections that sharpen each extreme ratio of an instance (to 2^{1/16} for the default grid).
REFINE = 3
#: points per set of every instance (the set level sees only set distances).
POINTS_PER_SET = 4


def instances(family: str):
    """The hypothesis strategy of one family's instances (:class:`sims.MixtureSpec`): 2 or 3
    clusters of 2 to 4 sets (an even count on the lattice), gap δ in [0.02, 0.3], separation
    Δ in [0.25, 3], set extent in [0.5, 2]."""
    from hypothesis import strategies as st

    from sims.config import MixtureSpec

    sets = st.sampled_from([2, 4]) if family == "lattice" else st.integers(2, 4)
    return st.builds(MixtureSpec, geometry=st.just(family), n_clusters=st.integers(2, 3), sets_per_cluster=sets,
                     points_per_set=st.just(POINTS_PER_SET), gap=st.floats(0.02, 0.3),
                     cluster_separation=st.floats(0.25, 3.0), set_extent=st.floats(0.5, 2.0))


def evaluate(spec, ratios=RATIOS, refine: int = REFINE) -> dict[str, Any]:
    """One instance's row: its measured certificate and the certified regime at each ratio;
    the smallest ratio certified split and the largest certified preserved are then each
    sharpened by ``refine`` bisections towards their neighbour on the grid (one certified
    solve each).

    Returns:
      ``{family, n_clusters, sets_per_cluster, gap, cluster_separation, set_extent,
      chain_diameter, cluster_distance, e_m, regimes, split_ratio, preserved_ratio}`` with
      ``regimes`` one letter per ratio (``c``, ``p``, ``s``; ``u`` undecided).
    """
    import theory
    from sims.data import design_points

    x, sets, clusters = design_points(spec)
    cert = theory.certificate(x, sets, clusters)
    e_m = float(theory.simplex_edge(spec.n_clusters))
    d_c = float(cert.chain_diameter)
    records = theory.lipschitz_minimum(x, sets, clusters, [r * e_m / d_c for r in ratios], DIM, NEGATIVES,
                                       TEMPERATURE, certify=True)
    regimes = [r.certified_regime for r in records]
    split = [r for r, g in zip(ratios, regimes) if g == "split"]
    preserved = [r for r, g in zip(ratios, regimes) if g == "preserved"]
    split_ratio, preserved_ratio = min(split, default=math.nan), max(preserved, default=math.nan)

    def certified(ratio: float) -> str:
        return theory.lipschitz_minimum(x, sets, clusters, ratio * e_m / d_c, DIM, NEGATIVES, TEMPERATURE,
                                        certify=True).certified_regime

    # bisect (in log ratio) towards the grid's neighbour: a certified split below the
    # smallest one on the grid, a certified preservation above the largest
    i = ratios.index(split_ratio) if split else 0
    if split and i > 0:
        split_ratio = _bisect(certified, "split", split_ratio, ratios[i - 1], refine)
    j = ratios.index(preserved_ratio) if preserved else len(ratios) - 1
    if preserved and j < len(ratios) - 1:
        preserved_ratio = _bisect(certified, "preserved", preserved_ratio, ratios[j + 1], refine)
    return {"family": spec.geometry, "n_clusters": spec.n_clusters, "sets_per_cluster": spec.sets_per_cluster,
            "gap": spec.gap, "cluster_separation": spec.cluster_separation, "set_extent": spec.set_extent,
            "chain_diameter": d_c, "cluster_distance": float(cert.cluster_distance), "e_m": e_m,
            "regimes": "".join(g[0] for g in regimes), "split_ratio": split_ratio, "preserved_ratio": preserved_ratio}


def _bisect(certified: Callable[[float], str], regime: str, held: float, toward: float, steps: int) -> float:
    """The ratio nearest ``toward`` found certified ``regime`` by ``steps`` bisections (in log
    ratio) of ``[held, toward]``, starting from ``held`` (certified ``regime``)."""
    for _ in range(steps):
        middle = math.sqrt(held * toward)
        if certified(middle) == regime:
            held = middle
        else:
            toward = middle
    return held


def search(family: str, examples: int, seed: int = 0, log: Callable[[str], None] | None = None,
           ratios=RATIOS) -> list[dict[str, Any]]:
    """Rows of :func:`evaluate` for ``examples`` instances of ``family``, chosen by hypothesis
    (random, then targeted: ``hypothesis.target`` lowers the smallest certified split ratio
    and raises the largest certified preserved one); the same ``seed``, the same instances.
    ``ratios``: the caps of each instance (:data:`RATIOS`)."""
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis import seed as hypothesis_seed

    from theory import validate

    if family not in FAMILIES:
        raise ValueError(f"family: must be one of {', '.join(FAMILIES)}, got {family!r}")
    examples = validate.integer("examples", examples, minimum=1)
    rows: list[dict[str, Any]] = []

    @hypothesis_seed(validate.seed("seed", seed))
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate, Phase.target],
              suppress_health_check=list(HealthCheck))
    @given(spec=instances(family))
    def explore(spec):
        t0 = time.perf_counter()
        row = evaluate(spec, ratios)
        rows.append(row)
        if math.isfinite(row["split_ratio"]):
            target(-row["split_ratio"], label="smallest certified split ratio")
        if math.isfinite(row["preserved_ratio"]):
            target(row["preserved_ratio"], label="largest certified preserved ratio")
        if log:
            log(f"{family} {len(rows)}/{examples}: {row['regimes']} (split at {row['split_ratio']:.4g}, "
                f"preserved at {row['preserved_ratio']:.4g}; {time.perf_counter() - t0:.1f} s)")

    explore()
    return rows


def extremes(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per family, the row with the smallest certified split ratio (``"split"``) and the one
    with the largest certified preserved ratio (``"preserved"``); a family without one has
    no entry for it."""
    out: dict[str, dict[str, Any]] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        split = [r for r in mine if math.isfinite(r["split_ratio"])]
        preserved = [r for r in mine if math.isfinite(r["preserved_ratio"])]
        out[family] = {
            **({"split": min(split, key=lambda r: r["split_ratio"])} if split else {}),
            **({"preserved": max(preserved, key=lambda r: r["preserved_ratio"])} if preserved else {}),
        }
    return out


def write(rows: list[dict[str, Any]], out: str | Path) -> dict[str, Any]:
    """``constant.csv`` (every row) and the extreme instances as ``.npz`` in ``out``; returns
    the extremes (:func:`extremes`)."""
    from sims.config import MixtureSpec
    from sims.data import design_points
    from sims.report.analysis import write_table
    from sims.sweep.atomic import atomic_write_bytes
    from sims.sweep.npz import npz_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "constant.csv", rows)
    found = extremes(rows)
    for family, picks in found.items():
        for kind, row in picks.items():
            spec = MixtureSpec(geometry=family, n_clusters=row["n_clusters"], sets_per_cluster=row["sets_per_cluster"],
                               points_per_set=POINTS_PER_SET, gap=row["gap"],
                               cluster_separation=row["cluster_separation"], set_extent=row["set_extent"])
            x, sets, clusters = design_points(spec)
            ratio = row[f"{kind}_ratio"]
            arrays = {"points": x, "set_ids": sets, "cluster_ids": clusters, "ratio": ratio,
                      "lipschitz": ratio * row["e_m"] / row["chain_diameter"], "num_negatives": NEGATIVES,
                      "temperature": TEMPERATURE, "dim": DIM}
            atomic_write_bytes(out / f"constant_{family}_{kind}.npz", npz_bytes(arrays))
    return found
