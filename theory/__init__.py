"""Exact theory of InfoNCE cluster preservation that needs no training.

Parulekar, Collins, Shanmugam, Mokhtari, Shakkottai, *InfoNCE Loss Provably Learns
Cluster-Preserving Representations*, COLT 2023 (arXiv:2302.07920); SPEC sections 1 to 4.

* :mod:`theory.floors`: the atom loss (SPEC 3.A), the simplex floor ``ℓ*_M(K, τ)``
  (SPEC 3.B) and numerically optimal atom configurations.
* :mod:`theory.certificates`: set-graph certificates of point-cloud data (SPEC 1, 3.D).
* :mod:`theory.regimes`: the Lipschitz chain bound (SPEC 3.D), predicted regimes and the
  phase-diagram lines (SPEC 3.E).
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
from theory.regimes import (
    ChainBound,
    RegimePrediction,
    chain_bound,
    classify_regime,
    phase_lines,
    predict_regime,
)

__all__ = [
    "AtomConfiguration",
    "Certificate",
    "ChainBound",
    "ClusterCertificate",
    "RegimePrediction",
    "atom_infonce",
    "certificate",
    "chain_bound",
    "classify_regime",
    "optimal_atoms",
    "phase_lines",
    "predict_regime",
    "simplex_edge",
    "simplex_infonce",
    "simplex_vectors",
]
