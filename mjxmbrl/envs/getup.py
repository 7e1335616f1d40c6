"""Getup rewards of POLO (Lowrey et al. 2019, arXiv:1811.01848, App. A.1), from observations only.

The body starts supine and is rewarded for raising its root (torso) height z
to a target z*:

    dense   R(s) = 1 - (z* - z)  if z <= z*, else 1     (= min(1, 1 + z - z*))
    sparse  R(s) = 0             if z <= z*, else 1

per control step, z read after the step. The getup envs (envs/polo_envs.py)
append z as the last observation entry, so `reward_fn(obs, action, next_obs)`
is exact: it reads next_obs[..., -1].

Targets:
- HumanoidGetup: z* = 1.1 m, the paper's value. The DM Control humanoid's torso
  stands at HUMANOID_STAND_HEIGHT = 1.285 m (torso z 1.5 at qpos0 minus the
  0.215 m its feet float there), so z* is 0.856 of its standing height.
- WalkerGetup: the same fraction of the DM Control walker's standing torso
  height (WALKER_STAND_HEIGHT = 1.3 m: torso z at qpos0, where the feet touch
  the floor): z* = 1.3 * 1.1 / 1.285 = 1.11 m. (dm_control's `_STAND_HEIGHT`
  = 1.2 is the threshold of its stand reward, not the standing height; 1.11 is
  below it: the walker has to stand nearly straight, not just kneel, as the
  humanoid has to for 1.1.)

No control cost. The paper adds one (actuator force scaled by the inverse
mass matrix, weight unstated); it is left out here so that the sparse reward
stays 0/1 as written in App. A.1 and the known reward stays an exact function
of the observation (M(q)^-1 is not in it). A planner can add its own action
penalty.

Pure jax.numpy: imports no simulator.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

HUMANOID_TARGET_HEIGHT = 1.1  # m, App. A.1
HUMANOID_STAND_HEIGHT = 1.285  # m, DM Control humanoid torso z standing (measured, tests/test_polo_tasks.py)
WALKER_STAND_HEIGHT = 1.3  # m, DM Control walker torso z standing (its qpos0)
WALKER_TARGET_HEIGHT = round(WALKER_STAND_HEIGHT * HUMANOID_TARGET_HEIGHT / HUMANOID_STAND_HEIGHT, 2)  # 1.11 m

EPISODE_LENGTH = 600  # control steps (App. A: 600-step episodes)
ROOT_HEIGHT_INDEX = -1  # the root height is the last observation entry


def getup_reward(root_z: jax.Array, target: float, sparse: bool) -> jax.Array:
    """App. A.1 reward of root heights root_z [...] (m) for target z* (m) -> [...]."""
    root_z = jnp.asarray(root_z)
    if sparse:
        return jnp.where(root_z <= target, 0.0, 1.0).astype(jnp.result_type(root_z, jnp.float32))
    return jnp.minimum(1.0, 1.0 - (target - root_z))


def make_getup_reward_fn(target: float, sparse: bool) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """reward_fn(obs [..., D], action [..., A], next_obs [..., D]) -> [...], reading next_obs[..., -1]."""

    def reward_fn(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
        del obs, action
        return getup_reward(next_obs[..., ROOT_HEIGHT_INDEX], target, sparse)

    kind = "sparse: 0 if z <= z*, else 1" if sparse else "dense: min(1, 1 - (z* - z))"
    reward_fn.__doc__ = f"Getup reward (Lowrey et al. 2019, App. A.1), {kind}, z* = {target:g} m, z = next_obs[..., -1]."
    return reward_fn


humanoid_getup_reward = make_getup_reward_fn(HUMANOID_TARGET_HEIGHT, sparse=False)
humanoid_getup_sparse_reward = make_getup_reward_fn(HUMANOID_TARGET_HEIGHT, sparse=True)
walker_getup_reward = make_getup_reward_fn(WALKER_TARGET_HEIGHT, sparse=False)
walker_getup_sparse_reward = make_getup_reward_fn(WALKER_TARGET_HEIGHT, sparse=True)
