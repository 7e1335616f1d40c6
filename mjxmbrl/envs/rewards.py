"""Known reward functions of the DM Control tasks, computed from observations only.

A planner that rolls a learned model forward sees predicted observations, not
simulator states. For each task this module gives

    reward_fn(obs [..., D], action [..., A], next_obs [..., D]) -> reward [...]

the reward the env returns for the control step obs --action--> next_obs
(`action_repeat=1`), written in `jax.numpy` from the observation layout of each
env's `_get_obs` (MuJoCo Playground 0.2.0 DM Control suite). It imports jax and
nothing from a simulator, so it works on any predicted observation.

Where the reward is read from the simulator state
-------------------------------------------------
`mjx.step` runs the kinematics, the sensors and the reward inputs (`xpos`,
`xmat`, `sensordata`) *before* it integrates, so after a control step of n
physics sub-steps of length h, the env's reward (and the env's own `xmat` /
sensor entries of the observation) describe the state one sub-step before the
final `qpos`, `qvel` of next_obs. Each function therefore reads:

- the observation entries that are the reward's own inputs where they exist
  (cartpole, reacher, humanoid: exact);
- the previous observation `obs` where n = 1, since the last sub-step then
  starts at `obs` (point mass, cheetah: exact);
- `q_next - h * qvel_next` for the positions one sub-step back, which is exact
  for MuJoCo's Euler and implicitfast integrators (`qpos' = qpos + h * qvel'`;
  ball in cup, hopper height: exact);
- for velocities one sub-step back, which no observation holds, the linear
  interpolation `qvel_next - (qvel_next - qvel) / n` between the two
  observations (finger spin, walker and hopper-hop speeds: approximate);
- for the walker's torso height, which no walker observation holds (obs[14],
  called "height" in dm_control, is the torso's zz orientation entry), the
  height at which the walker's lowest point touches the floor (approximate).

`REWARD_NOTES` says why each approximate reward is not exact and
`REWARD_ERROR_BOUNDS` gives its measured maximum and mean absolute error (see
docs/rewards.md and tests/test_rewards.py, which compare every function with
the simulator's reward on real rollouts).

Speeds of the planar walkers (cheetah, walker, hopper) are the x velocity of
the centre of mass (the `torso_subtreelinvel` sensor): a planar forward
kinematics of each model (`_PlanarModel`, constants from the XML, checked
against the compiled MjModel in the tests) is differentiated along the joint
velocities with `jax.jvp`.

With `action_repeat = k > 1` one model step spans k control steps; the
functions still return one control step's reward (the planners multiply by k),
and the interpolated velocities then interpolate over k * n sub-steps less
accurately.

All functions broadcast over leading axes, return float32 for float32 inputs
and have finite gradients on the envs' observations (`tolerance` keeps inf out
of its unused branches; a norm or arctan2 of an exact zero vector would not).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.envs import toy

RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

# ----------------------------------------------------------------- tolerance ---

_DEFAULT_VALUE_AT_MARGIN = 0.1


def _sigmoid(x: jax.Array, value_at_1: float, sigmoid: str) -> jax.Array:
    """dm_control's sigmoids: 1 at x = 0, `value_at_1` at |x| = 1 (x >= 0 here)."""
    if sigmoid in ("cosine", "linear", "quadratic"):
        if not 0 <= value_at_1 < 1:
            raise ValueError(f"`value_at_1` must be nonnegative and smaller than 1, got {value_at_1}.")
    elif not 0 < value_at_1 < 1:
        raise ValueError(f"`value_at_1` must be strictly between 0 and 1, got {value_at_1}.")
    v = jnp.float32(value_at_1)
    if sigmoid == "gaussian":
        scale = jnp.sqrt(-2 * jnp.log(v))
        return jnp.exp(-0.5 * (x * scale) ** 2)
    if sigmoid == "hyperbolic":
        scale = jnp.arccosh(1 / v)
        return 1 / jnp.cosh(x * scale)
    if sigmoid == "long_tail":
        scale = jnp.sqrt(1 / v - 1)
        return 1 / ((x * scale) ** 2 + 1)
    if sigmoid == "reciprocal":
        scale = 1 / v - 1
        return 1 / (jnp.abs(x) * scale + 1)
    if sigmoid == "cosine":
        scaled = x * (jnp.arccos(2 * v - 1) / jnp.pi)
        return jnp.where(jnp.abs(scaled) < 1, (1 + jnp.cos(jnp.pi * scaled)) / 2, 0.0)
    if sigmoid == "linear":
        scaled = x * (1 - v)
        return jnp.where(jnp.abs(scaled) < 1, 1 - scaled, 0.0)
    if sigmoid == "quadratic":
        scaled = x * jnp.sqrt(1 - v)
        return jnp.where(jnp.abs(scaled) < 1, 1 - scaled**2, 0.0)
    if sigmoid == "tanh_squared":
        scale = jnp.arctanh(jnp.sqrt(1 - v))
        return 1 - jnp.tanh(x * scale) ** 2
    raise ValueError(f"Unknown sigmoid type {sigmoid!r}.")


