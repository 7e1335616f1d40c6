"""Humanoid walking reward of POLO (Lowrey et al. 2019, arXiv:1811.01848, App. A.2), from observations only.

The humanoid starts upright and is rewarded for keeping its root (torso) above z* = 1.1 m and, up
there, for walking along the world's x axis at 1 m/s:

    R(s) = -(z* - z)                      if z <= z*
           1 - |v* - v_x| - |y|           otherwise,   v* = 1 m/s

per control step, read after the step: v_x is the root's forward velocity and y its distance from the
x axis (the paper prints |Root_x| but describes "the distance from the world's x-axis", which is |y|).
`PoloHumanoidWalk` (envs/polo_envs.py) appends (v_x, y, z) as the last three observation entries, so
`walk_reward(obs, action, next_obs)` is exact. No control cost (as for the getups: envs/getup.py).

Pure jax.numpy: imports no simulator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TARGET_HEIGHT = 1.1  # m, App. A.2
TARGET_SPEED = 1.0  # m/s, App. A.2
EPISODE_LENGTH = 600  # control steps (App. A: 600-step episodes)
OBS_SIZE = 67 + 3  # DM Control humanoid + (v_x, y, z)
VX, Y, Z = -3, -2, -1  # observation indices


def walk_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """App. A.2 reward of next_obs [..., 70] (last entries v_x, y, z) -> [...]."""
    del obs, action
    vx, y, z = next_obs[..., VX], next_obs[..., Y], next_obs[..., Z]
    return jnp.where(z <= TARGET_HEIGHT, -(TARGET_HEIGHT - z), 1.0 - jnp.abs(TARGET_SPEED - vx) - jnp.abs(y))
