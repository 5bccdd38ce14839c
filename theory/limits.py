"""The size model's limits: every bound the project puts on one request, in one place.

Two kinds of request have limits of their own, and the names say which one a limit is for:

* a **training run** (``RUN_*`` and the structural limits below): one configuration of
  :class:`sims.config.ExperimentConfig`, trained by the compiled program. The functions that
  apply them (memory estimate, layout scales) are in :mod:`sims.limits`.
* the **class minimum** (``ORACLE_*``): one call of :func:`theory.lipschitz_minimum`, a
  solver whose cost grows with the square of the number of sets or points.

The same quantity can have two limits (a run may hold 4,096 sets; the oracle's set-level
solver, whose constraints are all pairs of sets, at most 128), so no two limits share a name.
Every reader of a sweep file applies both to what the file asks of each, before anything is
written.

This module holds numbers only and imports nothing, so that ``theory`` and ``sims`` can both
read it.
"""

from __future__ import annotations

# --- one training run -------------------------------------------------------------------
#: most layers of an MLP (each is its own operation in the compiled program).
MAX_DEPTH = 64
#: most clusters (the generator lays them out one by one; metrics are O(m²)).
MAX_CLUSTERS = 1024
#: most augmentation sets of one run in all (the certificate's set graph is O(N³)).
RUN_MAX_SETS = 4096
#: most points of one run in all (``n_sets · points_per_set``; the certificate measures all).
RUN_MAX_POINTS = 2**21
#: largest input dimension (the random embedding is the QR of a ``D × D`` Gaussian).
MAX_INPUT_DIM = 4096
#: most points of the returned loss curve.
MAX_CURVE_POINTS = 100_000
#: most optimisation steps of one run.
RUN_MAX_STEPS = 10**8
#: largest index of a flattened array the program builds (int32).
MAX_INDEX = 2**31 - 1
#: largest diameter of the data layout (its square, in float32, keeps a factor 2^28 of room).
MAX_DIAMETER = 1e15
#: largest ``lipschitz × diameter`` (a network's output before the head, squared in float32).
MAX_LIPSCHITZ_SPAN = 1e15
#: smallest ``gap / diameter`` (float32 resolves 2^-24 of the diameter; keep 2^8 of room).
MIN_GAP_FRACTION = 2.0**-16
#: fewest points of its own (shared with no other set) an overlapping set keeps (δ <= 0).
MIN_OWN_POINTS = 2
#: smallest temperature of a run: the logits (up to 2/τ for embeddings in the unit ball),
#: the per-example losses and their squares stay far inside float32's range.
RUN_MIN_TEMPERATURE = 1e-6
#: share of the memory of the device that runs it one run may use.
MEMORY_FRACTION = 0.5
#: environment variable that sets that memory in bytes.
MEMORY_ENV = "INFONCE_LAB_MEMORY_LIMIT"
#: most XLA host devices a command may ask for (``--cpu-devices``): each is a thread pool,
#: and XLA aborts the process, not with an error, when it cannot create them.
MAX_CPU_DEVICES = 256

# --- one call of the class minimum (theory.lipschitz_minimum) ----------------------------
#: the point level keeps all pairwise constraints; beyond this many distinct points it is
#: refused (memory and time grow with the square, and with the number of values of ``L``).
#: Measured (one ``L``, d = 4, K = 8, the default solver, 2 CPU cores shared with other work):
#: 1,000 points 16 s of CPU (24 s wall), 1,024 points 36 s of CPU from a fresh process
#: (compiling included); 2,000 points did not finish in 240 s (4,080 ran past 120 s).
ORACLE_MAX_POINTS = 1024
#: at most this many augmentation sets: the solver's S x S constraints and the unconstrained
#: optimum (:func:`theory.optimal_atoms` of S atoms) grow with S² (memory and time).
ORACLE_MAX_SETS = 128
#: ``dim`` at most this (memory: starts and solver states are ``S x dim`` per start).
ORACLE_MAX_DIM = 1024
#: ``num_negatives`` at most this: an int32 constant of the compiled float32 search.
ORACLE_MAX_NEGATIVES = 2**31 - 1
#: at the point level ``num_negatives · dim`` is at most this: each step and each pick draws
#: anchors x K negatives x dim values (8,192 anchors, six candidates: ~800 MB).
ORACLE_MAX_POINT_NEGATIVES_DIM = 2048
#: the set-level solver holds ``starts · S · (S · nodes + 8 · dim)`` float32 values about
#: three times over (values and gradients; ``nodes`` grows with ``log K`` and ``1/τ``), and
#: the starts ``n_L · starts · S · dim`` float64 values: each at most this many (~1.5 GB).
ORACLE_MAX_SOLVER_ELEMENTS = 2**27
#: ``steps`` of the search at most this (time).
ORACLE_MAX_STEPS = 100_000
#: ``temperature`` at least this: atoms in the ball have kernels up to ``exp(1/(4τ))``,
#: which must stay below ``e^650`` (float64 ends at ``e^709``; :func:`theory.atom_infonce`
#: refuses beyond ``e^700``).
ORACLE_MIN_TEMPERATURE = 1.0 / (4.0 * 650.0)
#: at most this many ``lipschitz`` values in one call (time: each is one solve).
ORACLE_MAX_LIPSCHITZ_VALUES = 1024
#: at the point level coordinates are at most this in magnitude (squared distances in float64).
ORACLE_MAX_POINT_COORDINATE = 2.0**500
#: ``num_samples`` at most this (time of the point-level estimate).
ORACLE_MAX_SAMPLES = 10**7
#: ``batch_size`` (anchors per batch of another objective) at most this (memory: a batch holds
#: ``batch_size · num_negatives · dim`` values, in-batch objectives ``(2·batch_size)²``).
ORACLE_MAX_OBJECTIVE_BATCH = 8192

# --- the certified lower bounds of the class minimum (theory.lipschitz_minimum(certify=True))
#: the quadrature error of ``f`` and its gradient in a certificate, estimated against a rule
#: of twice the step (:mod:`theory.oracle.bounds`), must stay below this: every certified
#: bound is valid up to it.
CERTIFY_QUADRATURE_TOLERANCE = 1e-6
#: at most this many sets with ``certify=True`` (the solver's factor is ``S x S`` per piece).
CERTIFY_MAX_SETS = 32
#: at most this many distinct points with ``certify=True`` at the point level (the solver's
#: factor is ``V x V``, and each loss evaluation ``V² x nodes`` values, per piece).
CERTIFY_MAX_POINTS = 48
#: the pieces' constraint matrices hold ``pieces · constraints · S²`` float64 values, at most
#: this many (memory and time: the preserved piece has ``within pairs · cluster pairs``
#: constraints, and there is a split piece per such pair).
CERTIFY_MAX_ELEMENTS = 2**24