def tolerance(
    x: jax.Array,
    bounds: Tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = _DEFAULT_VALUE_AT_MARGIN,
) -> jax.Array:
    """dm_control's `rewards.tolerance` (as ported in `mujoco_playground._src.reward`).

    1 where `bounds[0] <= x <= bounds[1]`; outside, 0 if `margin == 0`, else
    `sigmoid(d / margin)` with d the distance to the nearest bound, scaled so
    that the value is `value_at_margin` at d = margin. Sigmoids: gaussian,
    hyperbolic, long_tail, reciprocal, cosine, linear, quadratic, tanh_squared.
    Bounds may be infinite. Elementwise over x.
    """
    lower, upper = float(bounds[0]), float(bounds[1])
    if lower > upper:
        raise ValueError("Lower bound must be <= upper bound.")
    if margin < 0:
        raise ValueError("`margin` must be non-negative.")
    x = jnp.asarray(x)
    in_bounds = jnp.logical_and(lower <= x, x <= upper)
    if margin == 0:
        return jnp.where(in_bounds, 1.0, 0.0)
    # Distance to the violated bound; with an infinite bound only the finite side
    # can be violated (avoids inf in the unused branch, hence NaN gradients).
    if math.isinf(upper) and math.isinf(lower):
        return jnp.ones_like(x, dtype=jnp.result_type(x, jnp.float32))
    if math.isinf(upper):
        d = lower - x
    elif math.isinf(lower):
        d = x - upper
    else:
        d = jnp.where(x < lower, lower - x, x - upper)
    return jnp.where(in_bounds, 1.0, _sigmoid(d / margin, value_at_margin, sigmoid))


def _small_control(action: jax.Array) -> jax.Array:
    """mean_i tolerance(a_i, margin=1, value_at_margin=0, sigmoid='quadratic') = mean(1 - a_i^2) on [-1, 1]."""
    return jnp.mean(tolerance(action, margin=1.0, value_at_margin=0.0, sigmoid="quadratic"), axis=-1)


def _interp_last_substep(v: jax.Array, v_next: jax.Array, n_substeps: int) -> jax.Array:
    """Estimate of the velocity one physics sub-step before v_next: linear in time between v and v_next."""
    return v_next - (v_next - v) / n_substeps


# ------------------------------------------------------ planar kinematics ---


class _PlanarModel(NamedTuple):
    """A planar (x-z) kinematic tree whose root has slides x, z and a hinge about y.

    Per body, in MuJoCo's order: parent index (-1: the root's parent is the
    world), body pos in the parent frame, hinge anchor in the body frame, hinge
    axis (its y component, +-1), mass and centre of mass (body_ipos), all (x, z).
    Every body quat is the identity in these models.
    """

    names: Tuple[str, ...]
    parent: Tuple[int, ...]
    pos: Tuple[Tuple[float, float], ...]
    jnt_pos: Tuple[Tuple[float, float], ...]
    axis: Tuple[float, ...]
    mass: Tuple[float, ...]
    ipos: Tuple[Tuple[float, float], ...]


def _planar(rows) -> _PlanarModel:
    return _PlanarModel(*(tuple(col) for col in zip(*rows)))


