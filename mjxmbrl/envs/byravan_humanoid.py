"""The high-DoF body's MJX tasks of Byravan et al. 2022 (arXiv:2110.03363) on the DM Control humanoid.

The paper's OP3 (20 DoF) is not installed; DM Control's 21-DoF humanoid (MuJoCo Playground's model, control
step 0.025 s of five 0.005 s simulation steps) stands in for it:

- `HumanoidCorridor`: `HumanoidWalkForward` (+x) and `HumanoidWalkBackward` (-x), App. A.1. No walls:
  the paper's corridor only fixes the direction, and the humanoid's contacts with two more planes would
  cost every simulation step; the reward counts only the velocity along the direction.
- `HumanoidGoToTargetPose`: `HumanoidGTTP`, App. A.2 with the OP3's constants, on the plane; target poses
  from data/humanoid_gttp_poses.npz (cli/humanoid_poses.py made them from our own walking experts).

Reset (both): upright (the model's standing pose, torso at 1.285 m, feet on the floor) plus
U(-0.1, 0.1) rad on every hinge joint (clipped to range) and a heading U(-0.3, 0.3) rad, at rest. The
episode ends when the torso falls below humanoid_tasks.FALL_HEIGHT (the OP3's tasks end on a fall) or
the physics is NaN. Observations and rewards: envs/humanoid_tasks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env
from mujoco_playground._src.dm_control_suite import humanoid

from mjxmbrl.envs import ant_gttp
from mjxmbrl.envs import humanoid_tasks as ht
from mjxmbrl.envs.byravan_envs import YAW_NOISE, GoToTargetPose, load_reference_poses, pose_kinematics
from mjxmbrl.envs.polo_envs import HingeNoise, humanoid_upright_qpos

GTTP_TASK = "HumanoidGTTP"
TASKS = (*ht.DIRECTIONS, GTTP_TASK)
POSES_FILE = Path(__file__).parent / "data" / "humanoid_gttp_poses.npz"


def humanoid_config() -> config_dict.ConfigDict:
    config = humanoid.default_config()
    config.episode_length = ht.EPISODE_LENGTH
    config.impl = "jax"
    return config


class _Humanoid(humanoid.Humanoid):
    """The humanoid's reset, proprioception and fall, shared by the walking and the go-to-target-pose tasks."""

    def __init__(self, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(0.0, config if config is not None else humanoid_config(), config_overrides)
        self._upright = humanoid_upright_qpos(self.mj_model)
        self._noise = HingeNoise.of(self.mj_model)
        self._ends = jnp.array([self.mj_model.body(name).id for name in ht.EXTREMITY_BODIES])

    def initial_qpos(self, key: jax.Array) -> jax.Array:
        """Upright qpos [28] with hinge noise and a heading U(-YAW_NOISE, YAW_NOISE)."""
        k_joint, k_yaw = jax.random.split(key)
        yaw = jax.random.uniform(k_yaw, minval=-YAW_NOISE, maxval=YAW_NOISE)
        qpos = self._noise.apply(self._upright, k_joint)
        return qpos.at[3:7].set(jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)]))

    def _initial_data(self, key: jax.Array) -> mjx.Data:
        data = mjx_env.make_data(self.mj_model, qpos=self.initial_qpos(key), impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        return mjx.forward(self.mjx_model, data)

    def _proprio(self, data: mjx.Data) -> jax.Array:
        """The 63 proprioceptive entries of envs/humanoid_tasks.py, in the torso's frame."""
        rot = data.xmat[self._torso_body_id]  # body -> world
        ends = (data.xpos[self._ends] - data.xpos[self._torso_body_id]) @ rot
        return jnp.concatenate([data.qpos[7:], data.qvel[6:], data.qvel[:3] @ rot, data.qvel[3:6],
                                ends.reshape(-1), rot[2]])

    @staticmethod
    def _done(data: mjx.Data) -> jax.Array:
        nan = jnp.isnan(data.qpos).any() | jnp.isnan(data.qvel).any()
        return (nan | (data.qpos[2] < ht.FALL_HEIGHT)).astype(jnp.float32)


class HumanoidCorridor(_Humanoid):
    """The humanoid walking along +x (direction 1) or -x (-1); obs [66], action [21] in [-1, 1]."""

    def __init__(self, direction: float, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(config, config_overrides)
        self._direction = jnp.array([float(direction), 0.0, 0.0], jnp.float32)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key = jax.random.split(rng)
        data = self._initial_data(key)
        metrics = {"forward_speed": jnp.zeros(()), "torso_height": data.qpos[2]}
        return mjx_env.State(data, self._get_obs(data, {}), jnp.zeros(()), jnp.zeros(()), metrics, {"rng": rng})

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        obs = self._get_obs(data, state.info)
        reward = ht.walk_reward(None, action, obs).astype(jnp.float32)
        metrics = {**state.metrics, "forward_speed": data.qvel[0], "torso_height": data.qpos[2]}
        return mjx_env.State(data, obs, reward, self._done(data), metrics, state.info)

    def _get_obs(self, data: mjx.Data, info: Dict[str, Any]) -> jax.Array:
        """The egocentric observation [66]: proprioception and e_target in the torso's frame."""
        del info
        return jnp.concatenate([self._proprio(data), self._direction @ data.xmat[self._torso_body_id]])


class HumanoidGoToTargetPose(GoToTargetPose, _Humanoid):
    """The humanoid reaching target poses one after another; obs [228], action [21] in [-1, 1].

    Targets are `humanoid_tasks.Target`s; info and metrics as byravan_envs.GoToTargetPose's.
    """

    def __init__(self, poses: Optional[np.ndarray] = None, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(config, config_overrides)
        poses = load_reference_poses(POSES_FILE) if poses is None else poses
        self._poses = pose_kinematics(self.mj_model, poses, ht.POSE_BODIES)
        self._num_poses = int(self._poses["height"].shape[0])
        self._bodies = jnp.array([self.mj_model.body(name).id for name in ht.POSE_BODIES])
        self._axis_bodies = jnp.array([self._torso_body_id, *self._bodies.tolist()])
        self._torso_id = self._torso_body_id
        self._place, self._sparse = ht.place_target, ht.sparse_step

    def _dense(self, target: ht.Target, data: mjx.Data) -> jax.Array:
        return ht.dense_reward(target, data.xpos[self._torso_body_id], data.xpos[self._bodies],
                               data.xmat[self._axis_bodies], data.subtree_com[self._torso_body_id], data.qvel[6:])

    def _get_obs(self, data: mjx.Data, info: Dict[str, Any]) -> jax.Array:
        """The egocentric observation [228] of envs/humanoid_tasks.py."""
        task = ant_gttp.task_observation(info["target"], data.qpos[7:], data.xpos[self._torso_body_id],
                                         data.xmat[self._torso_body_id])
        return jnp.concatenate([self._proprio(data), task])


def make(name: str, config_overrides: Dict[str, Any]) -> mjx_env.MjxEnv:
    """One of TASKS; config_overrides as byravan_envs.make builds them."""
    if name == GTTP_TASK:
        return HumanoidGoToTargetPose(config_overrides=config_overrides)
    return HumanoidCorridor(ht.DIRECTIONS[name], config_overrides=config_overrides)
