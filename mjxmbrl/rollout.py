"""The one episode runner: training-time evaluation, `mjxmbrl eval`, `mjxmbrl plan` and videos.

`make_episode_runner(env, act, init_carry, record)` returns a jitted
`run(key, params) -> Episodes`: it resets the M envs of `env` (a VectorEnv
without auto-reset) from `key`, then for T = ceil(episode_length /
action_repeat) agent steps calls `act(step_key, params, carry, env_state)
-> (action [M, A], carry, metrics)` and steps the envs. Rewards after an env's
first `done` are ignored, so a terminated episode scores what it earned.

Actors (`act`, `init_carry` pairs):
  agent_actor(agent, mode)          an Agent in one of its modes ("eval": the
                                    actor with its planner; "policy": the
                                    amortized policy alone); params = (agent
                                    state, env steps trained: drives schedules);
  policy_actor(policy, normalize)   an exported deterministic policy;
                                    params = (policy params, obs statistics).

Keys: `reset_key, act_key = split(key)`, step t acts with `split(act_key, T)[t]`
and the carry starts from `fold_in(key, 1)`, so every actor sees the same
initial states for the same key (an MPC-only agent evaluated during training
plays exactly the episodes `mjxmbrl plan` plays with that key).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mjxmbrl.envs.normalization import normalize


class Episodes(NamedTuple):
    returns: jax.Array  # [M] undiscounted episode returns
    lengths: jax.Array  # [M] episode lengths in control steps
    rewards: jax.Array  # [T, M] reward of each agent step (0 after the episode ended)
    metrics: dict  # the actor's metrics (e.g. planner/...) of each step, each [T]
    trace: Any = None  # `record(state)` after every agent step, leaves [T, M, ...]; None without `record`


def agent_actor(agent, mode: str):
    """(act, init_carry) of `agent` acting in `mode`; the runner's params are (agent state, env_steps [] int32)."""

    def act(key, params, carry, env_state):
        state, env_steps = params
        action, carry, _, metrics = agent.act(key, state, carry, env_state, env_steps, mode)
        return action, carry, metrics

    return act, agent.init_carry


def policy_actor(policy: Callable, normalize_obs: bool):
    """(act, init_carry) of a deterministic exported policy; params = (policy params, RunningStats)."""

    def act(key, params, carry, env_state):
        policy_params, obs_stats = params
        obs = normalize(obs_stats, env_state.obs) if normalize_obs else env_state.obs
        return policy(policy_params, obs, key, True), carry, {}

    return act, lambda key, num_envs: {}


def make_episode_runner(env, act: Callable, init_carry: Callable, record: Optional[Callable] = None) -> Callable:
    """Jitted `run(key, params) -> Episodes` over the M = env.num_envs envs (see the module docstring).

    env: a VectorEnv with auto_reset=False. record(state) -> pytree: what to keep
    of the env state after every step (e.g. qpos for a video), stacked in `trace`.
    """
    if env.auto_reset:
        raise ValueError("the episode runner plays whole episodes: give it an env with auto_reset=False")
    num_steps = math.ceil(env.episode_length / env.action_repeat)

    def run(key, params) -> Episodes:
        reset_key, act_key = jax.random.split(key)
        state = env.reset(reset_key)
        carry = init_carry(jax.random.fold_in(key, 1), env.num_envs)

        def step(loop, step_key):
            state, carry, ret, length, alive = loop
            action, carry, metrics = act(step_key, params, carry, state)
            state = env.step(state, action)
            reward = alive * state.reward
            length = length + alive * env.action_repeat
            alive = alive * (1.0 - state.done)
            out = (reward, metrics, None if record is None else record(state))
            return (state, carry, ret + reward, length, alive), out

        zeros = jnp.zeros((env.num_envs,), jnp.float32)
        loop = (state, carry, zeros, zeros, jnp.ones_like(zeros))
        (_, _, ret, length, _), (rewards, metrics, trace) = jax.lax.scan(step, loop, jax.random.split(act_key, num_steps))
        return Episodes(ret, length, rewards, metrics, trace)

    return jax.jit(run)


def make_eval_env(env_cfg, num_episodes: int):
    """The VectorEnv evaluation plays on: `num_episodes` envs, one episode each, no auto-reset."""
    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.envs.pixels import pixel_options

    return make_vector_env(
        env_cfg.name,
        num_envs=num_episodes,
        impl=env_cfg.impl,
        episode_length=env_cfg.episode_length,
        action_repeat=env_cfg.action_repeat,
        auto_reset=False,
        **pixel_options(env_cfg),
    )
