"""The ant's go-to-target-pose (GTTP) task of Byravan et al. 2022 (arXiv:2110.03363, App. A.2), pure jax.numpy.

Byravan, Hasenclever, Trochim, Mirza, Ialongo, Tassa, Springenberg, Abdolmaleki, Heess, Merel,
Riedmiller 2022, "Evaluating model-based planning and planner amortization for continuous control".
A target pose (joint angles, torso height and tilt from a reference set, envs/data/ant_gttp_poses.npz)
is placed on the plane at a heading within +-120 degrees of the ant's and a distance from the
intra-episode curriculum, turned by a yaw within +-120 degrees of the ant's. The ant is rewarded for
matching it (Eq. 6-10); holding the dense reward above 0.8 for 10 steps earns a bonus of 50 and a new
target.

Observation (126) = the corridor ant's 37 proprioceptive entries (envs/ant_walk.py) then the task's 89,
all in the torso's frame:

    [37:45)   target joint angles - joint angles
    [45:48)   target root (torso) position - torso position
    [48:72)   the target's 8 leg bodies (4 thighs, 4 shins), positions relative to our torso
    [72:126)  the target's 9 bodies (torso, thighs, shins), x and z axes of each (6 per body)

The paper's 107 task entries also hold each body's relative orientation as a quaternion; we give the
target's body axes instead, because they are vectors fixed in the world: the model integrates them,
and the target's positions, in closed form from predicted proprioception (App. C.2) by rotating them
with the torso's angular velocity w and translating the positions by its linear velocity v:

    p_{t+1} = Rot(-w dt) (p_t - v dt),   u_{t+1} = Rot(-w dt) u_t,   dq_{t+1} = dq_t - (q_{t+1} - q_t)

with w, v the means over the step of the observed and predicted velocities. This needs no learned
forward-kinematics model (the paper's Fig. 5, bottom): our own bodies' positions follow from the joint
angles in the proprioception, which the networks see.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.envs import ant_walk

PROPRIO_SIZE = ant_walk.PROPRIO_SIZE
NUM_POSE_BODIES = 8  # thighs and shins: the bodies whose positions the pose terms compare
NUM_AXIS_BODIES = 9  # the torso and the 8 above: the bodies whose orientations they compare
TARGET_JOINTS = slice(37, 45)
TARGET_ROOT = slice(45, 48)
TARGET_POSITIONS = slice(45, 72)  # the root and the 8 bodies: 9 points
TARGET_AXES = slice(72, 126)
OBS_SIZE = 126

# App. A.2 for the ant: threshold, steps held, bonus, robot multiplier; curriculum phases and distances (m).
R_THRESHOLD = 0.8
HOLD_STEPS = 10
BONUS = 50.0
M_ROBOT = 1.0
CURRICULUM_PHASES = 4
DISTANCE_RANGE = (0.5, 5.0)
MAX_HEADING = np.deg2rad(120.0)  # rad, of the target's position and of its yaw, relative to the ant's
NUM_JOINTS = 8


class Target(NamedTuple):
    """A placed target pose, in the world frame."""

    joints: jax.Array  # [8] joint angles
    root: jax.Array  # [3] torso position
    bodies: jax.Array  # [8, 3] thigh and shin positions
    rotations: jax.Array  # [9, 3, 3] torso, thigh and shin orientations (body -> world)
    com: jax.Array  # [3] centre of mass


def yaw_of(rotation: jax.Array) -> jax.Array:
    """Heading (rad) of a body's x axis in the world's x-y plane; rotation [..., 3, 3] body -> world."""
    return jnp.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])


def yaw_matrix(yaw: jax.Array) -> jax.Array:
    """Rz(yaw) [..., 3, 3]."""
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    zero, one = jnp.zeros_like(yaw), jnp.ones_like(yaw)
    return jnp.stack([jnp.stack([c, -s, zero], -1), jnp.stack([s, c, zero], -1), jnp.stack([zero, zero, one], -1)], -2)


def remove_yaw(quat: np.ndarray) -> np.ndarray:
    """A free joint's quaternion [..., 4] (w, x, y, z) with its heading turned to 0 (numpy, for the pose set).

    q = q_yaw * q_tilt; returns q_tilt = conj(q_yaw) * q with q_yaw the rotation about z by the body x axis'
    heading, so the tilt (roll and pitch) is kept.
    """
    w, x, y, z = np.moveaxis(np.asarray(quat, np.float64), -1, 0)
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))  # heading of R[:, 0]
    cw, sw = np.cos(yaw / 2), np.sin(yaw / 2)  # conj(q_yaw) = (cw, 0, 0, -sw)
    out = np.stack([cw * w + sw * z, cw * x + sw * y, cw * y - sw * x, cw * z - sw * w], -1)
    return out * np.where(out[..., :1] < 0, -1.0, 1.0)


def curriculum_distance(key: jax.Array, achieved: jax.Array, distance_range=DISTANCE_RANGE) -> jax.Array:
    """Distance (m) of the next target after `achieved` targets: U[f a, f b], f = min(m / M, 1) (App. A.2)."""
    f = jnp.minimum(achieved / CURRICULUM_PHASES, 1.0)
    low, high = distance_range
    return jax.random.uniform(key, minval=f * low, maxval=f * high)


def place_root(key: jax.Array, root: jax.Array, yaw: jax.Array, achieved: jax.Array, height: jax.Array,
               distance_range=DISTANCE_RANGE):
    """(target torso position [3], its turn Rz [3, 3]) for a body at root [3] with heading yaw [] (App. A.2).

    The target sits at heading yaw + U(+-120 deg) and the curriculum distance, `height` above the floor,
    turned to the yaw yaw + U(+-120 deg). Shared by the ant's and the humanoid's tasks.
    """
    k_heading, k_distance, k_yaw = jax.random.split(key, 3)
    heading = yaw + jax.random.uniform(k_heading, minval=-MAX_HEADING, maxval=MAX_HEADING)
    distance = curriculum_distance(k_distance, achieved, distance_range)
    turn = yaw_matrix(yaw + jax.random.uniform(k_yaw, minval=-MAX_HEADING, maxval=MAX_HEADING))
    target_root = jnp.stack([root[0] + distance * jnp.cos(heading), root[1] + distance * jnp.sin(heading), height])
    return target_root, turn


def place_target(key: jax.Array, root: jax.Array, yaw: jax.Array, achieved: jax.Array, pose: dict) -> Target:
    """A target at heading yaw + U(+-120 deg), curriculum distance, yaw + U(+-120 deg), from `pose`.

    root [3], yaw [] of the ant; pose: one reference pose, {"joints" [8], "height" [], "bodies" [8, 3],
    "rotations" [9, 3, 3], "com" [3]}, bodies and com relative to the torso and rotations in the pose's
    heading-free frame.
    """
    target_root, turn = place_root(key, root, yaw, achieved, pose["height"])
    return Target(joints=pose["joints"], root=target_root, bodies=target_root + pose["bodies"] @ turn.T,
                  rotations=turn @ pose["rotations"], com=target_root + turn @ pose["com"])


def task_observation(target: Target, joints: jax.Array, torso: jax.Array, rotation: jax.Array) -> jax.Array:
    """The task's 89 entries (module docstring); joints [8], torso position [3], torso rotation [3, 3]."""
    points = jnp.concatenate([target.root[None], target.bodies]) - torso  # [9, 3] world
    axes = jnp.swapaxes(target.rotations[:, :, jnp.array([0, 2])], -1, -2)  # [9, 2, 3]: x and z axes, world
    return jnp.concatenate([target.joints - joints, (points @ rotation).reshape(-1), (axes @ rotation).reshape(-1)])


