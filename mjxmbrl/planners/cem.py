"""Cross-entropy method planner (Byravan et al. 2022, App. B, Alg. 3).

The mean plan mu [H, A] starts from an open-loop rollout of the proposal
through the model (`init_mean: proposal`), or from zeros (`init_mean: zero`:
PlaNet's N(0, I) belief over action sequences, Hafner et al. 2019, "Learning
Latent Dynamics for Planning from Pixels", arXiv:1811.04551, Sec. 3), or, with
`warm_start`, from the previous plan shifted by one step; sigma = sigma_init. Each of I iterations samples S sequences from
N(mu, sigma) (clipped to the action bounds), scores them with the shared core,
keeps the top E = elite_fraction * S, and smooths

    mu    <- (1 - alpha_mean) mu    + alpha_mean mu_elite        (alpha_mean = 0.9)
    sigma <- (1 - alpha_std)  sigma + alpha_std  sigma_elite     (alpha_std = 0.5)

The first action of mu is returned. PlaNet's CEM is alpha_mean = alpha_std = 1
(the elites' moments replace the belief), sigma_init = 1, init_mean zero and no
warm start.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.planners.base import (
    Planner,
    PlannerConfig,
    RolloutCore,
    check_planner_common,
    clip_actions,
    shift_plan,
)
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class CEMConfig(PlannerConfig):
    """Cross-entropy method (Byravan et al. 2022, Alg. 3; PlaNet's with the settings in the module docstring)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {**PlannerConfig.choices, "init_mean": ("proposal", "zero")}

    name: str = "cem"
    num_samples: int = 250
    iterations: int = 4
    elite_fraction: float = 0.15
    sigma_init: float = 0.5
    alpha_mean: float = 0.9
    alpha_std: float = 0.5
    warm_start: bool = True  # start from the previous plan shifted by one step (first call: init_mean)
    init_mean: str = "proposal"  # proposal: an open-loop proposal rollout (Byravan Alg. 3) | zero: PlaNet's mu = 0


def check_cem(cfg) -> None:
    check_planner_common(cfg)
    p = cfg.planner
    if int(round(p.elite_fraction * p.num_samples)) < 1:
        raise ConfigError(f"planner.elite_fraction ({p.elite_fraction}) x num_samples ({p.num_samples}) leaves zero elites")
    for key in ("alpha_mean", "alpha_std", "elite_fraction"):
        if not 0.0 < getattr(p, key) <= 1.0:
            raise ConfigError(f"planner.{key} must be in (0, 1], got {getattr(p, key)}")


def elite_update(mu, sigma, samples, returns, num_elites: int, alpha_mean: float, alpha_std: float):
    """One smoothed CEM update from samples [S, H, A] and returns [S] -> (mu, sigma) [H, A]."""
    _, idx = jax.lax.top_k(returns, num_elites)
    elites = samples[idx]
    mu_new = (1.0 - alpha_mean) * mu + alpha_mean * jnp.mean(elites, axis=0)
    sigma_new = (1.0 - alpha_std) * sigma + alpha_std * jnp.std(elites, axis=0)
    return mu_new, sigma_new


def proposal_rollout(core: RolloutCore, proposal, pp, obs, belief, key, horizon: int, progress):
    """Open-loop actions [H, A] of one proposal rollout through the model (Alg. 3, line 2)."""
    k_init, k_roll = jax.random.split(key)
    z = core.initial_particles(pp, obs, k_init, 1, belief)

    def body(z, k):
        k_prop, k_step = jax.random.split(k)
        a = proposal(pp, core.observe(pp, z), k_prop, progress)
        z, _, _ = core.step(pp, z, a, k_step)
        return z, a[0]

    return jax.lax.scan(body, z, jax.random.split(k_roll, horizon))[1]


def make_cem(cfg, core: RolloutCore, proposal, action_size: int) -> Planner:
    """cfg: num_samples, horizon, iterations, elite_fraction, sigma_init, alpha_mean, alpha_std, warm_start, init_mean."""
    num, horizon = cfg.num_samples, cfg.horizon
    num_elites = max(1, int(round(cfg.elite_fraction * num)))

    def init(key):
        del key
        return {"mean": jnp.zeros((horizon, action_size)), "has_plan": jnp.zeros((), bool)}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        k_prop, k_init, k_iters = jax.random.split(key, 3)
        if cfg.init_mean == "zero":
            from_proposal = jnp.zeros((horizon, action_size))
        else:
            from_proposal = proposal_rollout(core, proposal, pp, obs, belief, k_prop, horizon, progress)
        if cfg.warm_start:
            shifted = shift_plan(planner_state["mean"], from_proposal[-1])
            mu = jnp.where(planner_state["has_plan"], shifted, from_proposal)
        else:
            mu = from_proposal
        sigma = jnp.full((horizon, action_size), cfg.sigma_init)
        z0 = core.initial_particles(pp, obs, k_init, num, belief)

        def iteration(carry, k):
            mu, sigma = carry
            k_noise, k_score = jax.random.split(k)
            samples = clip_actions(mu + sigma * jax.random.normal(k_noise, (num, horizon, action_size)))
            returns = core.score(pp, z0, samples, k_score)
            mu, sigma = elite_update(mu, sigma, samples, returns, num_elites, cfg.alpha_mean, cfg.alpha_std)
            return (mu, sigma), jnp.max(returns)

        (mu, sigma), best = jax.lax.scan(iteration, (mu, sigma), jax.random.split(k_iters, cfg.iterations))
        state = {"mean": mu, "has_plan": jnp.ones((), bool)}
        return mu[0], state, {"planner/return_max": best[-1], "planner/sigma_mean": jnp.mean(sigma)}

    return Planner(init=init, plan=plan)
