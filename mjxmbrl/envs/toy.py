"""`toy_reach`: a tiny pure-JAX 2-D point-mass reaching task for fast tests.

A point mass starts near the origin at rest; a goal is drawn at reset. The action
in [-1, 1]^2 is a force. Dynamics are semi-implicit Euler with linear damping:

    vel' = (1 - DAMPING * DT) * vel + FORCE_SCALE * DT * a
    pos' = pos + DT * vel'

Observation: [pos(2), vel(2), goal(2)] (6). Reward per step, in [0, 1]:
`1 - tanh(REWARD_SHARPNESS * |pos' - goal|)` (dense). The episode terminates
(done = 1, a true terminal) when any |pos'| coordinate exceeds BOX. The state
is a dict pytree, so `State.data` is `{"pos", "vel", "goal"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from mujoco_playground._src.mjx_env import State

DT = 0.05
DAMPING = 1.0
FORCE_SCALE = 4.0
BOX = 2.0
START_RANGE = 0.5  # initial position uniform in [-START_RANGE, START_RANGE]^2
GOAL_RANGE = 1.0  # goal uniform in [-GOAL_RANGE, GOAL_RANGE]^2
REWARD_SHARPNESS = 2.0
OBS_SIZE = 6
ACTION_SIZE = 2
EPISODE_LENGTH = 50


def reward_fn(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Reward of a transition, exactly as the env computes it.

    obs [..., 6], action [..., 2], next_obs [..., 6] -> reward [...] in [0, 1].
    Only next_obs (its position and goal) matters.
    """
    del obs, action
    dist = jnp.linalg.norm(next_obs[..., 0:2] - next_obs[..., 4:6], axis=-1)
    return 1.0 - jnp.tanh(REWARD_SHARPNESS * dist)


def termination_fn(next_obs: jax.Array) -> jax.Array:
    """1.0 where the position in next_obs [..., 6] left the box, else 0.0 -> [...]."""
    return jnp.any(jnp.abs(next_obs[..., 0:2]) > BOX, axis=-1).astype(jnp.float32)


def _obs(data: dict) -> jax.Array:
    return jnp.concatenate([data["pos"], data["vel"], data["goal"]], axis=-1)


class ToyReach:
    """Unbatched pure-JAX env with the Playground `reset`/`step` API."""

    observation_size = OBS_SIZE
    action_size = ACTION_SIZE
    dt = DT

    def __init__(self, spec=None):
        self.spec = spec

    def reset(self, key: jax.Array) -> State:
        """key -> State with obs [6], reward/done scalars, data {"pos","vel","goal"} [2] each."""
        from mujoco_playground._src.mjx_env import State  # heavy import, deferred

        key_pos, key_goal = jax.random.split(key)
        data = {
            "pos": jax.random.uniform(key_pos, (2,), minval=-START_RANGE, maxval=START_RANGE),
            "vel": jnp.zeros((2,), jnp.float32),
            "goal": jax.random.uniform(key_goal, (2,), minval=-GOAL_RANGE, maxval=GOAL_RANGE),
        }
        obs = _obs(data)
        metrics = {"distance": jnp.linalg.norm(data["pos"] - data["goal"])}
        # Separate zeros: aliased leaves cannot be donated.
        reward, done = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
        return State(data=data, obs=obs, reward=reward, done=done, metrics=metrics, info={})

    def step(self, state: State, action: jax.Array) -> State:
        """(State, action [2]) -> next State; the action is clipped to [-1, 1]."""
        action = jnp.clip(action, -1.0, 1.0)
        data = state.data
        vel = (1.0 - DAMPING * DT) * data["vel"] + FORCE_SCALE * DT * action
        pos = data["pos"] + DT * vel
        new_data = {"pos": pos, "vel": vel, "goal": data["goal"]}
        obs = _obs(new_data)
        reward = reward_fn(state.obs, action, obs)
        done = termination_fn(obs)
        metrics = dict(state.metrics)
        metrics["distance"] = jnp.linalg.norm(pos - data["goal"])
        return state.replace(data=new_data, obs=obs, reward=reward, done=done, metrics=metrics)
