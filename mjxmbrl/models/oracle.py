"""The oracle model: the task's own MJX step behind the Model interface.

Its state is the simulator State of one env (MJX data, observation, reward,
info), not the observation, so planners roll out the true dynamics (POLO;
Byravan et al. 2022, Table 1 "ground truth"). A step applies the action
`action_repeat` times exactly as the training env does
(`VectorEnv.step_one`, no auto-reset: a finished episode stays frozen), and
`reward` is the simulator's summed reward of that step. With `impl="jax"` the
step is differentiable, so gradient-based planners can plan through it.

The MJX model is bound inside the env when the oracle is built, so the
oracle's params are an empty dict (nothing to train: `loss` is None).
"""

from __future__ import annotations

from typing import Optional

import jax

from mjxmbrl.envs.wrappers import make_vector_env
from mjxmbrl.models.base import Model, default_initial_particles


def make_oracle_model(env_name: str, impl: str = "jax", episode_length: Optional[int] = None, action_repeat: int = 1) -> Model:
    """Builds the oracle of `env_name`; z = one env's State (the training env's layout)."""
    env = make_vector_env(env_name, 1, impl=impl, episode_length=episode_length, action_repeat=action_repeat, auto_reset=False)

    def init(key):
        del key
        return {}

    def initial_state(params, obs, key, sim_state=None):
        del params, obs, key
        if sim_state is None:
            raise ValueError("the oracle model starts from the simulator state: pass sim_state (one env's State)")
        return sim_state

    def step(params, z, action, key):
        del params, key
        return env.step_one(z, action)

    def observation(params, z):
        del params
        return z.obs

    def reward(params, z, action, next_z):
        del params, z, action
        return next_z.reward

    def termination(params, z, action, next_z):
        del params, z, action
        return next_z.info["terminated"]

    return Model(
        name="oracle",
        init=init,
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=step,
        observation=observation,
        reward=reward,
        termination=termination,
        loss=None,
        uses_sim_state=True,
    )


def env_slice(state, index: int):
    """One env's State out of a batched State [N] (for the oracle's initial_state)."""
    return jax.tree.map(lambda x: x[index], state)
