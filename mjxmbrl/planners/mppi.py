"""Model predictive path integral control (Williams et al. 2017), as POLO uses it (Lowrey et al. 2019, App. A).

The planner keeps a mean plan mu [H, A], warm-started by shifting the previous
plan one step (the last action repeated). Each call samples N perturbed
sequences a_n = clip(mu + eps_n), eps_n ~ N(0, sigma^2) (the first one is mu
itself), scores them with the shared core and sets

    w_n = exp((R_n - max R) / lambda) / sum_m exp((R_m - max R) / lambda)
    mu  <- sum_n w_n a_n

for `iterations` rounds; the first action of mu is executed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mjxmbrl.planners.base import (
    Planner,
    PlannerConfig,
    RolloutCore,
    clip_actions,
    shift_plan,
)


@dataclasses.dataclass(frozen=True)
class MPPIConfig(PlannerConfig):
    """MPPI as in POLO (Lowrey et al. 2019, App. A: 120 rollouts, sigma 0.2, temperature 1.25, H = 64).

    Our weights are softmax(R / temperature). The authors' MPPI weighs exp(kappa (R - max R)) and App. A's
    "temperature" is that kappa (App. B's "temperature of 10" would give near-uniform weights if it divided),
    so App. A's 1.25 is our 1 / 1.25 = 0.8.
    """

    name: str = "mppi"
    num_samples: int = 120
    noise_sigma: float = 0.2
    temperature: float = 0.8
    iterations: int = 1


def mppi_weights(returns: jax.Array, temperature: float) -> jax.Array:
    """softmax(R / lambda) computed stably: [N] -> [N], non-negative, summing to one."""
    return jax.nn.softmax((returns - jnp.max(returns)) / temperature)


def mppi_optimize(core: RolloutCore, pp, z0, mean: jax.Array, key, num: int, noise_sigma: float, temperature: float,
                  iterations: int):
    """`iterations` MPPI updates of the mean plan [H, A] from particles z0 [num].

    Returns (mean [H, A], best [] the highest return scored over all iterations, ess [] of the last weights).
    The first candidate of every iteration is the mean itself, so with num = 1 the result is the return
    of `mean` (POLO's N-step targets, Eq. 7, use this as their trajectory optimiser).
    """
    horizon, action_size = mean.shape

    def iteration(carry, k):
        mean, best = carry
        k_noise, k_score = jax.random.split(k)
        noise = noise_sigma * jax.random.normal(k_noise, (num, horizon, action_size))
        noise = noise.at[0].set(0.0)  # keep the current mean among the candidates
        samples = clip_actions(mean[None] + noise)
        returns = core.score(pp, z0, samples, k_score)
        weights = mppi_weights(returns, temperature)
        return (jnp.einsum("n,nha->ha", weights, samples), jnp.maximum(best, jnp.max(returns))), effective(weights)

    (mean, best), ess = jax.lax.scan(iteration, (mean, jnp.asarray(-jnp.inf)), jax.random.split(key, iterations))
    return mean, best, ess[-1]


def make_mppi(cfg, core: RolloutCore, action_size: int) -> Planner:
    """cfg: num_samples, horizon, temperature, noise_sigma, iterations."""
    num, horizon = cfg.num_samples, cfg.horizon

    def init(key):
        del key
        return {"mean": jnp.zeros((horizon, action_size))}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        del progress
        k_init, k_iters = jax.random.split(key)
        z0 = core.initial_particles(pp, obs, k_init, num, belief)
        mean, best, ess = mppi_optimize(core, pp, z0, planner_state["mean"], k_iters, num, cfg.noise_sigma,
                                        cfg.temperature, cfg.iterations)
        return mean[0], {"mean": shift_plan(mean)}, {"planner/return_max": best, "planner/ess": ess}

    return Planner(init=init, plan=plan)


def effective(weights: jax.Array) -> jax.Array:
    return 1.0 / jnp.sum(jnp.square(weights))
