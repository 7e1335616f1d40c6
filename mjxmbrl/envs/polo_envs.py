"""The MJX tasks of POLO (Lowrey et al. 2019, arXiv:1811.01848): point-mass worlds, getups, walking, reorientation.

All are `mujoco_playground` `MjxEnv`s (State = `mjx_env.State`, `data` an
`mjx.Data`), so the batched wrapper (envs/wrappers.py) and the oracle model
(models/oracle.py) step them like any DM Control task.

- `PointMassWorld` (Sec. 3.1, Fig. 2): "PointMassBox", "PointMassMaze"; the
  MJCF, dynamics and coverage grid come from envs/point_mass_worlds.py. Reset:
  at rest at the start cell's centre + U(-0.02, 0.02)^2 m. Reward 0. The episode's visited cells
  are kept in info["visited"] [num_cells] and their coverage in metrics["coverage"] (log them with
  train.log_env_metrics; a life without resets is one long episode).
- `HumanoidGetup` (App. A.1) on the DM Control humanoid (Playground's
  `Humanoid`, ctrl_dt 0.025 s, sim_dt 0.005 s), `WalkerGetup` on the DM Control
  walker (`PlanarWalker`, ctrl_dt 0.025 s, sim_dt 0.0025 s); `sparse=True`
  gives the *Sparse variants. Reset: supine (on the back, face up, torso
  horizontal), in a pose settled on the floor once at construction by MuJoCo
  (C) under zero control (`settle`), plus U(-JOINT_NOISE, JOINT_NOISE) rad on
  every hinge joint (clipped to the joint's range), at rest. Observation: the
  task's DM Control observation (humanoid 67, walker 24) plus the root height z
  as the last entry (humanoid: torso z = qpos[2]; walker: torso z = 1.3 +
  qpos[rootz]); reward: envs/getup.py, from that z after the step. Episodes:
  600 control steps (15 s; POLO: 600 steps of 0.008 s).
- `PoloHumanoidWalk` (App. A.2) on the DM Control humanoid: upright at reset (qpos0 lowered so the
  feet touch the floor, 1.285 m torso height, plus the getups' joint noise), reward envs/walk.py;
  observation the humanoid's 67 plus the root's (v_x, y, z). Episodes of 600 control steps. (The
  suite's own `HumanoidWalk` is a different task: DM Control's stand-and-move reward.)
- `FingerReorient` (Sec. 3.2, App. B: the in-hand task's substitute) on the DM Control finger
  (Playground's `FingerTurn` with the easy target, ctrl_dt 0.02 s): the finger turns the hinged
  spinner so that its tip points at a target angle re-drawn every 75 control steps. Reward
  envs/reorient.py; observation DM Control's 12 (the target's position among them). Episodes of 1000
  control steps. The re-draws are unmodelled disturbances the planner does not see (App. B): the
  task built with `planning=True` (the oracle model's copy) keeps its target.

Done is set only on NaN physics (no task termination), as in the DM Control suite.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env
from mujoco_playground._src.dm_control_suite import finger, humanoid, walker

from mjxmbrl.envs import getup, reorient, walk
from mjxmbrl.envs.generated import GeneratedModelEnv
from mjxmbrl.envs import point_mass_worlds as pmw

JOINT_NOISE = 0.1  # rad, uniform, on every hinge joint of a getup reset
SETTLE_SECONDS = 2.0  # of simulated time under zero control, for the supine pose

POINT_MASS_TASKS = ("PointMassBox", "PointMassMaze")
GETUP_TASKS = ("HumanoidGetup", "HumanoidGetupSparse", "WalkerGetup", "WalkerGetupSparse")
WALK_TASKS = ("PoloHumanoidWalk",)
REORIENT_TASKS = ("FingerReorient",)
ALL_TASKS = POINT_MASS_TASKS + GETUP_TASKS + WALK_TASKS + REORIENT_TASKS


def _nan_done(data: mjx.Data) -> jax.Array:
    return (jnp.isnan(data.qpos).any() | jnp.isnan(data.qvel).any()).astype(jnp.float32)


# ------------------------------------------------------------- point mass ---


def point_mass_config() -> config_dict.ConfigDict:
    return config_dict.create(
        ctrl_dt=pmw.CTRL_DT,
        sim_dt=pmw.SIM_DT,
        episode_length=pmw.EPISODE_LENGTH,
        action_repeat=1,
        vision=False,
        impl="jax",
        naconmax=65_536,  # warp only: contacts over all worlds (a few per world at most)
        njmax=16,  # warp only: constraint rows per world (frictionless contacts: one each)
    )


class PointMassWorld(GeneratedModelEnv):
    """A point mass in a walled 2-D world; obs [4] = (x, y, vx, vy), action [2] in [-1, 1], reward 0."""

    def __init__(self, world: pmw.World, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(config if config is not None else point_mass_config(), config_overrides)
        self.world = world
        self._mj_model = mujoco.MjModel.from_xml_string(world.xml())
        self._mj_model.opt.timestep = self.sim_dt
        self._mjx_model = mjx.put_model(self._mj_model, impl=self._config.impl)
        self._start = jnp.asarray(world.start_position)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key = jax.random.split(rng)
        qpos = self._start + jax.random.uniform(key, (2,), minval=-pmw.START_JITTER, maxval=pmw.START_JITTER)
        data = mjx_env.make_data(self.mj_model, qpos=qpos, impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        data = mjx.forward(self.mjx_model, data)
        reward, done = jnp.zeros(2)
        visited = self.world.visit(jnp.zeros((self.world.num_cells,), bool), data.qpos)
        metrics = {"coverage": self.world.coverage_fraction(visited)}
        return mjx_env.State(data, self._get_obs(data), reward, done, metrics, {"rng": rng, "visited": visited})

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """One control step; the episode's visited cells (info["visited"]) and metrics["coverage"] follow the mass."""
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        reward = jnp.zeros((), jnp.float32)
        visited = self.world.visit(state.info["visited"], data.qpos)
        metrics = {**state.metrics, "coverage": self.world.coverage_fraction(visited)}
        info = {**state.info, "visited": visited}
        return mjx_env.State(data, self._get_obs(data), reward, _nan_done(data), metrics, info)

    def _get_obs(self, data: mjx.Data, info: Optional[Dict[str, Any]] = None) -> jax.Array:
        del info
        return jnp.concatenate([data.qpos, data.qvel])

    @property
    def xml_path(self) -> str:
        return f"<generated: {self.world.name}>"  # the MJCF is `self.world.xml()`


