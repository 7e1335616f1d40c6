"""Observation groups of each task, for the per-group MLP model (Byravan et al. 2022, App. C, Fig. 5).

A group is a contiguous slice of the observation vector predicted by its own
MLP. A group whose entries are generalised positions lists, in `velocity`, the
observation index of each entry's time derivative; the model then integrates
it from the predicted velocities plus a learned correction (Eq. 18). A group
that is a world-fixed direction seen in the body's frame (a task's target
direction, or world-fixed points and axes of a target pose) names, in
`rotated_by`, the observation index of the body-frame angular velocity, and,
for points, in `translated_by` that of the body-frame linear velocity; a
group holding a target's joint angles minus ours names, in `minus_change_of`,
the index of our joint angles. The model integrates these in closed form
without a network (App. C.2; envs/ant_walk.rotate_egocentric,
envs/ant_gttp.py). All other groups
(orientations as cos/sin or rotation-matrix entries, touch sensors, target
vectors, clipped or non-integrable positions) use the plain delta rule of Eq. 17.

Layouts are read off each env's `_get_obs` (MuJoCo Playground 0.2.0 DM Control
suite, Brax 0.14.2) and checked against the observation sizes in
tests/test_models.py. This module is pure Python so config validation can use
it without importing a simulator.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple


class ObsGroup(NamedTuple):
    name: str
    start: int
    stop: int
    velocity: Optional[Tuple[int, ...]] = None  # obs index of d/dt of each entry (Eq. 18), or None
    rotated_by: Optional[int] = None  # obs index of the body-frame angular velocity [3] (App. C.2), or None
    translated_by: Optional[int] = None  # obs index of the body-frame linear velocity [3] (points), or None
    minus_change_of: Optional[int] = None  # obs index of the positions whose change this group loses, or None

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def closed_form(self) -> bool:
        """True if the model integrates this group in closed form (App. C.2), with no network."""
        return self.rotated_by is not None or self.minus_change_of is not None


def _g(name: str, start: int, stop: int, velocity_start: Optional[int] = None) -> ObsGroup:
    vel = None if velocity_start is None else tuple(range(velocity_start, velocity_start + stop - start))
    return ObsGroup(name, start, stop, vel)


_CARTPOLE = (_g("cart_position", 0, 1, 3), _g("pole_orientation", 1, 3), _g("velocity", 3, 5))
_FINGER_SPIN = (_g("position", 0, 4), _g("velocity", 4, 7), _g("touch", 7, 9))
_FINGER_TURN = _FINGER_SPIN + (_g("target", 9, 12),)
_HOPPER_DMC = (_g("position", 0, 6, 7), _g("velocity", 6, 13), _g("touch", 13, 15))
_HUMANOID_DMC = (
    _g("joint_angles", 0, 21, 46),  # qpos[7:] <-> qvel[6:], which sits at obs 40 + 6
    _g("head_height", 21, 22),
    _g("extremities", 22, 34),
    _g("torso_vertical", 34, 37),
    _g("com_velocity", 37, 40),
    _g("velocity", 40, 67),
)
_ANT_CORRIDOR = (
    _g("joint_angles", 0, 8, 8),
    _g("joint_velocities", 8, 16),
    _g("linear_velocity", 16, 19),
    _g("angular_velocity", 19, 22),
    _g("feet", 22, 34),
    _g("up", 34, 37),
    ObsGroup("target_direction", 37, 40, rotated_by=19),
)
# The go-to-target-pose ant (envs/ant_gttp.py): the corridor ant's proprioception, then the target's joint
# angles minus ours, its 9 points (torso, thighs, shins) and its 9 bodies' x and z axes, in our torso's frame.
_ANT_GTTP = _ANT_CORRIDOR[:-1] + (
    ObsGroup("target_joints", 37, 45, minus_change_of=0),
    ObsGroup("target_positions", 45, 72, rotated_by=19, translated_by=16),
    ObsGroup("target_axes", 72, 126, rotated_by=19),
)
# Byravan et al.'s high-DoF body, the DM Control humanoid (envs/humanoid_tasks.py): joint angles <-> joint
# velocities at obs 21; the torso's linear and angular velocities at obs 42 and 45 integrate the task groups.
_HUMANOID_PROPRIO = (
    _g("joint_angles", 0, 21, 21),
    _g("joint_velocities", 21, 42),
    _g("linear_velocity", 42, 45),
    _g("angular_velocity", 45, 48),
    _g("extremities", 48, 60),
    _g("up", 60, 63),
)
_HUMANOID_CORRIDOR = _HUMANOID_PROPRIO + (ObsGroup("target_direction", 63, 66, rotated_by=45),)
_HUMANOID_GTTP = _HUMANOID_PROPRIO + (
    ObsGroup("target_joints", 63, 84, minus_change_of=0),
    ObsGroup("target_positions", 84, 132, rotated_by=45, translated_by=42),
    ObsGroup("target_axes", 132, 228, rotated_by=45),
)
_REACHER = (_g("position", 0, 2, 4), _g("to_target", 2, 4), _g("velocity", 4, 6))
_WALKER_DMC = (_g("orientations", 0, 14), _g("height", 14, 15), _g("velocity", 15, 24))
# Brax: obs = qpos[k:] then qvel; hopper/walker2d clip qvel to +-10 and replace qpos[1] by the torso height.
_BRAX_PLANAR = {"halfcheetah": 8, "hopper": 5, "walker2d": 8}

OBS_GROUPS: Dict[str, Tuple[ObsGroup, ...]] = {
    "AcrobotSwingup": (_g("orientations", 0, 4), _g("velocity", 4, 6)),
    "AcrobotSwingupSparse": (_g("orientations", 0, 4), _g("velocity", 4, 6)),
    "BallInCup": (_g("position", 0, 4, 4), _g("velocity", 4, 8)),
    "CartpoleBalance": _CARTPOLE,
    "CartpoleBalanceSparse": _CARTPOLE,
    "CartpoleSwingup": _CARTPOLE,
    "CartpoleSwingupSparse": _CARTPOLE,
    "CheetahRun": (_g("position", 0, 8, 9), _g("velocity", 8, 17)),  # qpos[1:] <-> qvel[1:]
    "FingerSpin": _FINGER_SPIN,
    "FingerTurnEasy": _FINGER_TURN,
    "FingerTurnHard": _FINGER_TURN,
    "FishSwim": (_g("upright", 0, 1), _g("joint_angles", 1, 8), _g("to_target", 8, 11), _g("velocity", 11, 24)),
    "HopperHop": _HOPPER_DMC,
    "HopperStand": _HOPPER_DMC,
    "HumanoidRun": _HUMANOID_DMC,
    "HumanoidStand": _HUMANOID_DMC,
    "HumanoidWalk": _HUMANOID_DMC,
    "PendulumSwingup": (_g("orientation", 0, 2), _g("velocity", 2, 3)),
    "PointMass": (_g("position", 0, 2, 2), _g("velocity", 2, 4)),
    "ReacherEasy": _REACHER,
    "ReacherHard": _REACHER,
    "SwimmerSwimmer6": (_g("joints", 0, 5), _g("to_target", 5, 7), _g("body_velocities", 7, 25)),
    "WalkerRun": _WALKER_DMC,
    "WalkerStand": _WALKER_DMC,
    "WalkerWalk": _WALKER_DMC,
    # Brax ant: qpos[2:] = z, quaternion(4), 8 joints; joints <-> qvel[6:] at obs 13 + 6.
    "ant": (_g("torso", 0, 5), _g("joint_angles", 5, 13, 19), _g("velocity", 13, 27)),
    **{name: (_g("position", 0, n, n + 1), _g("velocity", n, 2 * n + 1)) for name, n in _BRAX_PLANAR.items()},
    "swimmer": (_g("joint_angles", 0, 3, 5), _g("velocity", 3, 8)),
    "toy_reach": (_g("position", 0, 2, 2), _g("velocity", 2, 4), _g("goal", 4, 6)),
    # POLO tasks (envs/polo_envs.py); the getups append the root height (torso z), whose
    # d/dt is the root's z velocity: humanoid qvel[2] at obs 40 + 2, walker qvel[0] (rootz) at obs 15.
    "PointMassBox": (_g("position", 0, 2, 2), _g("velocity", 2, 4)),
    "PointMassMaze": (_g("position", 0, 2, 2), _g("velocity", 2, 4)),
    "HumanoidGetup": _HUMANOID_DMC + (_g("root_height", 67, 68, 42),),
    "HumanoidGetupSparse": _HUMANOID_DMC + (_g("root_height", 67, 68, 42),),
    "WalkerGetup": _WALKER_DMC + (_g("root_height", 24, 25, 15),),
    "WalkerGetupSparse": _WALKER_DMC + (_g("root_height", 24, 25, 15),),
    # The walk appends the root's v_x (a velocity: delta rule), y (d/dt qvel[1] at obs 41) and z (qvel[2], obs 42).
    "PoloHumanoidWalk": _HUMANOID_DMC + (_g("root_velocity_x", 67, 68), _g("root_lateral", 68, 69, 41),
                                         _g("root_height", 69, 70, 42)),
    "FingerReorient": _FINGER_TURN,  # FingerTurn's layout; the target (a task group) moves every 75 steps
    # Byravan et al. 2022's ant (envs/ant_walk.py): joint angles <-> joint velocities at obs 8; the target
    # direction (the task group) turns with the torso's angular velocity at obs 19, in closed form.
    **{name: _ANT_CORRIDOR for name in ("AntWalkForward", "AntWalkBackward")},
    "AntGTTP": _ANT_GTTP,
    **{name: _HUMANOID_CORRIDOR for name in ("HumanoidWalkForward", "HumanoidWalkBackward")},
    "HumanoidGTTP": _HUMANOID_GTTP,
    # Brax humanoid (244: positions, velocities, com inertia/velocity, actuator forces) declares no groups.
}


# Task-specific groups (targets, goals): the task-agnostic proposal (Byravan Sec. 5.4) does not see them.
TASK_GROUPS = ("to_target", "target", "goal", "target_direction", "target_joints", "target_positions", "target_axes")


def get_groups(env_name: str) -> Tuple[ObsGroup, ...]:
    """The groups of `env_name`; KeyError if it declares none."""
    return OBS_GROUPS[env_name]
