"""Env registry: a static table of specs and `make_env(name)` for every family.

`ENV_SPECS` is written out by hand from measurements (see tests/test_envs.py,
which checks the DM Control rows against the loaded envs), so listing envs
imports no simulator. Families:

- "dm_control": the 25 MuJoCo Playground DM Control suite tasks (MJX, impl
  "jax" or "warp"); episode_length 1000 control steps; done only on NaN.
- "brax": Brax gym-style tasks on the MJX pipeline, adapted to the Playground
  State (`pipeline_state` becomes `data`).
- "toy": `toy_reach`, a tiny pure-JAX task (mjxmbrl/envs/toy.py).
- "polo": the tasks of POLO (Lowrey et al. 2019, arXiv:1811.01848), our own
  MJX envs (mjxmbrl/envs/polo_envs.py; impl "jax" or "warp"): the reward-free
  point-mass worlds `PointMassBox`, `PointMassMaze` (Sec. 3.1; coverage grid in
  envs/point_mass_worlds.py) and the getups `HumanoidGetup`, `WalkerGetup`
  and their *Sparse variants (App. A.1; rewards in envs/getup.py); done only on NaN.
- "byravan": the tasks of Byravan et al. 2022 (arXiv:2110.03363), our own MJX envs
  (mjxmbrl/envs/byravan_envs.py; impl "jax" or "warp"): `AntWalkForward` and
  `AntWalkBackward`, an 8-DoF ant in a corridor (App. A.1; observation layout,
  reward and the closed-form task observation in envs/ant_walk.py), and `AntGTTP`,
  the same ant going to target poses on a plane (App. A.2; envs/ant_gttp.py); done only on NaN. The
  high-DoF body's (envs/byravan_humanoid.py, the DM Control humanoid for the paper's OP3):
  `HumanoidWalkForward`, `HumanoidWalkBackward` and `HumanoidGTTP` (envs/humanoid_tasks.py); done on a
  fall (torso below 0.8 m), as the OP3's tasks.

Each task has one `EnvSpec`: its sizes, control step, episode length, whether
it terminates, its observation groups (envs/groups.py: the per-group MLP model
and the task-agnostic proposal read them) and its known reward
`reward_fn(obs, action, next_obs)` (envs/rewards.py: planners may score
predicted observations with it; None where the task has none).

Every env from `make_env` is unbatched with `reset(key) -> State`,
`step(state, action) -> State` (State = `mujoco_playground._src.mjx_env.State`)
and attributes `observation_size`, `action_size`, `dt`, `spec`. With
`pixels=True` the observation is the task's rendered frame (envs/pixels.py)
and the spec is `pixel_spec`'s; `config_spec(env_cfg)` is the spec of the env
an env config builds.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import jax

if TYPE_CHECKING:  # importing Playground/MJX takes seconds; listing envs must not
    from mujoco_playground._src.mjx_env import State

from mjxmbrl.envs import ant_gttp, ant_walk, getup, reorient, toy, walk
from mjxmbrl.envs import humanoid_tasks as ht
from mjxmbrl.envs import point_mass_worlds as pmw
from mjxmbrl.envs.groups import OBS_GROUPS, TASK_GROUPS, ObsGroup
from mjxmbrl.envs.rewards import KNOWN_REWARDS
from mjxmbrl.types import MjxmbrlError

IMPLS = ("jax", "warp")


class EnvSpec(NamedTuple):
    """Static facts about a task. episode_length is in control steps, ctrl_dt in seconds."""

    name: str
    family: str  # "dm_control" | "brax" | "toy" | "polo" | "byravan"
    obs_size: int
    action_size: int
    episode_length: int
    ctrl_dt: float
    has_termination: bool
    obs_groups: Tuple[ObsGroup, ...] = ()  # contiguous observation slices (Byravan et al. 2022, App. C); () if none
    reward_fn: Optional[Callable[..., jax.Array]] = None  # known reward (obs, action, next_obs) -> [], per control step

    @property
    def task_groups(self) -> Tuple[ObsGroup, ...]:
        """The task-specific groups (targets, goals) a task-agnostic proposal must not see."""
        return tuple(g for g in self.obs_groups if g.name in TASK_GROUPS)


def _dm(name: str, obs: int, act: int, dt: float) -> EnvSpec:
    # DM Control tasks only set done on NaN physics: no task termination.
    return EnvSpec(name, "dm_control", obs, act, 1000, dt, False)


def _brax(name: str, obs: int, act: int, dt: float, term: bool) -> EnvSpec:
    return EnvSpec(name, "brax", obs, act, 1000, dt, term)


def _polo(name: str, obs: int, act: int, length: int, dt: float, reward_fn: Callable[..., jax.Array]) -> EnvSpec:
    # Reward known exactly from the observation (0, or the root height); done only on NaN physics.
    return EnvSpec(name, "polo", obs, act, length, dt, False, reward_fn=reward_fn)


def _byravan(name: str) -> EnvSpec:
    # The walking ant's reward (Eq. 5) is exact from the observation; done only on NaN physics.
    return EnvSpec(name, "byravan", ant_walk.OBS_SIZE, ant_walk.ACTION_SIZE, ant_walk.EPISODE_LENGTH, ant_walk.CTRL_DT,
                   False, reward_fn=ant_walk.walk_reward)


# The go-to-target-pose ant's known reward is the planner's (Eq. 16), correlated with but not equal to the
# task's (Eq. 6-10: simulator bodies and a bonus after 10 steps held), which no observation determines.
_ANT_GTTP = EnvSpec("AntGTTP", "byravan", ant_gttp.OBS_SIZE, ant_walk.ACTION_SIZE, ant_walk.EPISODE_LENGTH,
                    ant_walk.CTRL_DT, False, reward_fn=ant_gttp.planner_reward)

# The humanoid's tasks end on a fall (the OP3's do); walking's reward is exact, GTTP's known reward the planner's (Eq. 15).
_HUMANOID_TASKS = (
    *(EnvSpec(name, "byravan", ht.WALK_OBS_SIZE, ht.ACTION_SIZE, ht.EPISODE_LENGTH, ht.CTRL_DT, True,
              reward_fn=ht.walk_reward) for name in ht.DIRECTIONS),
    EnvSpec("HumanoidGTTP", "byravan", ht.GTTP_OBS_SIZE, ht.ACTION_SIZE, ht.EPISODE_LENGTH, ht.CTRL_DT, True,
            reward_fn=ht.planner_reward),
)


_SPEC_LIST = [
    # Measured with mujoco_playground.registry.load(name, config_overrides={"impl": "jax"}).
    _dm("AcrobotSwingup", 6, 1, 0.01),
    _dm("AcrobotSwingupSparse", 6, 1, 0.01),
    _dm("BallInCup", 8, 2, 0.02),
    _dm("CartpoleBalance", 5, 1, 0.01),
    _dm("CartpoleBalanceSparse", 5, 1, 0.01),
    _dm("CartpoleSwingup", 5, 1, 0.01),
    _dm("CartpoleSwingupSparse", 5, 1, 0.01),
    _dm("CheetahRun", 17, 6, 0.01),
    _dm("FingerSpin", 9, 2, 0.02),
    _dm("FingerTurnEasy", 12, 2, 0.02),
    _dm("FingerTurnHard", 12, 2, 0.02),
    _dm("FishSwim", 24, 5, 0.04),
    _dm("HopperHop", 15, 4, 0.02),
    _dm("HopperStand", 15, 4, 0.02),
    _dm("HumanoidRun", 67, 21, 0.025),
    _dm("HumanoidStand", 67, 21, 0.025),
    _dm("HumanoidWalk", 67, 21, 0.025),
    _dm("PendulumSwingup", 3, 1, 0.02),
    _dm("PointMass", 4, 2, 0.02),
    _dm("ReacherEasy", 6, 2, 0.02),
    _dm("ReacherHard", 6, 2, 0.02),
    _dm("SwimmerSwimmer6", 25, 5, 0.03),
    _dm("WalkerRun", 24, 6, 0.025),
    _dm("WalkerStand", 24, 6, 0.025),
    _dm("WalkerWalk", 24, 6, 0.025),
    # Measured with brax.envs.get_environment(name, backend="mjx"), default kwargs.
    # Termination: the "healthy" checks of ant/hopper/walker2d/humanoid.
    _brax("ant", 27, 8, 0.05, True),
    _brax("halfcheetah", 17, 6, 0.05, False),
    _brax("hopper", 11, 3, 0.008, True),
    _brax("humanoid", 244, 17, 0.015, True),
    _brax("walker2d", 17, 6, 0.008, True),
    # Deviation: brax 0.14.2 swimmer does not support backend "mjx"; it runs on
    # Brax's "generalized" pipeline, so its `State.data` is a Brax pipeline state,
    # not mjx.Data (the MJX oracle model cannot use it).
    _brax("swimmer", 8, 2, 0.04, False),
    EnvSpec("toy_reach", "toy", toy.OBS_SIZE, toy.ACTION_SIZE, toy.EPISODE_LENGTH, toy.DT, True),
    # POLO tasks, measured with mjxmbrl.envs.polo_envs.make(name, impl="jax") (tests/test_envs.py).
    # The getup observations are the DM Control ones plus the root height (last entry), the walk's plus (v_x, y, z).
    _polo("PointMassBox", pmw.OBS_SIZE, pmw.ACTION_SIZE, pmw.EPISODE_LENGTH, pmw.CTRL_DT, pmw.zero_reward),
    _polo("PointMassMaze", pmw.OBS_SIZE, pmw.ACTION_SIZE, pmw.EPISODE_LENGTH, pmw.CTRL_DT, pmw.zero_reward),
    _polo("HumanoidGetup", 68, 21, getup.EPISODE_LENGTH, 0.025, getup.humanoid_getup_reward),
    _polo("HumanoidGetupSparse", 68, 21, getup.EPISODE_LENGTH, 0.025, getup.humanoid_getup_sparse_reward),
    _polo("WalkerGetup", 25, 6, getup.EPISODE_LENGTH, 0.025, getup.walker_getup_reward),
    _polo("WalkerGetupSparse", 25, 6, getup.EPISODE_LENGTH, 0.025, getup.walker_getup_sparse_reward),
    _polo("PoloHumanoidWalk", walk.OBS_SIZE, 21, walk.EPISODE_LENGTH, 0.025, walk.walk_reward),
    _polo("FingerReorient", reorient.OBS_SIZE, reorient.ACTION_SIZE, reorient.EPISODE_LENGTH, 0.02, reorient.reorient_reward),
    # Byravan et al. 2022 tasks, measured with mjxmbrl.envs.byravan_envs.make(name, impl="jax") (tests/test_envs.py).
    *(_byravan(name) for name in ant_walk.DIRECTIONS),
    _ANT_GTTP,
    *_HUMANOID_TASKS,
]

ENV_SPECS: Dict[str, EnvSpec] = {
    spec.name: spec._replace(obs_groups=OBS_GROUPS.get(spec.name, ()), reward_fn=KNOWN_REWARDS.get(spec.name, spec.reward_fn))
    for spec in _SPEC_LIST
}

_BRAX_BACKEND = {"swimmer": "generalized"}  # all others: "mjx"


def list_env_specs() -> List[EnvSpec]:
    """All specs, sorted by family then name."""
    return sorted(ENV_SPECS.values(), key=lambda s: (s.family, s.name))


def get_spec(name: str) -> EnvSpec:
    """The spec of `name`; unknown names raise MjxmbrlError with a suggestion."""
    if name in ENV_SPECS:
        return ENV_SPECS[name]
    names = list(ENV_SPECS)
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.4)
    hint = f" Did you mean '{lowered[close[0]]}'?" if close else ""
    raise MjxmbrlError(f"unknown env '{name}'.{hint} Run `mjxmbrl list envs` to list them all.")


class _Adapter:
    """Base for env adapters: forwards unknown attributes to the wrapped env."""

    def __init__(self, env: Any, spec: EnvSpec):
        self.env = env
        self.spec = spec

    @property
    def unwrapped(self) -> Any:
        return self.env

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":  # not yet set (e.g. during unpickling)
            raise AttributeError(attr)
        return getattr(self.env, attr)


class PlaygroundEnv(_Adapter):
    """A Playground MjxEnv with a `spec`; reset/step pass straight through."""

    def reset(self, key: jax.Array) -> State:
        return self.env.reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        return self.env.step(state, action)

    @property
    def observation_size(self) -> int:
        return self.spec.obs_size

    @property
    def action_size(self) -> int:
        return self.spec.action_size

    @property
    def dt(self) -> float:
        return float(self.env.dt)


class BraxEnv(_Adapter):
    """A Brax env whose State is converted to/from the Playground State.

    Brax `pipeline_state` <-> Playground `data`; obs, reward, done, metrics and
    info map one to one.
    """

    def reset(self, key: jax.Array) -> State:
        return self._to_playground(self.env.reset(key))

    def step(self, state: State, action: jax.Array) -> State:
        return self._to_playground(self.env.step(self._to_brax(state), action))

    @staticmethod
    def _to_playground(s: Any) -> State:
        from mujoco_playground._src.mjx_env import State

        return State(data=s.pipeline_state, obs=s.obs, reward=s.reward, done=s.done, metrics=dict(s.metrics), info=dict(s.info))

    @staticmethod
    def _to_brax(s: State) -> Any:
        from brax.envs.base import State as BraxState

        return BraxState(pipeline_state=s.data, obs=s.obs, reward=s.reward, done=s.done, metrics=dict(s.metrics), info=dict(s.info))


def config_spec(env_cfg: Any) -> EnvSpec:
    """The spec of the env `env_cfg` (an EnvConfig) builds: `get_spec(name)`, with pixel observations if env.pixels."""
    spec = get_spec(env_cfg.name)
    if getattr(env_cfg, "pixels", False):
        from mjxmbrl.envs.pixels import pixel_spec

        spec = pixel_spec(spec, env_cfg.image_size)
    return spec


def make_env(
    name: str,
    impl: str = "jax",
    episode_length: Optional[int] = None,
    pixels: bool = False,
    image_size: int = 64,
    bit_depth: int = 5,
    planning: bool = False,
) -> Any:
    """Builds one unbatched env by name.

    Args:
      name: a key of ENV_SPECS.
      impl: MJX backend for Playground, POLO and Byravan tasks, "jax" or "warp" (Brax tasks: "jax"
        only; the pure-JAX toy ignores it).
      episode_length: overrides spec.episode_length (control steps). The env
        itself does not enforce it; `make_vector_env` does.
      pixels: the observation is the rendered frame, image_size x image_size RGB
        quantised to bit_depth bits and flattened (envs/pixels.py); DM Control,
        POLO and Byravan tasks only.
      planning: the task as a planner's simulator sees it, without unmodelled disturbances (POLO's
        FingerReorient keeps its target; every other task is the same either way).
    Returns:
      An env with reset(key) -> State, step(state, action [A]) -> State,
      observation_size, action_size, dt (control step, s) and spec.
    """
    if impl not in IMPLS:
        raise MjxmbrlError(f"unknown impl '{impl}': expected one of {', '.join(IMPLS)}")
    spec = get_spec(name)
    if episode_length is not None:
        if int(episode_length) <= 0:
            raise MjxmbrlError(f"episode_length must be positive, got {episode_length}")
        spec = spec._replace(episode_length=int(episode_length))
    if pixels:
        from mjxmbrl.envs.pixels import wrap_pixels

        return wrap_pixels(make_env(name, impl, episode_length), image_size, bit_depth)
    if spec.family == "toy":
        return toy.ToyReach(spec)
    if spec.family == "dm_control":
        from mujoco_playground import registry as pg_registry

        overrides: Dict[str, Any] = {"impl": impl}
        if episode_length is not None:
            overrides["episode_length"] = spec.episode_length
        return PlaygroundEnv(pg_registry.load(name, config_overrides=overrides), spec)
    if spec.family == "polo":
        from mjxmbrl.envs import polo_envs

        return PlaygroundEnv(polo_envs.make(name, impl=impl, episode_length=spec.episode_length, planning=planning), spec)
    if spec.family == "byravan":
        from mjxmbrl.envs import byravan_envs

        return PlaygroundEnv(byravan_envs.make(name, impl=impl, episode_length=spec.episode_length), spec)
    if spec.family == "brax":
        if impl != "jax":
            raise MjxmbrlError(f"env '{name}' is a Brax task and supports impl 'jax' only, got '{impl}'")
        import brax.envs

        backend = _BRAX_BACKEND.get(name, "mjx")
        return BraxEnv(brax.envs.get_environment(name, backend=backend), spec)
    raise MjxmbrlError(f"env '{name}' has unknown family '{spec.family}'")  # unreachable for the static table
