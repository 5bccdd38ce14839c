"""Decompositions inside the vmapped training program run one matrix at a time (sims.linalg).

A batched LAPACK decomposition on the CPU blocks a thread of XLA's pool while its parts run
on the others; two at once (two devices of one sharded program) hung a 2-core host. The
test walks the jaxpr of a whole grid program: every decomposition must see a single
matrix, never a batch of them.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sims.config import build_config
from sims.linalg import one_at_a_time
from sims.train import grid_inputs, grid_points, grid_program

DECOMPOSITIONS = ("svd", "qr", "eigh", "lu", "cholesky", "schur", "eig")


def _decomposition_operands(jaxpr) -> list[tuple[str, tuple]]:
    """``(primitive, operand shape)`` of every decomposition in ``jaxpr``, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in DECOMPOSITIONS:
            found.append((eqn.primitive.name, tuple(eqn.invars[0].aval.shape)))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _decomposition_operands(inner)
    return found


def test_grid_program_decomposes_one_matrix_at_a_time():
    # the random embedding (QR, in the points program), the spectral cap (SVD) and the
    # effective rank (SVD, both in the training program)
    config = build_config(data={"input_dim": 4}, train={"steps": 2, "batch_size": 8, "eval_batch": 64})
    keys, swept = grid_inputs([config] * 3, [0, 1, 2])
    static = config.static_part()
    points = grid_points(static)(keys, swept)
    found = []
    for jaxpr in (jax.make_jaxpr(grid_points(static))(keys, swept),
                  jax.make_jaxpr(grid_program(static))(keys, swept, points)):
        found += _decomposition_operands(jaxpr.jaxpr)
    assert {name for name, _ in found} >= {"svd", "qr"}, found
    assert all(len(shape) == 2 for _, shape in found), found  # a matrix, never a batch


def test_one_at_a_time_matches_the_batched_call():
    m = jnp.asarray(np.random.default_rng(0).standard_normal((5, 2, 4, 3)), jnp.float32)
    values = one_at_a_time(lambda a: jnp.linalg.svd(a, compute_uv=False))
    scaled = one_at_a_time(lambda a, c: c * jnp.linalg.svd(a, compute_uv=False))
    expected = jnp.linalg.svd(m, compute_uv=False)
    np.testing.assert_array_equal(jax.vmap(jax.vmap(values))(m), expected)
    np.testing.assert_array_equal(jax.vmap(scaled, in_axes=(0, None))(m[:, 0], 2.0), 2.0 * expected[:, 0])
    assert values(m[0, 0]).shape == (3,)
    assert not _decomposition_operands(jax.make_jaxpr(jax.vmap(values))(m[:, 0]).jaxpr)[0][1][0] == 5
