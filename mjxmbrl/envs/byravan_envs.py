"""MJX tasks of Byravan et al. 2022 (arXiv:2110.03363): the ant walking forward or backward in a corridor
(`AntCorridor`), and going to target poses on an open plane (`AntGoToTargetPose`). The high-DoF body's
tasks (the DM Control humanoid) are in envs/byravan_humanoid.py; `make` builds either.

Both are `mujoco_playground` `MjxEnv`s (State = `mjx_env.State`), so the batched wrapper
(envs/wrappers.py) and the oracle model step them like any DM Control task.

The body: the paper's ant is DM Control's 8-DoF locomotion ant, which the installed packages do not
provide; ours is the 8-DoF ant of the Gym/Brax family (torso sphere, four two-segment legs, hinge
hips and ankles, motors of gear 150), written out below with two changes: the torso and the feet
collide with the floor and with the corridor's walls (planes at y = +-CORRIDOR_HALF_WIDTH; the leg
capsules collide with nothing, as in Brax), and the simulation step is 0.01 s with two substeps per
0.02 s control step (the paper's dt for the ant). Reset: standing (torso 0.55 m up, hips 0, ankles
+-50 degrees, mid-range) plus U(-0.1, 0.1) on every joint angle (clipped to range), a yaw of U(-YAW_NOISE, YAW_NOISE)
rad and N(0, 0.1^2) joint and root velocities. Observation and reward: envs/ant_walk.py. Episodes of
1000 control steps; done only on NaN physics, as in the DM Control suite.

The go-to-target-pose ant is the same body and reset on a plane without walls; its target poses,
observation and reward are in envs/ant_gttp.py, its reference poses in data/ant_gttp_poses.npz
(cli/ant_poses.py made them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from mjxmbrl.envs import ant_gttp, ant_walk
from mjxmbrl.envs.generated import GeneratedModelEnv

CORRIDOR_HALF_WIDTH = 1.5  # m: the legs span about 1.9 m from foot to opposite foot
CORRIDOR_LENGTH = 200.0  # m, drawn only (walls are infinite planes)
JOINT_NOISE = 0.1  # rad, uniform, on every joint at reset
VELOCITY_NOISE = 0.1  # normal std of every velocity at reset
YAW_NOISE = 0.3  # rad, uniform, of the torso's heading at reset
GTTP_TASK = "AntGTTP"
TASKS = (*ant_walk.DIRECTIONS, GTTP_TASK)
POSES_FILE = Path(__file__).parent / "data" / "ant_gttp_poses.npz"
PLANE_HALF_SIZE = 50.0  # m, the go-to-target-pose ant's floor

_LEG = """
      <body name="{name}_leg" pos="0 0 0">
        <geom name="{name}_hip_geom" fromto="0 0 0 {x} {y} 0" size="0.08" type="capsule"/>
        <body name="{name}_thigh" pos="{x} {y} 0">
          <joint name="{name}_hip" axis="0 0 1" range="-30 30" type="hinge"/>
          <geom name="{name}_thigh_geom" fromto="0 0 0 {x} {y} 0" size="0.08" type="capsule"/>
          <body name="{name}_shin" pos="{x} {y} 0">
            <joint name="{name}_ankle" axis="{ax} {ay} 0" range="{lo} {hi}" type="hinge"/>
            <geom name="{name}_shin_geom" fromto="0 0 0 {x2} {y2} 0" size="0.08" type="capsule"/>
            <geom name="{name}_foot" pos="{x2} {y2} 0" size="0.08" type="sphere" contype="1" conaffinity="0" mass="0"/>
          </body>
        </body>
      </body>"""

# (name, hip direction, ankle axis, ankle range in degrees): Gym's ant legs in its joint order.
_LEGS = (("front_left", (1, 1), (-1, 1), (30, 70)), ("front_right", (-1, 1), (1, 1), (-70, -30)),
         ("back_left", (-1, -1), (-1, 1), (-70, -30)), ("back_right", (1, -1), (1, 1), (30, 70)))
FOOT_GEOMS = tuple(f"{name}_foot" for name, *_ in _LEGS)
POSE_BODIES = tuple(f"{name}_{part}" for part in ("thigh", "shin") for name, *_ in _LEGS)  # ant_gttp's 8 bodies


def ant_xml(corridor: bool = True) -> str:
    """The ant's MJCF (see the module docstring): in the corridor, or on an open plane (corridor=False)."""
    legs = "".join(
        _LEG.format(name=name, x=0.2 * dx, y=0.2 * dy, x2=0.4 * dx, y2=0.4 * dy, ax=ax, ay=ay, lo=lo, hi=hi)
        for name, (dx, dy), (ax, ay), (lo, hi) in _LEGS)
    motors = "".join(f'\n    <motor joint="{name}_{part}" gear="150" ctrlrange="-1 1" ctrllimited="true"/>'
                     for name, *_ in _LEGS for part in ("hip", "ankle"))
    w, half = CORRIDOR_HALF_WIDTH, CORRIDOR_LENGTH / 2
    floor = f'<geom name="floor" type="plane" size="{half} {w + 1} 0.1" material="grid" conaffinity="1"/>'
    walls = f"""
    <geom name="wall_left" type="plane" pos="0 {w} 0.5" zaxis="0 -1 0" size="{half} 0.5 0.1" conaffinity="1" rgba=".3 .3 .3 .3"/>
    <geom name="wall_right" type="plane" pos="0 {-w} 0.5" zaxis="0 1 0" size="{half} 0.5 0.1" conaffinity="1" rgba=".3 .3 .3 .3"/>"""
    if not corridor:
        floor = f'<geom name="floor" type="plane" size="{PLANE_HALF_SIZE} {PLANE_HALF_SIZE} 0.1" material="grid" conaffinity="1"/>'
        walls = ""
    return f"""<mujoco model="ant_{'corridor' if corridor else 'plane'}">
  <compiler angle="degree" inertiafromgeom="true"/>
  <option timestep="0.01" iterations="4" ls_iterations="8"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom contype="0" conaffinity="0" condim="3" density="5.0" friction="1 0.5 0.5" rgba="0.8 0.6 0.4 1"/>
  </default>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1=".1 .2 .3" rgb2=".2 .3 .4" width="300" height="300"/>
    <material name="grid" texture="grid" texrepeat="1 1" texuniform="true"/>
  </asset>
  <worldbody>
    <light name="light" pos="0 0 6" dir="0 0 -1" directional="true"/>
    {floor}{walls}
    <body name="torso" pos="0 0 0.75">
      <camera name="track" mode="trackcom" pos="0 -4 2" xyaxes="1 0 0 0 0.45 0.9"/>
      <geom name="torso_geom" size="0.25" type="sphere" contype="1" conaffinity="0"/>
      <joint name="root" type="free" armature="0" damping="0" limited="false" margin="0.01"/>{legs}
    </body>
  </worldbody>
  <actuator>{motors}
  </actuator>
</mujoco>"""