# Constants from the compiled MjModel of each XML (body_pos, jnt_pos, jnt_axis,
# body_mass, body_ipos; x and z components); tests/test_rewards.py checks them.
_CHEETAH = _planar(
    [
        ("torso", -1, (0.0, 0.7), (0.0, 0.0), 1.0, 6.25020920502092, (0.15238987816307403, 0.025398313027179008)),
        ("bthigh", 0, (-0.5, 0.0), (0.0, 0.0), 1.0, 1.5435146443514645, (0.1, -0.13)),
        ("bshin", 1, (0.16, -0.25), (0.0, 0.0), 1.0, 1.5874476987447697, (-0.14, -0.07)),
        ("bfoot", 2, (-0.28, -0.14), (0.0, 0.0), 1.0, 1.0953974895397491, (0.03, -0.097)),
        ("fthigh", 0, (0.5, 0.0), (0.0, 0.0), 1.0, 1.4380753138075317, (-0.07, -0.12)),
        ("fshin", 4, (-0.14, -0.24), (0.0, 0.0), 1.0, 1.200836820083682, (0.065, -0.09)),
        ("ffoot", 5, (0.13, -0.18), (0.0, 0.0), 1.0, 0.8845188284518829, (0.045, -0.07)),
    ]
)
_WALKER = _planar(
    [
        ("torso", -1, (0.0, 1.3), (0.0, 0.0), 1.0, 10.673037441795724, (0.0, 0.0)),
        ("right_thigh", 0, (0.0, -0.3), (0.0, 0.0), -1.0, 4.057890510886818, (0.0, -0.225)),
        ("right_leg", 1, (0.0, -0.7), (0.0, 0.25), -1.0, 2.7813566959781637, (0.0, 0.0)),
        ("right_foot", 2, (0.06, -0.25), (-0.06, 0.0), -1.0, 2.094395102393196, (0.0, 0.0)),
        ("left_thigh", 0, (0.0, -0.3), (0.0, 0.0), -1.0, 4.057890510886818, (0.0, -0.225)),
        ("left_leg", 4, (0.0, -0.7), (0.0, 0.25), -1.0, 2.7813566959781637, (0.0, 0.0)),
        ("left_foot", 5, (0.06, -0.25), (-0.06, 0.0), -1.0, 2.094395102393196, (0.0, 0.0)),
    ]
)
_HOPPER = _planar(
    [
        ("torso", -1, (0.0, 1.0), (0.0, 0.0), 1.0, 4.828383533416376, (0.0074555205777865, 0.07888983682319296)),
        ("pelvis", 0, (0.0, -0.05), (0.0, 0.0), 1.0, 3.141330854201994, (0.0, -0.075)),
        ("thigh", 1, (0.0, -0.2), (0.0, 0.0), 1.0, 1.9268434942017398, (0.0, -0.165)),
        ("calf", 2, (0.0, -0.33), (0.0, 0.0), 1.0, 1.0178760197630932, (0.0, -0.16)),
        ("foot", 3, (0.0, -0.32), (0.0, 0.0), 1.0, 1.5247196345422462, (0.045000000000000005, 0.0)),
    ]
)
# Walker capsules (body index, centre (x, z) in the body frame, unit axis (x, z)
# in the body frame, half length, radius), for the lowest point of the body.
_WALKER_CAPSULES = (
    (0, (0.0, 0.0), (0.0, 1.0), 0.3, 0.07),  # torso
    (1, (0.0, -0.225), (0.0, 1.0), 0.225, 0.05),  # right_thigh
    (2, (0.0, 0.0), (0.0, 1.0), 0.25, 0.04),  # right_leg
    (3, (0.0, 0.0), (1.0, 0.0), 0.1, 0.05),  # right_foot (quat: z axis turned onto x)
    (4, (0.0, -0.225), (0.0, 1.0), 0.225, 0.05),  # left_thigh
    (5, (0.0, 0.0), (0.0, 1.0), 0.25, 0.04),  # left_leg
    (6, (0.0, 0.0), (1.0, 0.0), 0.1, 0.05),  # left_foot
)


def _rot(c: jax.Array, s: jax.Array, p: Tuple) -> Tuple[jax.Array, jax.Array]:
    """R_y(theta) applied to (x, z): (c x + s z, -s x + c z), c = cos theta, s = sin theta."""
    x, z = p
    return c * x + s * z, -s * x + c * z


def _planar_frames(model: _PlanarModel, root_x: jax.Array, root_z: jax.Array, q: jax.Array):
    """Forward kinematics: per body (xpos_x, xpos_z, cos, sin) of its frame.

    q [..., nbody]: the hinge angle of each body (the root's is rooty); the
    root's slides are root_x, root_z. Follows mj_kinematics: the body frame is
    placed by the parent, then turned about the hinge anchor.
    """
    frames = []
    for i in range(len(model.names)):
        if model.parent[i] < 0:
            px, pz = root_x, root_z
            pth = jnp.zeros_like(q[..., i])
        else:
            px, pz, _, _, pth = frames[model.parent[i]]
        th = pth + model.axis[i] * q[..., i]
        pc, ps = jnp.cos(pth), jnp.sin(pth)
        c, s = jnp.cos(th), jnp.sin(th)
        bx, bz = model.pos[i]
        jx, jz = model.jnt_pos[i]
        ax, az = _rot(pc, ps, (bx + jx, bz + jz))
        rx, rz = _rot(c, s, (jx, jz))
        frames.append((px + ax - rx, pz + az - rz, c, s, th))
    return [f[:4] for f in frames]


