"""JAX's random bits lowered unrolled on the CPU (theory/threefry.py) are Threefry-2x32's bits:
Random123's known answers, an independent numpy implementation on random words, and the
keys and normals the project draws; the compiled program holds no loop for them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import threefry  # importing theory installs the lowering

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry_numpy(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), in numpy uint32 arithmetic."""
    # 1-d arrays: numpy wraps uint32 arithmetic of arrays silently (of scalars, with a warning)
    k1, k2, x1, x2 = (np.atleast_1d(np.asarray(v, np.uint32)) for v in (k1, k2, x1, x2))
    ks = [k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA)]
    x = [x1 + ks[0], x2 + ks[1]]
    for i in range(5):
        for r in ROTATIONS[i % 2]:
            x[0] = x[0] + x[1]
            x[1] = (x[1] << np.uint32(r)) | (x[1] >> np.uint32(32 - r))
            x[1] = x[0] ^ x[1]
        x[0] = x[0] + ks[(i + 1) % 3]
        x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x


def _primitive(*words):
    from jax._src.random.threefry2x32 import threefry2x32_p

    return jax.jit(lambda *w: threefry2x32_p.bind(*w))(*(jnp.asarray(w, jnp.uint32) for w in words))


@pytest.mark.parametrize("key, counter, expected", [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_random123_known_answers(key, counter, expected):
    assert threefry.install()
    got = _primitive(*key, *counter)
    assert tuple(int(v) for v in got) == expected
    assert tuple(int(v[0]) for v in threefry_numpy(*key, *counter)) == expected


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**31))
def test_same_bits_as_numpy_on_random_words(k1, k2, seed):
    words = np.random.default_rng(seed).integers(0, 2**32, size=(2, 3, 5), dtype=np.uint32)
    got = _primitive(np.full((3, 5), k1, np.uint32), np.full((3, 5), k2, np.uint32), words[0], words[1])
    want = threefry_numpy(k1, k2, words[0], words[1])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), w)


def test_keys_and_bits_are_the_numpy_hash_of_their_counters():
    """JAX's partitionable layout: ``split(key, n)[i]`` is the hash of counter ``(0, i)``
    under the key's two words, and 32-bit ``bits(key, (n,))[i]`` the xor of that hash's
    two words."""
    key = jax.random.PRNGKey(7)
    k1, k2 = (np.uint32(v) for v in np.asarray(key))
    hi, lo = threefry_numpy(k1, k2, np.zeros(6, np.uint32), np.arange(6, dtype=np.uint32))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: jax.random.split(k, 6))(key)),
                                  np.stack([hi, lo], axis=1))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: jax.random.bits(k, (6,)))(key)), hi ^ lo)


@pytest.mark.cpu_only
def test_the_compiled_bits_hold_no_loop():
    compiled = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (8, 8)))).lower(
        jax.random.split(jax.random.PRNGKey(0), 3)).compile()
    assert " while(" not in compiled.as_text()
