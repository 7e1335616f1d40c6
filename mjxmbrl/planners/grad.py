"""Gradient-based MPC (gradient-based planning with world models, Sec. 4, Alg. 1, Eq. 6).

J candidate action sequences [J, H, A] start from N(0, 1) (Grad-MPC) or from
rollouts of the proposal policy (Policy+Grad-MPC, `init: policy`); with
`warm_start` the previous best plan, shifted one step, replaces candidate 0.
I iterations of an optax optimiser (Adam) ascend the predicted return
R_j = sum_t gamma^t r_t + gamma^H V(s_H) (Eq. 6) through the model with
respect to the actions, which are clipped to [-1, 1] after every step. The
first action of the best candidate is returned. The model must be
differentiable: any learned model, or the oracle with `impl: jax` (MJX is
written in JAX, so this plans by gradient through the real simulator).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp
import optax

from mjxmbrl.planners.base import (
    Planner,
    PlannerConfig,
    RolloutCore,
    clip_actions,
    shift_plan,
)
from mjxmbrl.planners.cem import proposal_rollout


@dataclasses.dataclass(frozen=True)
class GradConfig(PlannerConfig):
    """Gradient-based MPC (gradient-based planning with world models, Alg. 1)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {**PlannerConfig.choices, "init": ("normal", "policy")}

    name: str = "grad"
    num_candidates: int = 16
    iterations: int = 10
    learning_rate: float = 0.05
    init: str = "normal"  # normal: N(0, 1) candidates (Grad-MPC) | policy: proposal rollouts (Policy+Grad-MPC)
    warm_start: bool = True


def gradient_ascent(objective, actions, optimizer, iterations: int):
    """Maximises sum_j objective(actions)[j] by `iterations` optimiser steps with clipping.

    objective: actions [J, H, A] -> returns [J] (candidates are independent, so
    the gradient of the sum is each candidate's own gradient). Returns (actions,
    returns [iterations] of the best candidate before each step).
    """

    def step(carry, _):
        actions, opt_state = carry
        returns, grads = jax.value_and_grad(lambda a: jnp.sum(objective(a)))(actions)
        # Simulator gradients can be NaN where a branch not taken is singular (jnp.where in rewards,
        # contacts); such entries carry no direction, so they are dropped rather than poisoning the plan.
        grads = jnp.where(jnp.isfinite(grads), grads, 0.0)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), opt_state, actions)
        actions = clip_actions(optax.apply_updates(actions, updates))
        return (actions, opt_state), returns

    (actions, _), history = jax.lax.scan(step, (actions, optimizer.init(actions)), None, length=iterations)
    return actions, history


def make_grad(cfg, core: RolloutCore, proposal, action_size: int) -> Planner:
    """cfg: num_candidates, horizon, iterations, learning_rate, init ("normal" | "policy"), warm_start."""
    num, horizon = cfg.num_candidates, cfg.horizon
    optimizer = optax.adam(cfg.learning_rate)

    def init(key):
        del key
        return {"best": jnp.zeros((horizon, action_size)), "has_plan": jnp.zeros((), bool)}

    def plan(key, planner_state, obs, belief, pp, progress=0.0):
        k_cand, k_init, k_score = jax.random.split(key, 3)
        if cfg.init == "policy":
            keys = jax.random.split(k_cand, num)
            candidates = jax.vmap(lambda k: proposal_rollout(core, proposal, pp, obs, belief, k, horizon, progress))(keys)
        else:
            candidates = clip_actions(jax.random.normal(k_cand, (num, horizon, action_size)))
        if cfg.warm_start:
            shifted = shift_plan(planner_state["best"])
            candidates = candidates.at[0].set(jnp.where(planner_state["has_plan"], shifted, candidates[0]))
        z0 = core.initial_particles(pp, obs, k_init, num, belief)

        def objective(actions):
            return core.score(pp, z0, actions, k_score)  # one key: the same noise at every iteration

        actions, history = gradient_ascent(objective, candidates, optimizer, cfg.iterations)
        returns = objective(actions)
        best = jnp.argmax(jnp.where(jnp.isfinite(returns), returns, -jnp.inf))
        metrics = {
            "planner/return_max": returns[best],
            "planner/return_mean": jnp.mean(returns),
            "planner/return_gain": jnp.mean(returns) - history[0] / num,
        }
        return actions[best, 0], {"best": actions[best], "has_plan": jnp.ones((), bool)}, metrics

    return Planner(init=init, plan=plan)