def ant_config() -> config_dict.ConfigDict:
    return config_dict.create(
        ctrl_dt=ant_walk.CTRL_DT,
        sim_dt=0.01,
        episode_length=ant_walk.EPISODE_LENGTH,
        action_repeat=1,
        vision=False,
        impl="jax",
        naconmax=65_536,  # warp only: contacts over all worlds (15 candidate pairs per world)
        njmax=64,  # warp only: constraint rows per world
    )


class _Ant(GeneratedModelEnv):
    """The ant's model, reset and proprioception, shared by the corridor and the go-to-target-pose tasks."""

    def __init__(self, corridor: bool, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(config if config is not None else ant_config(), config_overrides)
        self._mj_model = mujoco.MjModel.from_xml_string(ant_xml(corridor))
        self._mj_model.opt.timestep = self.sim_dt
        self._mjx_model = mjx.put_model(self._mj_model, impl=self._config.impl)
        self._torso = self._mj_model.body("torso").id
        self._feet = jnp.array([self._mj_model.geom(name).id for name in FOOT_GEOMS])
        self._low = jnp.asarray(self._mj_model.jnt_range[1:, 0], jnp.float32)
        self._high = jnp.asarray(self._mj_model.jnt_range[1:, 1], jnp.float32)
        ankle = jnp.deg2rad(jnp.array([50.0, -50.0, -50.0, 50.0]))  # mid-range, the legs bent down
        self._stand = jnp.concatenate([jnp.array([0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0]),
                                       jnp.stack([jnp.zeros(4), ankle], axis=-1).reshape(-1)])

    def initial_qpos_qvel(self, key: jax.Array):
        """Standing qpos [15] with joint and yaw noise, qvel [14] ~ N(0, VELOCITY_NOISE^2)."""
        k_joint, k_yaw, k_vel = jax.random.split(key, 3)
        joints = self._stand[7:] + jax.random.uniform(k_joint, (8,), minval=-JOINT_NOISE, maxval=JOINT_NOISE)
        yaw = jax.random.uniform(k_yaw, minval=-YAW_NOISE, maxval=YAW_NOISE)
        quat = jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])
        qpos = jnp.concatenate([self._stand[:3], quat, jnp.clip(joints, self._low, self._high)])
        qvel = VELOCITY_NOISE * jax.random.normal(k_vel, (self.mj_model.nv,))
        return qpos, qvel

    def _initial_data(self, key: jax.Array) -> mjx.Data:
        qpos, qvel = self.initial_qpos_qvel(key)
        data = mjx_env.make_data(self.mj_model, qpos=qpos, qvel=qvel, impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        return mjx.forward(self.mjx_model, data)

    def _proprio(self, data: mjx.Data) -> jax.Array:
        """The 37 proprioceptive entries of envs/ant_walk.py, in the torso's frame."""
        rot = data.xmat[self._torso]  # body -> world
        torso = data.xpos[self._torso]
        feet = (data.geom_xpos[self._feet] - torso) @ rot  # [4, 3] in the torso's frame
        return jnp.concatenate([
            data.qpos[7:], data.qvel[6:],
            data.qvel[:3] @ rot,  # the free joint's linear velocity is in the world frame
            data.qvel[3:6],  # its angular velocity is in the body frame
            feet.reshape(-1),
            rot[2],  # the world's z axis in the torso's frame
        ])

    @staticmethod
    def _nan_done(data: mjx.Data) -> jax.Array:
        return (jnp.isnan(data.qpos).any() | jnp.isnan(data.qvel).any()).astype(jnp.float32)


class AntCorridor(_Ant):
    """The ant walking along +x (direction 1) or -x (direction -1); obs [40], action [8] in [-1, 1]."""

    MODEL_NAME = "ant_corridor"  # the MJCF is `ant_xml()`

    def __init__(self, direction: float, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(True, config, config_overrides)
        self._direction = jnp.array([float(direction), 0.0, 0.0], jnp.float32)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key = jax.random.split(rng)
        data = self._initial_data(key)
        metrics = {"forward_speed": jnp.zeros(()), "lateral_position": data.qpos[1]}
        return mjx_env.State(data, self._get_obs(data), jnp.zeros(()), jnp.zeros(()), metrics, {"rng": rng})

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        obs = self._get_obs(data)
        reward = ant_walk.walk_reward(None, action, obs).astype(jnp.float32)
        metrics = {**state.metrics, "forward_speed": data.qvel[0], "lateral_position": data.qpos[1]}
        return mjx_env.State(data, obs, reward, self._nan_done(data), metrics, state.info)

    def _get_obs(self, data: mjx.Data, info: Optional[Dict[str, Any]] = None) -> jax.Array:
        """The egocentric observation [40] of envs/ant_walk.py."""
        del info
        return jnp.concatenate([self._proprio(data), self._direction @ data.xmat[self._torso]])


def load_reference_poses(path: Path = POSES_FILE) -> np.ndarray:
    """The reference poses [N, 13] (torso height, heading-free quaternion, 8 joint angles) of the GTTP task."""
    with np.load(path) as data:
        return np.asarray(data["poses"], np.float32)


def pose_kinematics(mj_model: mujoco.MjModel, poses: np.ndarray, pose_bodies=POSE_BODIES) -> Dict[str, np.ndarray]:
    """Forward kinematics of each pose placed at the origin with heading 0 (MuJoCo on the host).

    poses [N, P]: qpos[2:] (torso height, heading-free quaternion, joint angles; nq - 2 entries), then, if
    P > nq - 2, joint velocities. Returns {"joints" [N, J], "height" [N], "bodies" [N, B, 3] (`pose_bodies`
    relative to the torso), "rotations" [N, B + 1, 3, 3] (torso, then `pose_bodies`; body -> world), "com"
    [N, 3] (relative to the torso)} and, with velocities, "velocities" [N, J]. The ant's bodies by default.
    """
    data = mujoco.MjData(mj_model)
    torso = mj_model.body("torso").id
    bodies = [mj_model.body(name).id for name in pose_bodies]
    size = mj_model.nq - 2
    out = {"joints": poses[:, 5:size], "height": poses[:, 0], "bodies": [], "rotations": [], "com": []}
    if poses.shape[1] > size:
        out["velocities"] = poses[:, size:]
    for pose in poses:
        data.qpos[:] = np.concatenate([[0.0, 0.0], pose[:size]])
        mujoco.mj_kinematics(mj_model, data)
        mujoco.mj_comPos(mj_model, data)
        out["bodies"].append(data.xpos[bodies] - data.xpos[torso])
        out["rotations"].append(data.xmat[[torso, *bodies]].reshape(-1, 3, 3).copy())
        out["com"].append(data.subtree_com[torso] - data.xpos[torso])
    return {k: jnp.asarray(np.asarray(v), jnp.float32) for k, v in out.items()}


class GoToTargetPose:
    """The episode logic of a go-to-target-pose task (App. A.2), shared by the ant's and the humanoid's.

    info holds the placed target (world frame), the targets achieved so far and the streak of steps above
    the reward threshold; metrics report the dense reward, the torso's distance to the target and the
    targets achieved. A subclass has `_poses` (pose_kinematics of its reference set), `_num_poses`,
    `_initial_data(key)`, `_get_obs(data, info)`, and sets `_torso_id`, `_place` (the task module's
    place_target), `_sparse` (its sparse_step), `_dense(target, data)` and `_done(data)`.
    """

    @property
    def num_poses(self) -> int:
        return self._num_poses

    def _new_target(self, key: jax.Array, data: mjx.Data, achieved: jax.Array):
        k_pose, k_place = jax.random.split(key)
        pose = jax.tree.map(lambda x: x[jax.random.randint(k_pose, (), 0, self._num_poses)], self._poses)
        yaw = ant_gttp.yaw_of(data.xmat[self._torso_id])
        return self._place(k_place, data.xpos[self._torso_id], yaw, achieved, pose)

    def _metrics(self, dense: jax.Array, data: mjx.Data, info: Dict[str, Any]) -> Dict[str, jax.Array]:
        distance = jnp.linalg.norm(data.xpos[self._torso_id] - info["target"].root)
        return {"dense_reward": dense, "target_distance": distance, "targets_achieved": info["achieved"].astype(jnp.float32)}

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, k_data, k_target = jax.random.split(rng, 3)
        data = self._initial_data(k_data)
        achieved = jnp.zeros((), jnp.int32)
        info = {"rng": rng, "target": self._new_target(k_target, data, achieved), "achieved": achieved,
                "streak": jnp.zeros((), jnp.int32)}
        obs = self._get_obs(data, info)
        return mjx_env.State(data, obs, jnp.zeros(()), jnp.zeros(()), self._metrics(jnp.zeros(()), data, info), info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        info = state.info
        dense = self._dense(info["target"], data)
        reward, success, streak = self._sparse(dense, info["streak"])
        rng, key = jax.random.split(info["rng"])
        achieved = info["achieved"] + success.astype(jnp.int32)
        target = jax.tree.map(lambda new, old: jnp.where(success, new, old),
                              self._new_target(key, data, achieved), info["target"])
        info = {**info, "rng": rng, "target": target, "achieved": achieved, "streak": streak}
        return mjx_env.State(data, self._get_obs(data, info), reward.astype(jnp.float32), self._done(data),
                             {**state.metrics, **self._metrics(dense, data, info)}, info)


class AntGoToTargetPose(GoToTargetPose, _Ant):
    """The ant reaching target poses one after another (envs/ant_gttp.py); obs [126], action [8] in [-1, 1].

    Targets are `ant_gttp.Target`s; info and metrics as `GoToTargetPose`'s.
    """

    MODEL_NAME = "ant_plane"  # the MJCF is `ant_xml(corridor=False)`

    def __init__(self, poses: Optional[np.ndarray] = None, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(False, config, config_overrides)
        self._poses = pose_kinematics(self._mj_model, load_reference_poses() if poses is None else poses)
        self._num_poses = int(self._poses["height"].shape[0])
        self._bodies = jnp.array([self._mj_model.body(name).id for name in POSE_BODIES])
        self._axis_bodies = jnp.array([self._torso, *self._bodies.tolist()])  # torso, thighs, shins
        self._torso_id = self._torso
        self._place, self._sparse = ant_gttp.place_target, ant_gttp.sparse_step

    def _dense(self, target: ant_gttp.Target, data: mjx.Data) -> jax.Array:
        return ant_gttp.dense_reward(target, data.xpos[self._torso], data.xpos[self._bodies],
                                     data.xmat[self._axis_bodies], data.subtree_com[self._torso])

    def _done(self, data: mjx.Data) -> jax.Array:
        return self._nan_done(data)

    def _get_obs(self, data: mjx.Data, info: Optional[Dict[str, Any]] = None) -> jax.Array:
        """The egocentric observation [126] of envs/ant_gttp.py."""
        task = ant_gttp.task_observation(info["target"], data.qpos[7:], data.xpos[self._torso], data.xmat[self._torso])
        return jnp.concatenate([self._proprio(data), task])


def make(name: str, impl: str = "jax", episode_length: Optional[int] = None) -> mjx_env.MjxEnv:
    """One of TASKS (the ant's) or byravan_humanoid.TASKS (the humanoid's) with MJX backend `impl` ("jax" or "warp")."""
    from mjxmbrl.envs import byravan_humanoid

    if name not in TASKS + byravan_humanoid.TASKS:
        raise KeyError(f"unknown Byravan task '{name}'; known: {', '.join(TASKS + byravan_humanoid.TASKS)}")
    overrides: Dict[str, Any] = {"impl": impl}
    if episode_length is not None:
        overrides["episode_length"] = int(episode_length)
    if name in byravan_humanoid.TASKS:
        return byravan_humanoid.make(name, overrides)
    if name == GTTP_TASK:
        return AntGoToTargetPose(config_overrides=overrides)
    return AntCorridor(ant_walk.DIRECTIONS[name], config_overrides=overrides)
