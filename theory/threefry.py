"""JAX's random bits on the CPU, compiled as one kernel: the same bits, a quarter of the time.

Every ``jax.random`` call (``split``, ``normal``, ``randint``, ...) hashes counters with
Threefry-2x32 (20 rounds of add, rotate and xor on pairs of 32-bit words, a key injection
after every 4; Salmon et al., *Parallel random numbers: as easy as 1, 2, 3*, SC 2011). On
the CPU, JAX lowers the 20 rounds as a rolled loop (``fori_loop`` over the 5 groups of 4
rounds), which XLA compiles to a while loop of about ten kernels per call site; on every
other platform it emits the rounds unrolled, which XLA fuses into one elementwise kernel.
The arithmetic is the same integer arithmetic in the same order, so the bits are identical;
only compilation differs.

A compiled training program holds a dozen such call sites (the run's keys, the
initialisation, every step's batch, the evaluation), and XLA's CPU compiler takes several
times longer over a rolled one than over the unrolled kernel. :func:`install` registers
JAX's own unrolled lowering for the CPU platform; importing :mod:`theory` (hence
:mod:`sims`) calls it, so every program of the project, and any other JAX code in the same
process, compiles its random numbers unrolled. It does nothing if this JAX keeps the
pieces elsewhere (the rolled lowering then stays; values are the same either way).
"""

from __future__ import annotations

import functools

_installed = False


def install() -> bool:
    """Lower ``threefry2x32`` unrolled on the CPU (JAX's lowering for other platforms).

    Idempotent; returns whether the unrolled lowering is in place. Affects programs lowered
    after the call (a program already compiled in this process keeps its code).
    """
    global _installed
    if _installed:
        return True
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        rule = mlir.lower_fun(functools.partial(tf._threefry2x32_lowering, use_rolled_loops=False),
                              multiple_results=True)
        mlir.register_lowering(tf.threefry2x32_p, rule, platform="cpu")
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another JAX layout
        return False
    _installed = True
    return True