def _planar_ipos(model: _PlanarModel, root_x, root_z, q) -> Tuple[jax.Array, jax.Array]:
    """xipos (centres of mass) of all bodies: ([..., nbody], [..., nbody]) x and z."""
    xs, zs = [], []
    for (x, z, c, s), ipos in zip(_planar_frames(model, root_x, root_z, q), model.ipos):
        ix, iz = _rot(c, s, ipos)
        xs.append(x + ix)
        zs.append(z + iz)
    return jnp.stack(xs, -1), jnp.stack(zs, -1)


def _com_velocity(model: _PlanarModel, q: jax.Array, v_root_x, v_root_z, v_q) -> Tuple[jax.Array, jax.Array]:
    """x and z velocity of the centre of mass (subtree of the root = `torso_subtreelinvel`).

    q [..., nbody] hinge angles, v_q [..., nbody] their velocities; the root's
    slide positions do not change the velocity.
    """
    mass = jnp.asarray(model.mass, q.dtype)

    def com(rx, rz, qq):
        xs, zs = _planar_ipos(model, rx, rz, qq)
        return jnp.sum(xs * mass, -1) / jnp.sum(mass), jnp.sum(zs * mass, -1) / jnp.sum(mass)

    zero = jnp.zeros_like(q[..., 0])
    _, (vx, vz) = jax.jvp(com, (zero, zero, q), (v_root_x, v_root_z, v_q))
    return vx, vz


# ------------------------------------------------------------------ tasks ---

# Cartpole: obs = [cart x, pole cos (xmat zz), pole sin (xmat xz), cart vel, pole angular vel].
_CART_RANGE = (-0.25, 0.25)
_ANGLE_COSINE_RANGE = (0.995, 1.0)


def cartpole_dense_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """CartpoleSwingup / CartpoleBalance (exact), from next_obs and action:

        upright * centered * small_control * small_velocity, with
        upright = (cos + 1) / 2, centered = (1 + tol(x, margin=2)) / 2,
        small_control = (4 + tol(a, margin=1, value_at_margin=0, quadratic)) / 5,
        small_velocity = (1 + tol(pole angular vel, margin=5)) / 2.
    """
    del obs
    upright = (next_obs[..., 1] + 1) / 2
    centered = (1 + tolerance(next_obs[..., 0], margin=2)) / 2
    small_control = (4 + tolerance(action[..., 0], margin=1, value_at_margin=0, sigmoid="quadratic")) / 5
    small_velocity = (1 + tolerance(next_obs[..., 4], margin=5)) / 2
    return upright * centered * small_control * small_velocity


def cartpole_sparse_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """CartpoleSwingupSparse / CartpoleBalanceSparse (exact), from next_obs:
    1 if |cart x| <= 0.25 and pole cos >= 0.995, else 0."""
    del obs, action
    return tolerance(next_obs[..., 0], _CART_RANGE) * tolerance(next_obs[..., 1], _ANGLE_COSINE_RANGE)


# Reacher: obs = [qpos (2), finger-to-target (x, y) (2), qvel (2)]; radii = target + finger (0.01) sizes.
_REACHER_FINGER_SIZE = 0.01
_REACHER_EASY_TARGET = 0.05
_REACHER_HARD_TARGET = 0.015


def _make_reacher_reward(target_size: float) -> RewardFn:
    radii = target_size + _REACHER_FINGER_SIZE

    def reacher_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
        del obs, action
        return tolerance(jnp.linalg.norm(next_obs[..., 2:4], axis=-1), (0.0, radii))

    reacher_reward.__doc__ = (
        f"Reacher with target size {target_size} (exact), from next_obs: "
        f"1 if |finger-to-target| <= {radii:g} (target + finger radii), else 0."
    )
    return reacher_reward


reacher_easy_reward = _make_reacher_reward(_REACHER_EASY_TARGET)
reacher_hard_reward = _make_reacher_reward(_REACHER_HARD_TARGET)

# Finger: obs = [proximal, distal, tip (x, z) (4), qvel (proximal, distal, hinge) (3), touch (2)].
_SPIN_VELOCITY = 15.0
_FINGER_SUBSTEPS = 4  # ctrl_dt 0.02 / sim_dt 0.005