# ----------------------------------------------------------------- getups ---


def settle(mj_model: mujoco.MjModel, qpos: np.ndarray, seconds: float = SETTLE_SECONDS) -> np.ndarray:
    """qpos [nq] after `seconds` of MuJoCo (C) physics from rest under zero control -> [nq]."""
    data = mujoco.MjData(mj_model)
    data.qpos[:] = qpos
    for _ in range(int(round(seconds / mj_model.opt.timestep))):
        mujoco.mj_step(mj_model, data)
    return data.qpos.copy()


def _hinge_ranges(mj_model: mujoco.MjModel):
    """qpos indices [k] of the hinge joints and their (low, high) [k] (+-inf where unlimited)."""
    hinge = [j for j in range(mj_model.njnt) if mj_model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    idx = np.array([mj_model.jnt_qposadr[j] for j in hinge])
    limited = np.array([bool(mj_model.jnt_limited[j]) for j in hinge])
    low = np.where(limited, mj_model.jnt_range[hinge, 0], -np.inf)
    high = np.where(limited, mj_model.jnt_range[hinge, 1], np.inf)
    return idx, low, high


class HingeNoise(NamedTuple):
    """The reset's joint noise: U(-JOINT_NOISE, JOINT_NOISE) on the hinge joints at qpos index >= first."""

    idx: jax.Array
    low: jax.Array
    high: jax.Array

    @classmethod
    def of(cls, mj_model: mujoco.MjModel, first: int = 0) -> "HingeNoise":
        idx, low, high = _hinge_ranges(mj_model)
        keep = idx >= first
        return cls(jnp.asarray(idx[keep]), jnp.asarray(low[keep], jnp.float32), jnp.asarray(high[keep], jnp.float32))

    def apply(self, qpos: jax.Array, key: jax.Array) -> jax.Array:
        """qpos [nq] with the noise on the hinges, clipped to their ranges -> [nq]."""
        joints = qpos[self.idx]
        noise = jax.random.uniform(key, joints.shape, minval=-JOINT_NOISE, maxval=JOINT_NOISE)
        return qpos.at[self.idx].set(jnp.clip(joints + noise, self.low, self.high))


class _GetupMixin:
    """Supine reset, root height in the observation and the App. A.1 reward (see module docstring).

    A subclass sets `_target` and `_sparse` and implements `_root_height(data)`
    and `_supine_guess()` (a qpos on the back, just above the floor).
    """

    _target: float
    _sparse: bool

    def _init_getup(self, first_joint_qpos: int) -> None:
        """Settles the supine pose; the noise goes to the hinges at qpos index >= first_joint_qpos
        (the walker's root pitch `rooty` is a hinge too, but it is no joint of the body)."""
        self._supine_qpos = jnp.asarray(settle(self.mj_model, self._supine_guess()), jnp.float32)
        self._noise = HingeNoise.of(self.mj_model, first_joint_qpos)

    def initial_qpos(self, key: jax.Array) -> jax.Array:
        """The settled supine qpos [nq] with U(-JOINT_NOISE, JOINT_NOISE) on the hinge joints (clipped to range)."""
        return self._noise.apply(self._supine_qpos, key)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key = jax.random.split(rng)
        qpos = self.initial_qpos(key)
        data = mjx_env.make_data(self.mj_model, qpos=qpos, impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        data = mjx.forward(self.mjx_model, data)
        info = {"rng": rng}
        reward, done = jnp.zeros(2)
        metrics = {"root_height": self._root_height(data)}
        return mjx_env.State(data, self._get_obs(data, info), reward, done, metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        z = self._root_height(data)
        reward = getup.getup_reward(z, self._target, self._sparse).astype(jnp.float32)
        metrics = {**state.metrics, "root_height": z}
        return mjx_env.State(data, self._get_obs(data, state.info), reward, _nan_done(data), metrics, state.info)

    def _get_obs(self, data: mjx.Data, info: Dict[str, Any]) -> jax.Array:
        return jnp.concatenate([super()._get_obs(data, info), self._root_height(data).reshape(1)])


def humanoid_getup_config() -> config_dict.ConfigDict:
    config = humanoid.default_config()
    config.episode_length = getup.EPISODE_LENGTH
    return config


def walker_getup_config() -> config_dict.ConfigDict:
    config = walker.default_config()
    config.episode_length = getup.EPISODE_LENGTH
    return config


class HumanoidGetup(_GetupMixin, humanoid.Humanoid):
    """DM Control humanoid from supine; obs [68] = the humanoid's 67 + torso z, action [21]."""

    def __init__(self, sparse: bool = False, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(0.0, config if config is not None else humanoid_getup_config(), config_overrides)
        self._target, self._sparse = getup.HUMANOID_TARGET_HEIGHT, bool(sparse)
        self._init_getup(7)  # after the free joint

    def _supine_guess(self) -> np.ndarray:
        qpos = self.mj_model.qpos0.copy()
        qpos[2] = 0.2  # the torso's capsules are 7 cm thick, the butt's 9 cm
        qpos[3:7] = [np.sqrt(0.5), 0.0, -np.sqrt(0.5), 0.0]  # -90 deg about y: front (x) up, head towards -x
        return qpos

    def _root_height(self, data: mjx.Data) -> jax.Array:
        return data.qpos[2]  # the free joint sits at the torso's origin


class WalkerGetup(_GetupMixin, walker.PlanarWalker):
    """DM Control walker from supine; obs [25] = the walker's 24 + torso z, action [6]."""

    def __init__(self, sparse: bool = False, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(0.0, config if config is not None else walker_getup_config(), config_overrides)
        self._target, self._sparse = getup.WALKER_TARGET_HEIGHT, bool(sparse)
        self._torso_z0 = float(self.mj_model.body_pos[self.mj_model.body("torso").id, 2])  # 1.3
        self._init_getup(3)  # after rootz, rootx, rooty

    def _supine_guess(self) -> np.ndarray:
        qpos = self.mj_model.qpos0.copy()
        qpos[0] = 0.1 - self._torso_z0  # rootz: torso 10 cm above the floor
        qpos[2] = -np.pi / 2  # rooty: front (x) up, head towards -x
        return qpos

    def _root_height(self, data: mjx.Data) -> jax.Array:
        return data.qpos[0] + self._torso_z0  # rootz slides the torso from its 1.3 m


# ------------------------------------------------------------------- walk ---


def humanoid_walk_config() -> config_dict.ConfigDict:
    config = humanoid.default_config()
    config.episode_length = walk.EPISODE_LENGTH
    return config


def humanoid_upright_qpos(mj_model: mujoco.MjModel) -> jax.Array:
    """The DM Control humanoid's qpos0 [28] lowered so the feet touch the floor (qpos0 floats them 0.215 m up)."""
    upright = mj_model.qpos0.copy()
    upright[2] = getup.HUMANOID_STAND_HEIGHT
    return jnp.asarray(upright, jnp.float32)


class PoloHumanoidWalk(humanoid.Humanoid):
    """DM Control humanoid starting upright; obs [70] = the humanoid's 67 + root (v_x, y, z), action [21]."""

    def __init__(self, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(0.0, config if config is not None else humanoid_walk_config(), config_overrides)
        self._upright_qpos = humanoid_upright_qpos(self.mj_model)
        self._noise = HingeNoise.of(self.mj_model)

    def initial_qpos(self, key: jax.Array) -> jax.Array:
        """Upright qpos [nq] with U(-JOINT_NOISE, JOINT_NOISE) on the hinge joints (clipped to range)."""
        return self._noise.apply(self._upright_qpos, key)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key = jax.random.split(rng)
        data = mjx_env.make_data(self.mj_model, qpos=self.initial_qpos(key), impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        data = mjx.forward(self.mjx_model, data)
        info = {"rng": rng}
        metrics = {"root_height": data.qpos[2], "speed": data.qvel[0]}
        return mjx_env.State(data, self._get_obs(data, info), jnp.zeros(()), jnp.zeros(()), metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        obs = self._get_obs(data, state.info)
        reward = walk.walk_reward(None, action, obs).astype(jnp.float32)
        metrics = {**state.metrics, "root_height": data.qpos[2], "speed": data.qvel[0]}
        return mjx_env.State(data, obs, reward, _nan_done(data), metrics, state.info)

    def _get_obs(self, data: mjx.Data, info: Dict[str, Any]) -> jax.Array:
        """The humanoid's 67 + the root's world-frame forward velocity, lateral position and height."""
        root = jnp.stack([data.qvel[0], data.qpos[1], data.qpos[2]])  # free joint: world-frame velocity
        return jnp.concatenate([super()._get_obs(data, info), root])


# ----------------------------------------------------------- reorientation ---


def finger_reorient_config() -> config_dict.ConfigDict:
    config = finger.default_config()
    config.episode_length = reorient.EPISODE_LENGTH
    return config


class FingerReorient(finger.Turn):
    """DM Control finger turning the spinner to a target angle re-drawn every TARGET_PERIOD steps.

    obs [12] (DM Control's finger: the tip's and the target's (x, z) relative to the hinge among them),
    action [2], reward envs/reorient.py. info["target_steps"] counts the steps since the last draw and
    info["target_key"] draws the next target; the target itself is the mocap body's position in
    `data.mocap_pos` (envs/snapshots.py keeps it). With planning=True the target is never re-drawn: the
    planner optimises for the present target (App. B: "the trajectory optimizer does not see this
    randomization").
    """

    def __init__(self, planning: bool = False, config: Optional[config_dict.ConfigDict] = None,
                 config_overrides: Optional[Dict[str, Any]] = None):
        super().__init__(reorient.TARGET_RADIUS, config=config if config is not None else finger_reorient_config(),
                         config_overrides=config_overrides)
        self._planning = bool(planning)

    def _with_target(self, data: mjx.Data, key: jax.Array) -> mjx.Data:
        """data with the target (mocap body) at a U(-pi, pi) angle on the spinner tip's circle."""
        angle = jax.random.uniform(key, minval=-jnp.pi, maxval=jnp.pi)
        hinge = data.xanchor[self._hinge_joint_id]
        pos = data.mocap_pos.at[self._target_mocap_body_id, 0].set(hinge[0] + self._radius * jnp.sin(angle))
        pos = pos.at[self._target_mocap_body_id, 2].set(hinge[2] + self._radius * jnp.cos(angle))
        return data.replace(mocap_pos=pos)

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key_state, key_target, key_next = jax.random.split(rng, 4)
        state = super().reset(key_state)
        # FingerTurn's reset moves the target after its forward pass, so its first observation shows a
        # stale target; a second pass makes the sensors see the drawn one.
        data = mjx.forward(self.mjx_model, self._with_target(state.data, key_target))
        info = {"rng": rng, "target_key": key_next, "target_steps": jnp.zeros((), jnp.int32)}
        obs = self._get_obs(data, info)
        metrics = {"in_target": self._in_target(data)}
        return mjx_env.State(data, obs, jnp.zeros(()), jnp.zeros(()), metrics, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        """Re-draws the target first when TARGET_PERIOD steps have passed (never when planning), then steps."""
        info = dict(state.info)
        data = state.data
        if not self._planning:
            redraw = state.info["target_steps"] >= reorient.TARGET_PERIOD
            key, sub = jax.random.split(state.info["target_key"])
            data = data.replace(mocap_pos=jnp.where(redraw, self._with_target(data, sub).mocap_pos, data.mocap_pos))
            info["target_key"] = jnp.where(redraw, key, state.info["target_key"])
            info["target_steps"] = jnp.where(redraw, 0, state.info["target_steps"])
        info["target_steps"] = info["target_steps"] + 1
        data = mjx_env.step(self.mjx_model, data, action, self.n_substeps)
        obs = self._get_obs(data, info)
        reward = reorient.reorient_reward(None, action, obs).astype(jnp.float32)
        metrics = {**state.metrics, "in_target": self._in_target(data)}
        return mjx_env.State(data, obs, reward, _nan_done(data), metrics, info)

    def _in_target(self, data: mjx.Data) -> jax.Array:
        """1 while the tip is inside the target sphere (FingerTurn's sparse success), else 0."""
        return (self._dist_to_target(data) <= 0.0).astype(jnp.float32)


def make(name: str, impl: str = "jax", episode_length: Optional[int] = None, planning: bool = False) -> mjx_env.MjxEnv:
    """One of ALL_TASKS with MJX backend `impl` ("jax" or "warp").

    planning: the task as a planner's model sees it, without its unmodelled disturbances (FingerReorient's
    target re-draws); the other tasks have none and ignore it.
    """
    overrides: Dict[str, Any] = {"impl": impl}
    if episode_length is not None:
        overrides["episode_length"] = int(episode_length)
    if name == "PoloHumanoidWalk":
        return PoloHumanoidWalk(config_overrides=overrides)
    if name == "FingerReorient":
        return FingerReorient(planning=planning, config_overrides=overrides)
    if name in POINT_MASS_TASKS:
        return PointMassWorld(pmw.get_world(name), config_overrides=overrides)
    if name in ("HumanoidGetup", "HumanoidGetupSparse"):
        return HumanoidGetup(sparse=name.endswith("Sparse"), config_overrides=overrides)
    if name in ("WalkerGetup", "WalkerGetupSparse"):
        return WalkerGetup(sparse=name.endswith("Sparse"), config_overrides=overrides)
    raise KeyError(f"unknown POLO task '{name}'; known: {', '.join(ALL_TASKS)}")