def rotation_angle(a: jax.Array, b: jax.Array) -> jax.Array:
    """The angle (rad) of the rotation between orientations a and b [..., 3, 3] -> [...]."""
    cos = (jnp.sum(a * b, axis=(-2, -1)) - 1.0) / 2.0  # trace(a^T b) = sum of the elementwise product
    return jnp.arccos(jnp.clip(cos, -1.0, 1.0))


def dense_reward(target: Target, torso: jax.Array, bodies: jax.Array, rotations: jax.Array,
                 com: jax.Array) -> jax.Array:
    """Eq. 7-10 for the ant (m_robot = 1): torso [3], bodies [8, 3], rotations [9, 3, 3], com [3] (world).

        r_pos   = exp(-0.85 sum_b |(p_b - p_root) - (p_b^ref - p_root^ref)|^2)              (Eq. 9)
        r_quat  = exp(-4 sum_b angle(R_b, R_b^ref)^2)                                      (Eq. 10)
        r_pose  = 0.5 exp(-d_root) (0.4 r_pos + 0.6 r_quat) + 0.5 exp(-0.1 d_root)          (Eq. 8)
        r_dense = 0.6 exp(-(m d)^2) r_pose + 0.4 exp(-(m d)^2 / 0.3)                        (Eq. 7)

    d the centre-of-mass distance, d_root the torso distance. Eq. 7 is garbled in the paper's text; this is
    our reading of it (a pose term gated by the distance plus a distance term, 1 at a perfect match).
    Body positions in Eq. 9 are taken relative to each one's torso, so the pose terms judge the shape and
    orientation and the distance terms the position.
    """
    d_root = jnp.linalg.norm(torso - target.root)
    shape = (bodies - torso) - (target.bodies - target.root)
    r_pos = jnp.exp(-0.85 * jnp.sum(shape**2))
    r_quat = jnp.exp(-4.0 * jnp.sum(rotation_angle(rotations, target.rotations) ** 2))
    r_pose = 0.5 * jnp.exp(-d_root) * (0.4 * r_pos + 0.6 * r_quat) + 0.5 * jnp.exp(-0.1 * d_root)
    md2 = (M_ROBOT * jnp.linalg.norm(com - target.com)) ** 2
    return 0.6 * jnp.exp(-md2) * r_pose + 0.4 * jnp.exp(-md2 / 0.3)


