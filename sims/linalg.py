"""Matrix decompositions inside vmapped programs, one matrix at a time.

On the CPU, jaxlib runs a *batched* decomposition (SVD, QR, eigh: a LAPACK custom call over
a leading batch axis, what ``vmap`` of :func:`jax.numpy.linalg.svd` lowers to) by splitting
the batch over XLA's intra-op thread pool and blocking the calling pool thread until the
parts are done. Two such calls at once (two devices of one sharded program reaching their
decomposition together, or two layers) can occupy every thread of a small pool, each waiting
for parts that no free thread will ever run: the program hangs with no CPU used. On a 2-core
host with two CPU devices this happened whenever both devices reached the data's random
embedding (a QR) or the effective rank (an SVD) at the same moment, which short runs make
likely. One matrix at a time never waits on the pool, and each matrix is decomposed by the
same LAPACK routine as before, so the values are the same.

:func:`one_at_a_time` makes a function of unbatched arrays run under ``vmap`` as a
:func:`jax.lax.map` over the batch (nested ``vmap`` nests maps).
"""

from __future__ import annotations

from typing import Callable

import jax
from jax.custom_batching import custom_vmap


def one_at_a_time(fn: Callable) -> Callable:
    """``fn`` (positional array arguments) that, under ``vmap``, runs once per batch element
    (:func:`jax.lax.map`) instead of once on the batch; unbatched arguments are shared.

    Example:
      >>> import jax.numpy as jnp
      >>> values = one_at_a_time(lambda m: jnp.linalg.svd(m, compute_uv=False))
      >>> jax.vmap(values)(jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])).tolist()
      [[1.0, 1.0], [2.0, 2.0]]
    """
    wrapped = custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, *args):
        flags = [bool(any(jax.tree_util.tree_leaves(b))) for b in in_batched]
        if not any(flags):
            out = wrapped(*args)
            return out, jax.tree_util.tree_map(lambda _: False, out)
        batched = [a for a, f in zip(args, flags) if f]

        def one(items):
            it = iter(items)
            return wrapped(*[next(it) if f else a for a, f in zip(args, flags)])

        out = jax.lax.map(one, batched)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return wrapped
