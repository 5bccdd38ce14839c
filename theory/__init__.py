"""Exact theory of InfoNCE cluster preservation that needs no training.

Parulekar, Collins, Shanmugam, Mokhtari, Shakkottai, *InfoNCE Loss Provably Learns
Cluster-Preserving Representations*, COLT 2023 (arXiv:2302.07920); docs/theory.md §1 to §4.

* :mod:`theory.floors`: the atom loss (docs/theory.md §3.A), the simplex floor ``ℓ*_M(K, τ)``
  (docs/theory.md §3.B) and numerically optimal atom configurations.
* :mod:`theory.certificates`: set-graph certificates of point-cloud data (docs/theory.md §1, §3.D).
* :mod:`theory.regimes`: the Lipschitz chain bound (docs/theory.md §3.D), predicted regimes, the
  phase-diagram lines (docs/theory.md §3.E) and the regime of an embedding (docs/theory.md §5).
* :mod:`theory.oracle`: the class minimum, InfoNCE (or, at the point level, any objective of
  a batch) minimised over every ``L``-Lipschitz map into the unit ball on finite data
  (docs/theory.md §3.F).
* :mod:`theory.graph`: the augmentation graph of the data, its components and spectrum.
* :mod:`theory.threefry`: JAX's random bits compiled as one kernel on the CPU (the same bits);
  installed on import.
"""

from theory.certificates import Certificate, ClusterCertificate, certificate
from theory.floors import (
    AtomConfiguration,
    atom_infonce,
    optimal_atoms,
    simplex_edge,
    simplex_infonce,
    simplex_vectors,
)
from theory.graph import AugmentationGraph, augmentation_graph
from theory.oracle import ConvexObjective, OracleResult, lipschitz_minimum
from theory.regimes import (
    CERTIFIED_SPLIT_CONSTANT,
    REGIMES,
    ChainBound,
    RegimePrediction,
    chain_bound,
    classify_embedding,
    classify_regime,
    cluster_geometry,
    condition,
    majority_regime,
    phase_lines,
    predict_regime,
)
from theory.threefry import install as _install_threefry

_install_threefry()  # the same random bits, compiled as one kernel on the CPU


__all__ = [
    "CERTIFIED_SPLIT_CONSTANT",
    "AtomConfiguration",
    "AugmentationGraph",
    "Certificate",
    "ChainBound",
    "ClusterCertificate",
    "ConvexObjective",
    "OracleResult",
    "REGIMES",
    "RegimePrediction",
    "atom_infonce",
    "augmentation_graph",
    "certificate",
    "chain_bound",
    "classify_embedding",
    "classify_regime",
    "cluster_geometry",
    "condition",
    "lipschitz_minimum",
    "majority_regime",
    "optimal_atoms",
    "phase_lines",
    "predict_regime",
    "simplex_edge",
    "simplex_infonce",
    "simplex_vectors",
]