def sparse_step(dense: jax.Array, streak: jax.Array, threshold: float = R_THRESHOLD, hold_steps: int = HOLD_STEPS):
    """Eq. 6: (reward, success, new streak). The streak counts steps with r_dense > threshold in a row;
    at hold_steps the target is achieved: the bonus is paid and the streak restarts (a new target)."""
    streak = jnp.where(dense > threshold, streak + 1, 0)
    success = streak >= hold_steps
    return dense + BONUS * success, success, jnp.where(success, 0, streak)


def planner_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Eq. 16, the planner's reward from the observation next_obs [..., 126] -> [...]:

        r = 0.5 (0.9 exp(-d_root / 4) + 0.1 exp(-d_root / 40)) 0.6 exp(-2 |dq|^2 / J) + 0.5 exp(-d_root / 40)

    d_root the target torso's distance, dq the joint angles' difference, J = 8 joints. The equation is
    garbled in the paper's text; this is our reading (at most 0.8). It is correlated with, not equal to,
    the task reward (Eq. 6-10), which needs the simulator's bodies and the bonus's step count.
    """
    del obs, action
    d_root = jnp.linalg.norm(next_obs[..., TARGET_ROOT], axis=-1)
    joints = jnp.sum(next_obs[..., TARGET_JOINTS] ** 2, axis=-1)
    near = 0.9 * jnp.exp(-d_root / 4.0) + 0.1 * jnp.exp(-d_root / 40.0)
    return 0.5 * near * 0.6 * jnp.exp(-2.0 * joints / NUM_JOINTS) + 0.5 * jnp.exp(-d_root / 40.0)
