"""The ant's corridor walking tasks of Byravan et al. 2022 (arXiv:2110.03363, App. A.1), from observations only.

Byravan, Hasenclever, Trochim, Mirza, Ialongo, Tassa, Springenberg, Abdolmaleki, Heess, Merel,
Riedmiller 2022, "Evaluating model-based planning and planner amortization for continuous control".
The ant walks forward (+x) or backward (-x) along a corridor and is rewarded per control step by

    r = v . e_target                                                   (Eq. 5)

v the torso's velocity and e_target the unit vector of the desired direction, both in the torso's
frame. The observation (40) is egocentric: 37 proprioceptive entries (the paper's ant has 37 too)
then the 3 of the task, e_target in the torso's frame:

    [0:8)   joint angles          [8:16)  joint velocities     [16:19) linear velocity
    [19:22) angular velocity      [22:34) the four feet's positions relative to the torso
    [34:37) the world's z axis    [37:40) e_target (task)

so `walk_reward(obs, action, next_obs)` is exact. The task observation is integrated in closed form
from predicted proprioception (App. C.2): a direction fixed in the world, seen from a body turning at
the body-frame angular velocity w, obeys de/dt = -w x e, so over one step of dt

    e_{t+1} = Rot(-w dt) e_t,   w = (w_t + w_{t+1}) / 2                (Rodrigues' formula)

(`rotate_egocentric`; the paper Euler-integrates a quaternion, we rotate by the trapezoidal angular
velocity). Pure jax.numpy: imports no simulator; the MJX env is envs/byravan_envs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CTRL_DT = 0.02  # s, the paper's dt for the ant (App. C.1)
EPISODE_LENGTH = 1000  # control steps (20 s, as DM Control's tasks)
ACTION_SIZE = 8
PROPRIO_SIZE = 37
OBS_SIZE = PROPRIO_SIZE + 3
JOINT_ANGLES = slice(0, 8)
JOINT_VELOCITIES = slice(8, 16)
LINEAR_VELOCITY = slice(16, 19)
ANGULAR_VELOCITY = slice(19, 22)
FEET = slice(22, 34)
UP = slice(34, 37)
TARGET_DIRECTION = slice(37, 40)
DIRECTIONS = {"AntWalkForward": 1.0, "AntWalkBackward": -1.0}  # world x component of e_target


def walk_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Eq. 5 on next_obs [..., 40]: the torso's velocity along the target direction (m/s) -> [...]."""
    del obs, action
    return jnp.sum(next_obs[..., LINEAR_VELOCITY] * next_obs[..., TARGET_DIRECTION], axis=-1)


def rotate_egocentric(direction: jax.Array, angular_velocity: jax.Array, dt: float) -> jax.Array:
    """A world-fixed vector seen from the body after dt: Rot(-w dt) e, w body-frame [..., 3] -> [..., 3].

    Rodrigues' formula with phi = -w dt, theta = |phi|, written with sin(theta) / theta and
    (1 - cos theta) / theta^2 (their series below theta^2 = 1e-8), so values and gradients stay finite at w = 0.
    """
    phi = -angular_velocity * dt
    theta2 = jnp.sum(phi**2, axis=-1, keepdims=True)
    small = theta2 < 1e-8
    theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
    cos = jnp.where(small, 1.0 - theta2 / 2, jnp.cos(theta))
    sinc = jnp.where(small, 1.0 - theta2 / 6, jnp.sin(theta) / theta)
    cosc = jnp.where(small, 0.5 - theta2 / 24, (1.0 - jnp.cos(theta)) / jnp.where(small, 1.0, theta2))
    along = jnp.sum(phi * direction, axis=-1, keepdims=True)
    return direction * cos + jnp.cross(phi, direction) * sinc + phi * along * cosc