def finger_spin_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """FingerSpin (approximate): 1 if the hinge velocity <= -15 rad/s, else 0.

    The env reads the `hinge_velocity` sensor, i.e. the hinge velocity one
    physics sub-step (5 ms) before next_obs; it is estimated by linear
    interpolation between obs[6] and next_obs[6] (see REWARD_NOTES).
    """
    del action
    v = _interp_last_substep(obs[..., 6], next_obs[..., 6], _FINGER_SUBSTEPS)
    return jnp.where(v <= -_SPIN_VELOCITY, 1.0, 0.0)


# Ball in cup: obs = [qpos (cup x, cup z, ball x, ball z), qvel (4)]; Euler, h = 0.002.
_BIC_DT = 0.002
_BIC_CUP_Z = 0.6  # cup body z
_BIC_TARGET_Z = -0.05  # target site z in the cup frame
_BIC_BALL_Z = 0.2  # ball body z
_BIC_INSIDE = 0.05 - 0.025  # target half size (x and z) - ball radius


def ball_in_cup_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """BallInCup (exact), from next_obs: 1 if the ball centre is within 0.025 (target
    box half size 0.05 - ball radius 0.025) of the cup's target site in x and z.

    Positions one sub-step back (where the env evaluates the reward) are
    q' - 0.002 * qvel' (explicit Euler).
    """
    del obs, action
    q = next_obs[..., 0:4] - _BIC_DT * next_obs[..., 4:8]
    dx = jnp.abs(q[..., 0] - q[..., 2])
    dz = jnp.abs((_BIC_CUP_Z + _BIC_TARGET_Z + q[..., 1]) - (_BIC_BALL_Z + q[..., 3]))
    return jnp.where((dx < _BIC_INSIDE) & (dz < _BIC_INSIDE), 1.0, 0.0)


# Point mass: obs = [qpos (x, y), qvel (2)]; target at the origin; one sub-step per control step.
_POINT_MASS_TARGET_SIZE = 0.015


def point_mass_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """PointMass (exact), from obs and action (not next_obs: with one physics
    sub-step per control step the env measures the distance before integrating):

        near_target * (4 + small_control) / 5, near_target =
        tol(|pos|, (0, 0.015), margin=0.015), small_control = mean_i tol(a_i, margin=1,
        value_at_margin=0, quadratic).
    """
    del next_obs
    dist = jnp.linalg.norm(obs[..., 0:2], axis=-1)
    near = tolerance(dist, (0.0, _POINT_MASS_TARGET_SIZE), margin=_POINT_MASS_TARGET_SIZE)
    return near * (_small_control(action) + 4) / 5


# Cheetah: obs = [qpos[1:] (rootz, rooty, 6 joints), qvel (rootx, rootz, rooty, 6 joints)].
_CHEETAH_RUN_SPEED = 10.0


def cheetah_speed(obs: jax.Array) -> jax.Array:
    """Centre-of-mass x velocity (`torso_subtreelinvel`[0]) of the cheetah state in obs."""
    q = obs[..., 1:8]  # rooty, bthigh, bshin, bfoot, fthigh, fshin, ffoot
    v = obs[..., 8:17]
    vx, _ = _com_velocity(_CHEETAH, q, v[..., 0], v[..., 1], v[..., 2:9])
    return vx


def cheetah_run_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """CheetahRun (exact), from obs: tol(speed, (10, inf), margin=10, value_at_margin=0,
    linear) = clip(speed / 10, 0, 1), speed the centre-of-mass x velocity.

    With one physics sub-step per control step, the env reads the sensor of the
    state in obs (before integrating), so obs, not next_obs, sets the reward.
    """
    del action, next_obs
    return tolerance(
        cheetah_speed(obs), bounds=(_CHEETAH_RUN_SPEED, math.inf), margin=_CHEETAH_RUN_SPEED, value_at_margin=0.0, sigmoid="linear"
    )


# Walker: obs = [xx, xz of the 7 body frames (14), torso zz (1), qvel (rootz, rootx, rooty, 6 joints)].
_WALKER_STAND_HEIGHT = 1.2
_WALKER_WALK_SPEED = 1.0
_WALKER_RUN_SPEED = 8.0
_WALKER_SUBSTEPS = 10  # ctrl_dt 0.025 / sim_dt 0.0025


