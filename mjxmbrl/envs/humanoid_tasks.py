"""The high-DoF body's tasks of Byravan et al. 2022 (arXiv:2110.03363, App. A) on the DM Control humanoid, pure jax.numpy.

Byravan, Hasenclever, Trochim, Mirza, Ialongo, Tassa, Springenberg, Abdolmaleki, Heess, Merel,
Riedmiller 2022, "Evaluating model-based planning and planner amortization for continuous control".
The paper's high-DoF body is the 20-DoF Robotis OP3, which the installed packages do not provide; its
substitute is DM Control's 21-DoF humanoid (the MJX env is envs/byravan_humanoid.py). Like the OP3's,
its tasks end when it falls (torso below FALL_HEIGHT).

Proprioception (63, egocentric; the OP3's has 64):

    [0:21)  joint angles        [21:42) joint velocities     [42:45) torso linear velocity
    [45:48) angular velocity    [48:60) hands and feet relative to the torso (left hand, left foot,
    right hand, right foot)     [60:63) the world's z axis

all in the torso's frame. Then the task's entries:

- walking (66): [63:66) e_target, the walking direction (+x or -x in the world). Reward (Eq. 5 plus the
  OP3's "small pose regularization term"): r = v . e_target + 0.1 exp(-2 |q|^2 / J), q the joint angles
  (0 is the model's upright standing pose), J = 21; exact from the observation.
- go to target pose (228): [63:84) target joint angles - ours, [84:87) the target torso's position,
  [87:132) its 15 other bodies' positions, [132:228) the x and z axes of its 16 bodies, all relative to our
  torso and in its frame (envs/ant_gttp.py's layout for the ant; the OP3's task observation has 163).
  Task reward Eq. 6-7 and 11-14 with the OP3's constants (`dense_reward`), the planner's Eq. 15
  (`planner_reward`). Closed-form integration of the task entries as for the ant (App. C.2).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mjxmbrl.envs import ant_gttp

CTRL_DT = 0.025  # s, the DM Control humanoid's control step (the paper's OP3: 0.03)
EPISODE_LENGTH = 1000
ACTION_SIZE = 21
NUM_JOINTS = 21
PROPRIO_SIZE = 63
JOINT_ANGLES = slice(0, 21)
JOINT_VELOCITIES = slice(21, 42)
LINEAR_VELOCITY = slice(42, 45)
ANGULAR_VELOCITY = slice(45, 48)
EXTREMITIES = slice(48, 60)
UP = slice(60, 63)
TARGET_DIRECTION = slice(63, 66)
WALK_OBS_SIZE = 66
DIRECTIONS = {"HumanoidWalkForward": 1.0, "HumanoidWalkBackward": -1.0}  # world x component of e_target

FALL_HEIGHT = 0.8  # m, torso z below which the episode ends (standing: 1.285)
POSE_REGULARIZATION = 0.1  # weight of the walking reward's pose term

EXTREMITY_BODIES = ("left_hand", "left_foot", "right_hand", "right_foot")  # Playground's order
POSE_BODIES = ("head", "lower_waist", "pelvis", "right_thigh", "right_shin", "right_foot", "left_thigh",
               "left_shin", "left_foot", "right_upper_arm", "right_lower_arm", "right_hand", "left_upper_arm",
               "left_lower_arm", "left_hand")  # every body but the world and the torso
END_EFFECTORS = tuple(POSE_BODIES.index(name) for name in EXTREMITY_BODIES)  # Eq. 13's p_app
NUM_POSE_BODIES = len(POSE_BODIES)
TARGET_JOINTS = slice(63, 84)
TARGET_ROOT = slice(84, 87)
TARGET_POSITIONS = slice(84, 132)  # the torso and the 15 bodies: 16 points
TARGET_AXES = slice(132, 228)
GTTP_OBS_SIZE = 228

# App. A.2 for the OP3: threshold, steps held, robot multiplier, curriculum distances (m); the bonus is the ant's 50.
R_THRESHOLD = 0.65
HOLD_STEPS = 1
M_ROBOT = 4.0
DISTANCE_RANGE = (0.05, 1.0)


class Target(NamedTuple):
    """A placed target pose of the humanoid, in the world frame."""

    joints: jax.Array  # [21] joint angles
    velocities: jax.Array  # [21] joint velocities (Eq. 12's reference)
    root: jax.Array  # [3] torso position
    bodies: jax.Array  # [15, 3] POSE_BODIES' positions
    rotations: jax.Array  # [16, 3, 3] torso and POSE_BODIES' orientations (body -> world)
    com: jax.Array  # [3] centre of mass


def walk_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Eq. 5 plus the pose term on next_obs [..., 66]: v . e_target + 0.1 exp(-2 |q|^2 / J) -> [...]."""
    del obs, action
    speed = jnp.sum(next_obs[..., LINEAR_VELOCITY] * next_obs[..., TARGET_DIRECTION], axis=-1)
    pose = jnp.exp(-2.0 * jnp.sum(next_obs[..., JOINT_ANGLES] ** 2, axis=-1) / NUM_JOINTS)
    return speed + POSE_REGULARIZATION * pose


