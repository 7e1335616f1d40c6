"""Gradient-based MPC (gradient-based planning with world models, Sec. 4, Alg. 1, Eq. 6).

J candidate action sequences [J, H, A] start from N(0, 1) (Grad-MPC) or from
rollouts of the proposal policy (Policy+Grad-MPC, `init: policy`); with
`warm_start` the previous best plan, shifted one step, replaces candidate 0.
I iterations of an optax optimiser ascend the predicted return
R_j = sum_t gamma^t r_t + gamma^H V(s_H) (Eq. 6) through the model with
respect to the actions, which are clipped to [-1, 1] after every step:
`optimizer: sgd` is Alg. 1's plain step a <- a + lr grad R, `adam` (default)
rescales each action's step. The step size is `learning_rate`, or with
`learning_rates` a piecewise-constant schedule over the I iterations, split
into equal stages (App. A.7 lists the action learning rates
0.1-0.01-0.005-0.0001). The first action of the best candidate is returned. The model must be
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
    check_planner_common,
    clip_actions,
    shift_plan,
)
from mjxmbrl.planners.cem import proposal_rollout
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class GradConfig(PlannerConfig):
    """Gradient-based MPC (gradient-based planning with world models, Alg. 1)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {
        **PlannerConfig.choices, "init": ("normal", "policy"), "optimizer": ("adam", "sgd"),
    }

    name: str = "grad"
    num_candidates: int = 16
    iterations: int = 10
    learning_rate: float = 0.05
    # Non-empty: the step size of each of len(learning_rates) equal stages of the iterations, in order
    # (App. A.7: [0.1, 0.01, 0.005, 0.0001]); empty: learning_rate throughout.
    learning_rates: Tuple[float, ...] = ()
    optimizer: str = "adam"  # adam | sgd (Alg. 1's plain gradient step)
    init: str = "normal"  # normal: N(0, 1) candidates (Grad-MPC) | policy: proposal rollouts (Policy+Grad-MPC)
    warm_start: bool = True


def check_grad(cfg) -> None:
    check_planner_common(cfg)
    p = cfg.planner
    rates = tuple(p.learning_rates)
    if any(r <= 0 for r in rates):
        raise ConfigError(f"planner.learning_rates must all be > 0, got {list(rates)}")
    if len(rates) > p.iterations:
        raise ConfigError(
            f"planner.learning_rates has {len(rates)} stages but planner.iterations is {p.iterations}: "
            "each stage needs at least one iteration"
        )


def step_size_schedule(learning_rate: float, learning_rates: Tuple[float, ...], iterations: int):
    """The step size of iteration i: `learning_rate`, or learning_rates[floor(i * n / I)] for n stages."""
    rates = tuple(float(r) for r in learning_rates)
    if not rates:
        return float(learning_rate)
    table = jnp.asarray(rates, jnp.float32)

    def schedule(count):
        return table[jnp.minimum(count * len(rates) // iterations, len(rates) - 1)]

    return schedule


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
    """cfg: num_candidates, horizon, iterations, learning_rate(s), optimizer, init ("normal" | "policy"), warm_start."""
    num, horizon = cfg.num_candidates, cfg.horizon
    step_size = step_size_schedule(cfg.learning_rate, tuple(cfg.learning_rates), cfg.iterations)
    optimizer = optax.sgd(step_size) if cfg.optimizer == "sgd" else optax.adam(step_size)

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
