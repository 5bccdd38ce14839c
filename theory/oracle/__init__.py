"""The class minimum: InfoNCE minimised over every ``L``-Lipschitz map into the unit ball.

The theorem of Parulekar et al. (COLT 2023) is about the **minimisers of InfoNCE over a
function class**, not about what one optimiser run of one network finds. For the class

    F_L = { f : R^D → R^d, L-Lipschitz, ‖f(x)‖ <= 1 }     (the ball head of docs/theory.md §1)

the minimum on finite data is a finite-dimensional problem (docs/theory.md §3.F):

* **Kirszbraun.** An assignment ``z_i`` to the data points ``x_i`` is the restriction of a
  map in ``F_L`` iff ``‖z_i − z_j‖ <= L‖x_i − x_j‖`` for all pairs and ``‖z_i‖ <= 1``
  (extend by Kirszbraun's theorem, then project onto the ball, which is 1-Lipschitz).
* **Set level.** Set-constant assignments (one atom ``z_s`` per augmentation set) are
  feasible iff ``‖z_s − z_t‖ <= L·g(s, t)`` with ``g`` the set distance. Their loss is the
  atom loss of docs/theory.md §3.A with atoms in the ball, positive logit ``‖z_a‖²/τ``:
  ``Σ_a w_a E_n log(1 + Σ_b n_b exp((⟨z_a,z_b⟩ − ‖z_a‖²)/τ))``, computed exactly
  (:func:`theory.atom_infonce` with ``ball=True``).
* **Point level.** One embedding per point under every pairwise constraint; its InfoNCE is
  exact (every anchor and positive of every set, the ``K`` negatives integrated through the
  integral form; ``loss_se = 0``). Started from the set-level solution, so it can only be lower.
* **Other objectives.** At the point level the loss may be any objective of a batch (NT-Xent,
  DCL, debiased, spectral, alignment + uniformity: :mod:`sims.loss`), estimated on fixed
  batches of the training batch size; the class is the same. All but the debiased loss are
  convex in the Gram matrix on those batches, and certified like InfoNCE when given as a
  :class:`ConvexObjective` (docs/theory.md §3.G).

:func:`lipschitz_minimum` solves this non-convex problem by projected Adam on a penalty
of the relative constraint violations, from structured starts (collapsed, the cluster
simplex or optimal cluster atoms, the unconstrained set-level optimum, the best solution of
the next smaller ``L``) and random ones, all scaled into feasibility, every ``L`` of one
call in one compiled float64 program. Each returned embedding is then rescaled so that it
is **exactly** feasible, and the loss reported is that of the returned embedding: an
honest upper bound on the class minimum. Facts it obeys by construction or by test: the
value is non-increasing in ``L``; it is ``log(1 + K)`` as ``L → 0``; it never goes below the
unconstrained set-level optimum and equals it once that optimum is feasible; it is
invariant under rigid motions of the data; one value of ``L`` gives one answer, however
often it is given.

The package has one module per job:

* :mod:`theory.oracle.problem`: the data of one call, validated and indexed, and the size
  model's checks (limits in :mod:`theory.limits`, ``ORACLE_*``).
* :mod:`theory.oracle.feasibility`: the Kirszbraun constraints checked and enforced exactly
  (largest ratio, scaling into feasibility, coincident items and their distances).
* :mod:`theory.oracle.projection`: projected Adam and the projections it steps with
  (cyclic over round-robin pairs, or averaged).
* :mod:`theory.oracle.sets`: the set-level solver.
* :mod:`theory.oracle.points`: the point-level solver.
* :mod:`theory.oracle.estimators`: the point level's values (InfoNCE exact, another
  objective estimated per batch).
* :mod:`theory.oracle.convex`: NT-Xent, DCL, the spectral loss and alignment + uniformity
  on fixed batches as convex functions of the Gram matrix (:class:`ConvexObjective`, what a
  certified class minimum of another objective takes; docs/theory.md §3.G).
* :mod:`theory.oracle.pieces`: the regimes as unions of convex pieces of the Gram matrix
  (linear constraints; docs/theory.md §3.G).
* :mod:`theory.oracle.bounds`: certified lower bounds by convex duality (the relaxation
  without the rank constraint, and each regime's pieces; ``lipschitz_minimum(...,
  certify=True)``, docs/theory.md §3.G).
* :mod:`theory.oracle.api`: :func:`lipschitz_minimum` and its records.

Reference: Parulekar, Collins, Shanmugam, Mokhtari, Shakkottai, *InfoNCE Loss Provably
Learns Cluster-Preserving Representations*, COLT 2023 (arXiv:2302.07920); docs/theory.md §3.F.
Kirszbraun, *Über die zusammenziehende und Lipschitzsche Transformationen*, Fund. Math. 1934.
"""

from __future__ import annotations

from theory.oracle.api import LEVELS, ROW_FIELDS, OracleResult, lipschitz_minimum
from theory.oracle.convex import ConvexObjective
from theory.oracle.projection import round_robin

__all__ = ["LEVELS", "ROW_FIELDS", "ConvexObjective", "OracleResult", "lipschitz_minimum", "round_robin"]

#: the public functions are defined in the modules; ``doctest.testmod(theory.oracle)`` runs
#: their examples through this table.
__test__ = {"lipschitz_minimum": lipschitz_minimum, "round_robin": round_robin, "ConvexObjective": ConvexObjective}
