"""The oracle model: the task's own MJX step behind the Model interface.

Its state is the simulator State of one env (MJX data, observation, reward,
info), not the observation, so planners roll out the true dynamics (POLO;
Byravan et al. 2022, Table 1 "ground truth"). A step applies the action
`action_repeat` times exactly as the training env does
(`VectorEnv.step_one`, no auto-reset: a finished episode stays frozen), and
`reward` is the simulator's summed reward of that step. The task is built with `planning=True`:
without its unmodelled disturbances (POLO's FingerReorient does not re-draw its target in a plan). With `impl="jax"` the
step is differentiable, so gradient-based planners can plan through it.

The MJX model is bound inside the env when the oracle is built, so the
oracle's params are an empty dict (nothing to train: `loss` is None).

The belief the acting agent passes to `initial_state` is the env's State. On
the first step after an auto-reset of the training env that State holds the
fresh episode's data and observation but still `done = 1` and the finished
episode's `terminated`/`truncated` flags; the oracle's own env does not
auto-reset, so it would treat the State as frozen and every particle would
see reward 0. `initial_state` therefore clears those flags: a plan always
starts from a live episode.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from mjxmbrl.envs.wrappers import make_vector_env
from mjxmbrl.models.base import Model, default_initial_particles, identity_input
from mjxmbrl.types import ConfigError


@dataclasses.dataclass(frozen=True)
class OracleModelConfig:
    """The true MJX simulator as a model: its state is the env State (POLO; Byravan Table 1 "ground truth")."""

    name: str = "oracle"


def check_oracle(cfg) -> None:
    """The oracle steps the task's own MJX model: the task must run on MJX."""
    from mjxmbrl.envs.registry import ENV_SPECS

    spec = ENV_SPECS.get(cfg.env.name)
    if spec is not None and (spec.family == "toy" or spec.name == "swimmer"):
        raise ConfigError(f"model 'oracle' needs an MJX task; env '{cfg.env.name}' does not run on MJX")


def make_oracle_model(env_name: str, impl: str = "jax", episode_length: Optional[int] = None, action_repeat: int = 1) -> Model:
    """Builds the oracle of `env_name`; z = one env's State (the training env's layout)."""
    env = make_vector_env(env_name, 1, impl=impl, episode_length=episode_length, action_repeat=action_repeat, auto_reset=False,
                          planning=True)

    def init(key):
        del key
        return {}

    def initial_state(params, obs, key, belief=None):
        """The simulator State `belief` of one env with done, terminated and truncated cleared."""
        del params, obs, key
        if belief is None:
            raise ValueError("the oracle model starts from the simulator state: pass it as belief (one env's State)")
        info = dict(belief.info)
        info.update(terminated=jnp.zeros_like(info["terminated"]), truncated=jnp.zeros_like(info["truncated"]))
        return belief.replace(done=jnp.zeros_like(belief.done), info=info)

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
        normalize_input=identity_input,  # the simulator takes raw observations
    )


def env_slice(state, index: int):
    """One env's State out of a batched State [N] (for the oracle's initial_state)."""
    return jax.tree.map(lambda x: x[index], state)
