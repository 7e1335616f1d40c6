"""Sequential Monte Carlo planner (Byravan et al. 2022, App. B, Alg. 2; Piche et al. 2019).

S particles start at the current state. At each of H steps every particle
samples an action from the proposal, takes a model step and receives a reward;
its advantage A_t = r_t + gamma V(s_{t+1}) - V(s_t) (A_t = r_t without a value)
sets a resampling weight w ∝ exp(A_t / tau), and the particle set (with each
particle's first action) is resampled multinomially. The plan is the first
action of a uniformly drawn surviving particle. Metrics report the effective
sample size 1 / sum w^2 averaged over steps.

`warm_start` (our addition, off by default as in the paper; for the fixed
Gaussian proposal only): the chosen particle's whole action sequence is kept
and, shifted by one step, becomes the mean of the next call's Gaussian
proposal, so a plan that found reward is refined instead of forgotten; with
sparse rewards (ReacherEasy) this is the difference between random walks and
reaching the target (docs/planners.md).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mjxmbrl.planners.base import (
    Planner,
    PlannerConfig,
    RolloutCore,
    check_planner_common,
    shift_plan,
)
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class SMCConfig(PlannerConfig):
    """Sequential Monte Carlo (Byravan et al. 2022, Alg. 2): S = 250, H = 10, tau = 0.01 in the paper."""

    name: str = "smc"
    num_particles: int = 250
    temperature: float = 0.01
    warm_start: bool = False  # our addition: centre the Gaussian proposal on the previous plan (planners/smc.py)


def check_smc(cfg) -> None:
    check_planner_common(cfg)
    if cfg.planner.warm_start and cfg.planner.proposal != "gaussian":
        raise ConfigError("planner.warm_start for SMC centres the Gaussian proposal on the previous plan: it needs planner.proposal=gaussian")


def resampling_weights(advantages: jax.Array, temperature: float) -> jax.Array:
    """softmax(A / tau): [S] -> [S], summing to one."""
    return jax.nn.softmax(advantages / temperature)


def multinomial_resample(key: jax.Array, weights: jax.Array) -> jax.Array:
    """S ancestor indices drawn i.i.d. from Categorical(weights): [S] -> [S] int32 (Alg. 2, line 10).

    Inverse-CDF sampling (uniforms looked up in the cumulative weights), O(S log S):
    `jax.random.categorical` would draw S x S Gumbel numbers per resampling step.
    """
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(key, weights.shape) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), weights.shape[0] - 1).astype(jnp.int32)


def effective_sample_size(weights: jax.Array) -> jax.Array:
    return 1.0 / jnp.sum(jnp.square(weights))


def make_smc(cfg, core: RolloutCore, proposal, action_size: int) -> Planner:
    """cfg: SMC settings (num_particles, horizon, temperature); proposal: proposals.Proposal."""
    num, horizon, tau = cfg.num_particles, cfg.horizon, cfg.temperature

    warm = bool(getattr(cfg, "warm_start", False))

    def init(key):
        del key
        return {"plan": jnp.zeros((horizon, action_size))}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        k_init, k_steps, k_pick = jax.random.split(key, 3)
        z = core.initial_particles(pp, obs, k_init, num, belief)
        previous = planner_state["plan"]
        mean_plan = shift_plan(previous) if warm else jnp.zeros_like(previous)

        def body(carry, inputs):
            z, history, value_now, alive = carry
            k, t = inputs
            k_prop, k_step, k_val, k_res = jax.random.split(k, 4)
            actions = jnp.clip(proposal(pp, core.observe(pp, z), k_prop, progress) + mean_plan[t], -1.0, 1.0)
            z_next, reward, still = core.step(pp, z, actions, k_step)
            value_next = core.value(pp, z_next, k_val)
            advantage = alive * (reward + core.discount * still * value_next) - alive * value_now
            weights = resampling_weights(advantage, tau)
            history = history.at[:, t].set(actions)  # each particle's actions so far travel with it
            idx = multinomial_resample(k_res, weights)
            pick = lambda x: x[idx]
            carry = (jax.tree.map(pick, z_next), pick(history), pick(value_next), pick(alive * still))
            return carry, (effective_sample_size(weights), jnp.mean(reward))

        init = (z, jnp.zeros((num, horizon, action_size)), core.value(pp, z, k_steps), jnp.ones((num,)))
        steps = (jax.random.split(k_steps, horizon), jnp.arange(horizon))
        (z, history, _, _), (ess, rewards) = jax.lax.scan(body, init, steps)
        chosen = jax.random.randint(k_pick, (), 0, num)
        metrics = {"planner/ess": jnp.mean(ess), "planner/reward_mean": jnp.mean(rewards)}
        return history[chosen, 0], {"plan": history[chosen]}, metrics

    return Planner(init=init, plan=plan)