def _walker_joint_angles(next_obs: jax.Array) -> jax.Array:
    """Hinge angles [..., 7] (rooty then joints) from the body orientations in obs[0:14]."""
    theta = jnp.arctan2(next_obs[..., 1:14:2], next_obs[..., 0:14:2])  # absolute pitch per body
    q = [theta[..., 0]]
    for i in range(1, 7):
        q.append(_WALKER.axis[i] * (theta[..., i] - theta[..., _WALKER.parent[i]]))
    return jnp.stack(q, -1)


def walker_torso_height(next_obs: jax.Array) -> jax.Array:
    """Approximate torso z: the height at which the walker's lowest capsule point touches the floor (z = 0)."""
    q = _walker_joint_angles(next_obs)
    zero = jnp.zeros_like(q[..., 0])
    frames = _planar_frames(_WALKER, zero, zero, q)
    lowest = []
    for body, centre, axis, half, radius in _WALKER_CAPSULES:
        x, z, c, s = frames[body]
        _, cz = _rot(c, s, centre)
        _, az = _rot(c, s, axis)
        lowest.append(z + cz - jnp.abs(az) * half - radius)
    torso_z = frames[0][1]
    return torso_z - jnp.min(jnp.stack(lowest, -1), axis=-1)


def walker_speed(obs: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Estimated centre-of-mass x velocity one sub-step before next_obs (exact pose, interpolated qvel)."""
    q = _walker_joint_angles(next_obs)
    v = _interp_last_substep(obs[..., 15:24], next_obs[..., 15:24], _WALKER_SUBSTEPS)
    vx, _ = _com_velocity(_WALKER, q, v[..., 1], v[..., 0], v[..., 2:9])
    return vx


def _walker_stand(next_obs: jax.Array) -> jax.Array:
    standing = tolerance(walker_torso_height(next_obs), bounds=(_WALKER_STAND_HEIGHT, math.inf), margin=_WALKER_STAND_HEIGHT / 2)
    upright = (1 + next_obs[..., 14]) / 2
    return (3 * standing + upright) / 4


def walker_stand_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """WalkerStand (approximate): (3 * standing + upright) / 4, standing = tol(torso z,
    (1.2, inf), margin=0.6), upright = (1 + torso zz) / 2 (exact, next_obs[14]).

    The torso z is not observed; `walker_torso_height` assumes the lowest point
    of the walker is on the floor (see REWARD_NOTES).
    """
    del obs, action
    return _walker_stand(next_obs)


def _make_walker_move_reward(speed: float) -> RewardFn:
    def walker_move_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
        del action
        move = tolerance(
            walker_speed(obs, next_obs), bounds=(speed, math.inf), margin=speed / 2, value_at_margin=0.5, sigmoid="linear"
        )
        return _walker_stand(next_obs) * (5 * move + 1) / 6

    walker_move_reward.__doc__ = (
        f"Walker with move speed {speed:g} (approximate): stand * (5 * move + 1) / 6, stand as in "
        f"walker_stand_reward, move = tol(centre-of-mass x velocity, ({speed:g}, inf), margin={speed / 2:g}, "
        "value_at_margin=0.5, linear); the velocity one sub-step before next_obs is interpolated."
    )
    return walker_move_reward


walker_walk_reward = _make_walker_move_reward(_WALKER_WALK_SPEED)
walker_run_reward = _make_walker_move_reward(_WALKER_RUN_SPEED)

# Hopper: obs = [qpos[1:] (rootz, rooty, waist, hip, knee, ankle), qvel (7), touch (2)]; Euler, h = 0.005.
_HOPPER_STAND_HEIGHT = 0.6
_HOPPER_HOP_SPEED = 2.0
_HOPPER_DT = 0.005
_HOPPER_SUBSTEPS = 4  # ctrl_dt 0.02 / sim_dt 0.005


def _hopper_angles_last_substep(next_obs: jax.Array) -> jax.Array:
    """Hinge angles [..., 5] (rooty, waist, hip, knee, ankle) one sub-step before next_obs: q' - h qvel'."""
    return next_obs[..., 1:6] - _HOPPER_DT * next_obs[..., 8:13]


def hopper_height(next_obs: jax.Array) -> jax.Array:
    """Torso minus foot centre-of-mass z (the env's `_height`), one sub-step before next_obs."""
    q = _hopper_angles_last_substep(next_obs)
    zero = jnp.zeros_like(q[..., 0])
    _, zs = _planar_ipos(_HOPPER, zero, zero, q)
    return zs[..., 0] - zs[..., 4]


def hopper_speed(obs: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Estimated centre-of-mass x velocity one sub-step before next_obs (exact pose, interpolated qvel)."""
    q = _hopper_angles_last_substep(next_obs)
    v = _interp_last_substep(obs[..., 6:13], next_obs[..., 6:13], _HOPPER_SUBSTEPS)
    vx, _ = _com_velocity(_HOPPER, q, v[..., 0], v[..., 1], v[..., 2:7])
    return vx


def hopper_stand_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """HopperStand (exact): standing * (4 + small_control) / 5, standing =
    tol(torso z - foot z, (0.6, 2)) (0 or 1), small_control = mean_i tol(a_i, margin=1,
    value_at_margin=0, quadratic). The height comes from the planar kinematics
    at the pose one sub-step before next_obs (q' - 0.005 qvel')."""
    del obs
    standing = tolerance(hopper_height(next_obs), (_HOPPER_STAND_HEIGHT, 2.0))
    return standing * (_small_control(action) + 4) / 5


def hopper_hop_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
    """HopperHop (approximate): standing * hopping, standing as in hopper_stand_reward (exact),
    hopping = tol(centre-of-mass x velocity, (2, inf), margin=1, value_at_margin=0.5,
    linear) = clip(speed / 2, 0, 1), the velocity one sub-step before next_obs interpolated."""
    del action
    standing = tolerance(hopper_height(next_obs), (_HOPPER_STAND_HEIGHT, 2.0))
    hopping = tolerance(
        hopper_speed(obs, next_obs),
        bounds=(_HOPPER_HOP_SPEED, math.inf),
        margin=_HOPPER_HOP_SPEED / 2,
        value_at_margin=0.5,
        sigmoid="linear",
    )
    return standing * hopping


# Humanoid: obs = [joint angles (21), head z (1), extremities (12), torso xmat row z (3),
# centre-of-mass velocity (3), qvel (27)].
_HUMANOID_STAND_HEIGHT = 1.4
_HUMANOID_WALK_SPEED = 1.0
_HUMANOID_RUN_SPEED = 10.0


def _make_humanoid_reward(move_speed: float) -> RewardFn:
    def humanoid_reward(obs: jax.Array, action: jax.Array, next_obs: jax.Array) -> jax.Array:
        del obs
        standing = tolerance(next_obs[..., 21], bounds=(_HUMANOID_STAND_HEIGHT, math.inf), margin=_HUMANOID_STAND_HEIGHT / 4)
        upright = tolerance(next_obs[..., 36], bounds=(0.9, math.inf), sigmoid="linear", margin=1.9, value_at_margin=0.0)
        small_control = (4 + _small_control(action)) / 5
        com_vel = next_obs[..., 37:39]
        if move_speed == 0.0:
            move = jnp.mean(tolerance(com_vel, margin=2), axis=-1)
        else:
            move = tolerance(
                jnp.linalg.norm(com_vel, axis=-1),
                bounds=(move_speed, math.inf),
                margin=move_speed,
                value_at_margin=0.0,
                sigmoid="linear",
            )
            move = (5 * move + 1) / 6
        return standing * upright * move * small_control

    if move_speed == 0.0:
        move_doc = "move = mean over x, y of tol(com velocity, margin=2)"
    else:
        move_doc = (
            f"move = (5 tol(|com velocity xy|, ({move_speed:g}, inf), margin={move_speed:g}, "
            "value_at_margin=0, linear) + 1) / 6"
        )
    humanoid_reward.__doc__ = (
        f"Humanoid, move speed {move_speed:g} (exact), from next_obs and action: standing * upright * "
        "move * small_control, standing = tol(head z, (1.4, inf), margin=0.35), upright = "
        "tol(torso zz, (0.9, inf), margin=1.9, value_at_margin=0, linear), "
        f"{move_doc}, small_control = (4 + mean_i tol(a_i, margin=1, value_at_margin=0, quadratic)) / 5."
    )
    return humanoid_reward


humanoid_stand_reward = _make_humanoid_reward(0.0)
humanoid_walk_reward = _make_humanoid_reward(_HUMANOID_WALK_SPEED)
humanoid_run_reward = _make_humanoid_reward(_HUMANOID_RUN_SPEED)

# --------------------------------------------------------------- registry ---

KNOWN_REWARDS: Dict[str, RewardFn] = {
    "CartpoleSwingup": cartpole_dense_reward,
    "CartpoleBalance": cartpole_dense_reward,
    "CartpoleSwingupSparse": cartpole_sparse_reward,
    "CartpoleBalanceSparse": cartpole_sparse_reward,
    "ReacherEasy": reacher_easy_reward,
    "ReacherHard": reacher_hard_reward,
    "FingerSpin": finger_spin_reward,
    "BallInCup": ball_in_cup_reward,
    "PointMass": point_mass_reward,
    "CheetahRun": cheetah_run_reward,
    "WalkerStand": walker_stand_reward,
    "WalkerWalk": walker_walk_reward,
    "WalkerRun": walker_run_reward,
    "HopperStand": hopper_stand_reward,
    "HopperHop": hopper_hop_reward,
    "HumanoidStand": humanoid_stand_reward,
    "HumanoidWalk": humanoid_walk_reward,
    "HumanoidRun": humanoid_run_reward,
    "toy_reach": toy.reward_fn,
}


class ErrorBound(NamedTuple):
    """Measured error of an approximate reward against the simulator's (see docs/rewards.md)."""

    max_abs: float  # largest |reward_fn - env reward| over a rollout
    mean_abs: float  # mean |reward_fn - env reward| over a rollout


# Asserted by tests/test_rewards.py (4 random + 4 structured envs per model) and
# measured on 3 x 32 envs x 400 steps; tasks not listed are exact (errors <= 1.2e-7 seen).
REWARD_ERROR_BOUNDS: Dict[str, ErrorBound] = {
    "FingerSpin": ErrorBound(1.0, 0.01),
    "WalkerStand": ErrorBound(0.75, 0.15),
    "WalkerWalk": ErrorBound(0.75, 0.05),
    "WalkerRun": ErrorBound(0.3, 0.05),
    "HopperHop": ErrorBound(0.1, 0.001),
}

REWARD_NOTES: Dict[str, str] = {
    "FingerSpin": (
        "The reward is the hinge_velocity sensor, i.e. the spinner's velocity one 5 ms physics sub-step before "
        "next_obs; obs holds only the velocities at the ends of the 20 ms control step, so it is interpolated "
        "linearly. The 0/1 reward flips where the velocity crosses -15 rad/s within the last sub-step under "
        "a finger impact: 6 of 38,400 steps measured (mean abs error 1.6e-4, max 1; asserted max 1, mean 0.01)."
    ),
    "WalkerStand": (
        "standing needs the torso's z, which no walker observation holds (obs[14], dm_control's 'height', is the "
        "torso's zz orientation entry); it is estimated as the height at which the walker's lowest capsule point "
        "touches the floor, exact up to ~1 cm of contact penetration while touching but too low while airborne "
        "(the fall from the reset pose, jumps): error up to 0.75 (all of 3/4 * standing) on those steps; median "
        "height error 6 mm; mean abs reward error 0.02 over 400-step rollouts, 0.11 over the first 40 steps "
        "(asserted max 0.75, mean 0.15). upright is exact."
    ),
    "WalkerWalk": (
        "stand as in WalkerStand (torso z estimated from the pose, wrong while airborne), times the move term of "
        "the centre-of-mass x velocity one 2.5 ms sub-step before next_obs (exact pose from the observed "
        "orientations; joint velocities interpolated linearly between obs and next_obs, mean speed error "
        "0.018 m/s, max 0.25 m/s). Measured max abs error 0.56, mean 0.005 over 400 steps, 0.02 over the "
        "first 40 (asserted max 0.75, mean 0.05)."
    ),
    "WalkerRun": (
        "as WalkerWalk with speed 8 (the move term is small at the speeds reached, which scales the stand "
        "error down; a fast runner, airborne more often, would see larger errors). Measured max abs error "
        "0.16, mean 0.0035 over 400 steps, 0.019 over the first 40 (asserted max 0.3, mean 0.05)."
    ),
    "HopperHop": (
        "standing is exact (pose one sub-step back = q' - 0.005 qvel'); hopping needs the centre-of-mass x "
        "velocity one 5 ms sub-step before next_obs, whose joint velocities are interpolated linearly between "
        "obs and next_obs. Measured max abs error 0.058, mean 1.3e-5 (asserted max 0.1, mean 0.001)."
    ),
}

EXACT_REWARDS = frozenset(name for name in KNOWN_REWARDS if name not in REWARD_ERROR_BOUNDS)


def get_reward_fn(env_name: str) -> RewardFn:
    """The known reward_fn(obs, action, next_obs) of `env_name`; KeyError if it has none."""
    try:
        return KNOWN_REWARDS[env_name]
    except KeyError:
        raise KeyError(
            f"no known reward function for env '{env_name}'; known: {', '.join(sorted(KNOWN_REWARDS))} "
            "(use the model's own reward, planner.reward=model)"
        ) from None
