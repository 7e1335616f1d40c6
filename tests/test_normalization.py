"""Running observation statistics (Chan et al. parallel merge) against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.envs import RunningStats, init_stats, normalize, update_stats


def _batches():
    rng = np.random.default_rng(0)
    # Different sizes, shifted means and scales per batch, so a wrong merge shows.
    sizes = [1, 7, 64, 3, 200]
    return [
        (rng.normal(size=(n, 4)) * np.array([1.0, 3.0, 0.1, 10.0]) + np.array([20.0, -5.0, 0.0, 2.0]) + i).astype(np.float32)
        for i, n in enumerate(sizes)
    ]


def test_update_stats_matches_numpy_over_batches():
    batches = _batches()
    stats = init_stats(4)
    update = jax.jit(update_stats)
    for batch in batches:
        stats = update(stats, jnp.asarray(batch))
    full = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(np.asarray(stats.mean), full.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.var), full.var(0), rtol=1e-5)
    assert float(stats.count) == len(full)


def test_update_stats_flattens_leading_axes():
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 2)) * 2.0 + 1.0
    stats = update_stats(init_stats(2), x)
    flat = np.asarray(x).reshape(-1, 2)
    np.testing.assert_allclose(np.asarray(stats.mean), flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(stats.var), flat.var(0), rtol=1e-5)
    assert float(stats.count) == 15.0


def test_fresh_stats_normalize_is_identity_inside_clip():
    stats = init_stats(3)
    assert isinstance(stats, RunningStats)
    x = jnp.array([[0.5, -2.0, 9.0], [1.0, 0.0, -3.0]])
    np.testing.assert_allclose(np.asarray(normalize(stats, x)), np.asarray(x), rtol=1e-6)
    big = jnp.array([[50.0, -50.0, 3.0]])
    np.testing.assert_allclose(np.asarray(normalize(stats, big, clip=5.0)), [[5.0, -5.0, 3.0]], rtol=1e-6)


def test_normalize_standardises_seen_data():
    batches = _batches()
    stats = init_stats(4)
    update = jax.jit(update_stats)
    for batch in batches:
        stats = update(stats, batch)
    z = np.asarray(jax.jit(normalize, static_argnames="clip")(stats, np.concatenate(batches), clip=1e6))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.var(0), 1.0, rtol=1e-4)
    # A hand-checked value: one-dimensional data {1, 3} has mean 2, var 1.
    s = update_stats(init_stats(1), jnp.array([[1.0], [3.0]]))
    np.testing.assert_allclose(np.asarray(normalize(s, jnp.array([4.0]))), [2.0], rtol=1e-6)