def place_target(key: jax.Array, root: jax.Array, yaw: jax.Array, achieved: jax.Array, pose: dict) -> Target:
    """A target placed as the ant's (ant_gttp.place_root) with the OP3's curriculum distances.

    pose: one reference pose, {"joints" [21], "velocities" [21], "height" [], "bodies" [15, 3], "rotations"
    [16, 3, 3], "com" [3]}, bodies and com relative to the torso, rotations in the heading-free frame.
    """
    target_root, turn = ant_gttp.place_root(key, root, yaw, achieved, pose["height"], DISTANCE_RANGE)
    return Target(joints=pose["joints"], velocities=pose["velocities"], root=target_root,
                  bodies=target_root + pose["bodies"] @ turn.T, rotations=turn @ pose["rotations"],
                  com=target_root + turn @ pose["com"])


def dense_reward(target: Target, torso: jax.Array, bodies: jax.Array, rotations: jax.Array, com: jax.Array,
                 joint_velocities: jax.Array) -> jax.Array:
    """Eq. 7 and 11-14 (m_robot = 4): torso [3], bodies [15, 3], rotations [16, 3, 3], com [3] (world), joint
    velocities [21] -> [].

        r_com   = exp(-40 |c - c^ref|^2)                      (Eq. 11)
        r_vel   = exp(-0.1 |qvel - qvel^ref|^2)               (Eq. 12)
        r_app   = exp(-160 sum_e |p_e - p_e^ref|^2)           (Eq. 13, hands and feet)
        r_quat  = exp(-2 sum_b angle(R_b, R_b^ref)^2)         (Eq. 14, all 16 bodies)
        r_pose  = 0.1 r_com + r_vel + 0.15 r_app + 0.65 r_quat
        r_dense = 0.6 exp(-(m d)^2) r_pose + 0.4 exp(-(m d)^2 / 0.3)   (Eq. 7, our reading, as for the ant)

    d the centre-of-mass distance. c and p_e are taken relative to each one's torso (the pose terms judge the
    shape, Eq. 7's distance terms the position), as for the ant. r_vel's weight is the paper's as printed (1,
    not DeepMimic's 0.1), so r_pose is at most 1.9 and r_dense at most 1.54.
    """
    r_com = jnp.exp(-40.0 * jnp.sum(((com - torso) - (target.com - target.root)) ** 2))
    r_vel = jnp.exp(-0.1 * jnp.sum((joint_velocities - target.velocities) ** 2))
    ends = jnp.array(END_EFFECTORS)
    app = (bodies[ends] - torso) - (target.bodies[ends] - target.root)
    r_app = jnp.exp(-160.0 * jnp.sum(app**2))
    r_quat = jnp.exp(-2.0 * jnp.sum(ant_gttp.rotation_angle(rotations, target.rotations) ** 2))
    r_pose = 0.1 * r_com + r_vel + 0.15 * r_app + 0.65 * r_quat
    md2 = (M_ROBOT * jnp.linalg.norm(com - target.com)) ** 2
    return 0.6 * jnp.exp(-md2) * r_pose + 0.4 * jnp.exp(-md2 / 0.3)


def sparse_step(dense: jax.Array, streak: jax.Array):
    """Eq. 6 with the OP3's threshold 0.65, held for 1 step, bonus 50: (reward, success, new streak)."""
    return ant_gttp.sparse_step(dense, streak, R_THRESHOLD, HOLD_STEPS)


def planner_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Eq. 15, the OP3's planner reward from next_obs [..., 228] -> [...]:

        r = 0.5 (0.9 exp(-d_root) + 0.1 exp(-d_root / 10)) 0.6 exp(-2 |dq|^2 / J) + 0.5 exp(-d_root / 10)

    d_root the target torso's distance, dq the joint angles' difference, J = 21 (at most 0.8; the same
    reading of the garbled equation as the ant's Eq. 16, ant_gttp.planner_reward).
    """
    del obs, action
    d_root = jnp.linalg.norm(next_obs[..., TARGET_ROOT], axis=-1)
    joints = jnp.sum(next_obs[..., TARGET_JOINTS] ** 2, axis=-1)
    near = 0.9 * jnp.exp(-d_root) + 0.1 * jnp.exp(-d_root / 10.0)
    return 0.5 * near * 0.6 * jnp.exp(-2.0 * joints / NUM_JOINTS) + 0.5 * jnp.exp(-d_root / 10.0)
