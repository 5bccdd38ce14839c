"""Float32 error bounds shared by the tests: every float32 tolerance is derived from these.

``U32`` is float32's unit roundoff ``u = 2⁻²⁴`` (``eps/2``): one rounded operation on a value
``v`` is off by at most ``u·|v|`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
2002, §2.2).
"""

import numpy as np

#: float32 unit roundoff ``u = eps/2 = 2⁻²⁴``.
U32 = float(np.finfo(np.float32).eps) / 2


def f32_coord_err(points) -> float:
    """Bound on how far a float32 training point is from its float64 design: the layout is a
    few float32 operations (≤ 6 roundings) on numbers ``≤ X = max|x|``, then a rotation by a
    ``D × D`` orthogonal matrix (``D`` products, a ``D``-term sum): ``(D + 6)·u·X·√D`` per
    coordinate (Higham 2002, eq. 4.4); a distance between two points is off by ``2√D`` times
    that."""
    pts = np.asarray(points, np.float64)
    d = pts.shape[-1]
    return (d + 6) * U32 * float(np.abs(pts).max()) * np.sqrt(d)
