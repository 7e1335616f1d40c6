"""Running observation statistics for normalisation, kept in the train state.

Batch moments are merged with the parallel update of Chan et al. (1979):
for counts n_a, n_b, means m_a, m_b and sums of squared deviations M2_a, M2_b,

    n = n_a + n_b,  delta = m_b - m_a,
    m = m_a + delta * n_b / n,
    M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.

We store the (population, ddof=0) variance var = M2 / n rather than M2, so
fresh stats (count 0, mean 0, var 1) normalise as the identity.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class RunningStats:
    """mean [D], var [D] (population variance), count [] float32 (observations seen)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_stats(obs_size: int) -> RunningStats:
    """Fresh stats for D = obs_size: mean 0, var 1, count 0."""
    return RunningStats(
        mean=jnp.zeros((obs_size,), jnp.float32),
        var=jnp.ones((obs_size,), jnp.float32),
        count=jnp.zeros((), jnp.float32),
    )


def update_stats(stats: RunningStats, obs: jax.Array) -> RunningStats:
    """Merges a batch obs [..., D] (all leading axes are samples) into stats."""
    batch = jnp.reshape(obs, (-1, obs.shape[-1])).astype(jnp.float32)
    n_b = jnp.asarray(batch.shape[0], jnp.float32)
    mean_b = jnp.mean(batch, axis=0)
    m2_b = jnp.sum(jnp.square(batch - mean_b), axis=0)
    n_a = stats.count
    n = n_a + n_b
    delta = mean_b - stats.mean
    mean = stats.mean + delta * (n_b / n)
    # var * n_a is M2_a; with n_a = 0 the prior var (1) drops out exactly.
    m2 = stats.var * n_a + m2_b + jnp.square(delta) * (n_a * n_b / n)
    return RunningStats(mean=mean, var=m2 / n, count=n)


def normalize(stats: RunningStats, obs: jax.Array, clip: float = 10.0) -> jax.Array:
    """clip((obs - mean) / sqrt(var + 1e-8), -clip, clip) for obs [..., D]."""
    z = (obs - stats.mean) / jnp.sqrt(stats.var + 1e-8)
    return jnp.clip(z, -clip, clip)
