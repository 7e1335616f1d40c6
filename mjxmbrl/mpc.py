"""Closed-loop MPC: M episodes in parallel, every env choosing each action by planning.

`make_mpc_episodes(env, planner, num_steps)` returns a jitted
`run(key, plan_params) -> MPCResult`: resets M envs (no auto-reset), and at
each agent step vmaps `planner.plan` over the envs (each with its own key,
planner state and simulator state) before stepping them. Used by
`mjxmbrl plan` (MPC without learning: Byravan et al. Table 1, POLO's "MPC"
baseline) and by the planner tests and benchmarks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mjxmbrl.planners.base import Planner, PlanParams


class MPCResult(NamedTuple):
    returns: jax.Array  # [M] undiscounted episode returns
    lengths: jax.Array  # [M] episode lengths in control steps
    rewards: jax.Array  # [T, M] reward of each agent step (0 after the episode ended)
    metrics: dict  # planner metrics, each [T, M]


def make_mpc_episodes(env, planner: Planner, num_steps: int = 0):
    """env: a VectorEnv with auto_reset=False (M = env.num_envs). num_steps 0: one full episode."""
    steps = num_steps or math.ceil(env.episode_length / env.action_repeat)
    plan_all = jax.vmap(planner.plan, in_axes=(0, 0, 0, 0, None))

    def run(key, pp: PlanParams) -> MPCResult:
        k_reset, k_init, k_steps = jax.random.split(key, 3)
        state = env.reset(k_reset)
        pstate = jax.vmap(planner.init)(jax.random.split(k_init, env.num_envs))

        def body(carry, k):
            state, pstate, ret, length, alive = carry
            action, pstate, metrics = plan_all(jax.random.split(k, env.num_envs), pstate, state.obs, state, pp)
            state = env.step(state, action)
            reward = alive * state.reward
            carry = (state, pstate, ret + reward, length + alive * env.action_repeat, alive * (1.0 - state.done))
            return carry, (reward, metrics)

        zeros = jnp.zeros((env.num_envs,), jnp.float32)
        carry = (state, pstate, zeros, zeros, jnp.ones_like(zeros))
        (_, _, ret, length, _), (rewards, metrics) = jax.lax.scan(body, carry, jax.random.split(k_steps, steps))
        return MPCResult(ret, length, rewards, metrics)

    return jax.jit(run)
