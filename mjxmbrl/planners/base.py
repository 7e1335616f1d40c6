"""The shared rollout-and-score core of every planner.

A planner sees the world through three functions bound at build time:

    step(plan_params, z [P], actions [P, A], key) -> (z' [P], reward [P], alive [P])
        one vmapped model step of all particles, with the step's reward from the
        task's known `reward_fn(obs, action, next_obs)` on the model's predicted
        observations, or from the model's own reward (learned head, or the
        simulator's reward for the oracle); `alive` is 0 once a particle's
        episode has terminated (oracle termination, or a learned termination
        probability < 0.5), so rewards after a terminal state do not count;
    value(plan_params, z [P], key) -> [P]
        the terminal value V(s_H) of the particles' observations, from the
        learner (mean over K sampled values), or zeros without bootstrapping;
    score(plan_params, z0 [P], actions [P, H, A], key) -> returns [P]
        sum_t gamma^t r_t + gamma^H V(s_H) (Byravan et al. Alg. 3 `evaluate_actions`;
        gradient-based planning Eq. 6), scan over H, vmap over particles.

`PlanParams` carries what changes between calls (model, policy and value
parameters); everything static (sizes, horizons, reward choice) is closed over.
Each planner file (smc.py, cem.py, mppi.py, grad.py) holds only its own rules.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mjxmbrl.types import Metrics, Params, PRNGKey


class PlanParams(NamedTuple):
    """Parameters a plan reads: model params ({} for the oracle), proposal policy and value (learner) params."""

    model: Params
    policy: Params = None
    value: Params = None
    obs_stats: Any = None  # the agent's observation statistics when its networks read normalised observations


class Planner(NamedTuple):
    """init(key) -> planner_state;
    plan(key, planner_state, obs [D], sim_state, plan_params) -> (action [A], planner_state, metrics).

    `sim_state` is the env's State of this env (used by the oracle model only).
    """

    init: Callable[[PRNGKey], Any]
    plan: Callable[..., Any]


class RolloutCore(NamedTuple):
    initial_particles: Callable[..., Any]  # (plan_params, obs, key, P, sim_state) -> z [P]
    observe: Callable[..., jax.Array]  # (plan_params, z [P]) -> obs [P, D]
    step: Callable[..., Any]  # (plan_params, z [P], a [P, A], key) -> (z', r [P], alive [P])
    value: Callable[..., jax.Array]  # (plan_params, z [P], key) -> [P]
    score: Callable[..., jax.Array]  # (plan_params, z0 [P], actions [P, H, A], key) -> [P]
    discount: float


def make_rollout_core(
    model,
    discount: float,
    reward_fn: Optional[Callable] = None,
    reward_scale: float = 1.0,
    value_fn: Optional[Callable] = None,
) -> RolloutCore:
    """Binds a model, a reward and an optional terminal value into the shared core.

    model: a models.base.Model. reward_fn: known reward (obs, action, next_obs)
    -> [] applied to the model's observations and multiplied by `reward_scale`
    (the action repeat: the known reward is per control step and one model step
    spans `action_repeat` of them); None uses model.reward. value_fn:
    (value_params, obs [P, D], key) -> [P], or None for no bootstrap.
    """
    if reward_fn is None and model.reward is None:
        raise ValueError(f"model '{model.name}' has no reward: give the task's known reward or learn a reward head")

    def observe(pp: PlanParams, z):
        return jax.vmap(lambda zi: model.observation(pp.model, zi))(z)

    def initial_particles(pp: PlanParams, obs, key, num_particles: int, sim_state=None):
        return model.initial_particles(pp.model, obs, key, num_particles, sim_state)

    def step(pp: PlanParams, z, actions, key):
        keys = jax.random.split(key, actions.shape[0])
        z_next = jax.vmap(lambda zi, ai, ki: model.step(pp.model, zi, ai, ki))(z, actions, keys)
        if reward_fn is not None:
            reward = reward_scale * reward_fn(observe(pp, z), actions, observe(pp, z_next))
        else:
            reward = jax.vmap(lambda zi, ai, zn: model.reward(pp.model, zi, ai, zn))(z, actions, z_next)
        if model.termination is not None:
            terminal = jax.vmap(lambda zi, ai, zn: model.termination(pp.model, zi, ai, zn))(z, actions, z_next)
            alive = (terminal < 0.5).astype(jnp.float32)
        else:
            alive = jnp.ones_like(reward)
        return z_next, reward, alive

    def value(pp: PlanParams, z, key):
        if value_fn is None:
            return jnp.zeros(jax.tree.leaves(z)[0].shape[:1], jnp.float32)
        return value_fn(pp.value, observe(pp, z), key)

    def score(pp: PlanParams, z0, actions, key):
        """Discounted return of each particle's action sequence plus the discounted terminal value."""
        horizon = actions.shape[1]
        step_keys = jax.random.split(key, horizon + 1)

        def body(carry, inputs):
            z, ret, alive, scale = carry
            a, k = inputs
            z, r, still = step(pp, z, a, k)
            ret = ret + scale * alive * r
            alive = alive * still
            return (z, ret, alive, scale * discount), None

        n = actions.shape[0]
        init = (z0, jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.float32), jnp.asarray(1.0, jnp.float32))
        (z, ret, alive, scale), _ = jax.lax.scan(body, init, (jnp.swapaxes(actions, 0, 1), step_keys[:-1]))
        return ret + scale * alive * value(pp, z, step_keys[-1])

    return RolloutCore(initial_particles, observe, step, value, score, discount)


def clip_actions(actions: jax.Array) -> jax.Array:
    """Actions live in [-1, 1]^A in every env of the registry."""
    return jnp.clip(actions, -1.0, 1.0)


def plan_metrics(returns: jax.Array, prefix: str = "planner/") -> Metrics:
    return {f"{prefix}return_mean": jnp.mean(returns), f"{prefix}return_max": jnp.max(returns)}
