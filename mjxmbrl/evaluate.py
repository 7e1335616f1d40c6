"""Jitted evaluation of a policy: M full episodes in parallel, deterministic actions."""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mjxmbrl.envs import make_vector_env, normalize


class EvalResult(NamedTuple):
    returns: jax.Array  # [M] undiscounted episode returns
    lengths: jax.Array  # [M] episode lengths in control steps
    trace: Any = None  # `record(state)` after every agent step, leaves [T, M, ...]; None without `record`


def make_evaluator(env_cfg, learner, num_episodes: int, env=None, record: Optional[Callable] = None) -> Callable:
    """Builds `evaluate(key, policy_params, obs_stats) -> EvalResult`, jitted.

    Runs `num_episodes` envs without auto-reset for one full episode
    (T = ceil(episode_length / action_repeat) agent steps); rewards after an
    env's first `done` are ignored, so terminated episodes score what they earned.
    `env`: a VectorEnv of `num_episodes` envs without auto-reset to use instead
    of building one from `env_cfg`. `record(state) -> pytree`: what to keep of
    the env state after every step (e.g. the simulator's qpos for a video),
    returned stacked over steps as `EvalResult.trace`.
    """
    if env is None:
        env = make_vector_env(
            env_cfg.name,
            num_envs=num_episodes,
            impl=env_cfg.impl,
            episode_length=env_cfg.episode_length,
            action_repeat=env_cfg.action_repeat,
            auto_reset=False,
        )
    num_steps = math.ceil(env.episode_length / env.action_repeat)
    use_stats = env_cfg.normalize_obs

    def evaluate(key, policy_params, obs_stats) -> EvalResult:
        reset_key, act_key = jax.random.split(key)
        state = env.reset(reset_key)

        def step(carry, step_key):
            state, ret, length, alive = carry
            obs = normalize(obs_stats, state.obs) if use_stats else state.obs
            action = learner.policy(policy_params, obs, step_key, True)
            state = env.step(state, action)
            ret = ret + alive * state.reward
            length = length + alive * env.action_repeat
            alive = alive * (1.0 - state.done)
            return (state, ret, length, alive), (None if record is None else record(state))

        zeros = jnp.zeros((env.num_envs,), jnp.float32)
        carry = (state, zeros, zeros, jnp.ones_like(zeros))
        (_, ret, length, _), trace = jax.lax.scan(step, carry, jax.random.split(act_key, num_steps))
        return EvalResult(ret, length, trace)

    return jax.jit(evaluate)
