"""Reward of the reorientation task that stands in for POLO's in-hand manipulation (Lowrey et al. 2019,
arXiv:1811.01848, Sec. 3.2 and App. B), from observations only.

The paper's Adroit hand re-orients a die to a goal orientation re-drawn every 75 control steps, with
R(s) = -0.5 l1(x_o, x_g) - 0.05 l_quat(q_o, q_g) (App. B, Eq. 8). The DM Control suite has no hand; its
finger (`FingerTurn`) turns a hinged spinner whose tip must point at a target on the spinner's circle.
`FingerReorient` (envs/polo_envs.py) re-draws that target angle every TARGET_PERIOD steps. The spinner
sits on a fixed hinge, so the position term vanishes and the orientation term is the angle between
the spinner's tip and the target, both seen from the hinge:

    R(s) = -angle(tip, target) / pi    in [-1, 0], 0 when the tip points at the target

read from the observation after the step (entries TIP = the tip's (x, z) and TARGET = the target's
(x, z), both relative to the hinge: DM Control's finger observation).

Pure jax.numpy: imports no simulator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TARGET_PERIOD = 75  # control steps between target re-draws (App. B)
TARGET_RADIUS = 0.07  # m, the target sphere of FingerTurnEasy (for the `in_target` metric)
EPISODE_LENGTH = 1000  # control steps of 0.02 s, DM Control's finger episode (Fig. 3 averages 1000 steps)
OBS_SIZE, ACTION_SIZE = 12, 2
TIP = slice(2, 4)  # tip (x, z) relative to the hinge, in DM Control's finger observation [12]
TARGET = slice(9, 11)  # target (x, z) relative to the hinge


def angle_to_target(obs: jax.Array) -> jax.Array:
    """Angle (rad, in [0, pi]) between the spinner's tip and the target seen from the hinge, obs [..., 12] -> [...]."""
    tip, target = obs[..., TIP], obs[..., TARGET]
    cross = tip[..., 0] * target[..., 1] - tip[..., 1] * target[..., 0]
    dot = jnp.sum(tip * target, axis=-1)
    return jnp.abs(jnp.arctan2(cross, dot))


def reorient_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Orientation reward (Lowrey et al. 2019 App. B's l_quat term on a hinge): -angle(tip, target) / pi -> [...]."""
    del obs, action
    return -angle_to_target(next_obs) / jnp.pi
