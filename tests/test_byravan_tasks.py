"""Byravan et al. 2022 (arXiv:2110.03363) walking tasks: the ant's corridor, its egocentric observation and
Eq. 5's reward, and the closed-form integration of the target direction (App. C.2) against the simulator and
inside the per-group MLP model."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import ENV_SPECS, ant_walk, make_env
from mjxmbrl.envs.groups import ObsGroup

TASKS = ("AntWalkForward", "AntWalkBackward")


def test_walk_reward_hand_computed():
    # Eq. 5: the torso's velocity (obs 16:19) along the target direction (obs 37:40), both egocentric.
    obs = jnp.zeros((3, ant_walk.OBS_SIZE))
    obs = obs.at[:, 16:19].set(jnp.array([[1.0, 2.0, 0.0], [1.0, 2.0, 3.0], [-0.5, 0.0, 0.0]]))
    obs = obs.at[:, 37:40].set(jnp.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-1.0, 0.0, 0.0]]))
    for name in TASKS:
        reward = ENV_SPECS[name].reward_fn(obs + 9.0, jnp.ones((3, 8)), obs)
        np.testing.assert_allclose(reward, [1.0, 2.2, 0.5], atol=1e-6)


def test_specs_groups_and_task_group():
    for name in TASKS:
        spec = ENV_SPECS[name]
        assert spec.family == "byravan" and (spec.obs_size, spec.action_size) == (40, 8)
        assert spec.ctrl_dt == 0.02 and not spec.has_termination
        assert [g.name for g in spec.task_groups] == ["target_direction"]
        proprio = sum(g.size for g in spec.obs_groups if g not in spec.task_groups)
        assert proprio == ant_walk.PROPRIO_SIZE == 37  # the paper's ant: 37 proprioceptive entries
        (direction,) = spec.task_groups
        assert direction.rotated_by == ant_walk.ANGULAR_VELOCITY.start


def _forward(env, qpos, qvel):
    """The env's observation [40] of a MuJoCo (C) forward pass at qpos, qvel."""
    import mujoco
    from mujoco import mjx

    model = env.unwrapped.mj_model
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    return np.asarray(env.unwrapped._get_obs(mjx.put_data(model, data, impl="jax"))), data


@pytest.mark.parametrize("name,sign", [("AntWalkForward", 1.0), ("AntWalkBackward", -1.0)])
def test_observation_is_egocentric(name, sign, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = make_env(name, impl="jax")
    yaw = 0.4
    qpos, _ = jax.jit(env.unwrapped.initial_qpos_qvel)(jax.random.PRNGKey(3))
    qpos = np.asarray(qpos).copy()
    qpos[3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    qvel = np.zeros(14)
    qvel[:3] = [1.0, 0.0, 0.0]  # world-frame velocity along +x
    qvel[3:6] = [0.1, -0.2, 0.3]  # body-frame angular velocity
    qvel[6:] = np.arange(8) / 10.0
    obs, data = _forward(env, qpos, qvel)
    turned = [np.cos(yaw), -np.sin(yaw), 0.0]  # world +x seen from a torso turned by yaw
    np.testing.assert_allclose(obs[ant_walk.JOINT_ANGLES], qpos[7:], atol=1e-6)
    np.testing.assert_allclose(obs[ant_walk.JOINT_VELOCITIES], qvel[6:], atol=1e-6)
    np.testing.assert_allclose(obs[ant_walk.LINEAR_VELOCITY], turned, atol=1e-5)
    np.testing.assert_allclose(obs[ant_walk.ANGULAR_VELOCITY], qvel[3:6], atol=1e-6)
    np.testing.assert_allclose(obs[ant_walk.UP], [0.0, 0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(obs[ant_walk.TARGET_DIRECTION], sign * np.asarray(turned), atol=1e-5)
    assert float(ant_walk.walk_reward(None, None, jnp.asarray(obs))) == pytest.approx(sign, abs=1e-5)
    # The feet, in the torso's frame: below it, one per quadrant of the body's (x, y).
    feet = obs[ant_walk.FEET].reshape(4, 3)
    assert np.all(feet[:, 2] < -0.2)
    np.testing.assert_array_equal(np.sign(feet[:, :2]), [[1, 1], [-1, 1], [-1, -1], [1, -1]])


def test_reset_stands_in_the_corridor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import mujoco

    env = make_env("AntWalkForward", impl="jax")
    base = env.unwrapped
    qpos, qvel = jax.jit(jax.vmap(base.initial_qpos_qvel))(jax.random.split(jax.random.PRNGKey(0), 8))
    qpos, qvel = np.asarray(qpos), np.asarray(qvel)
    yaw = 2 * np.arctan2(qpos[:, 6], qpos[:, 3])
    assert np.abs(yaw).max() <= 0.3 + 1e-6 and yaw.std() > 0.05
    assert qvel.std() > 0.05
    model = copy.deepcopy(base.mj_model)
    low, high = model.jnt_range[1:, 0], model.jnt_range[1:, 1]
    assert np.all((qpos[:, 7:] >= low - 1e-6) & (qpos[:, 7:] <= high + 1e-6))
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[0]
    mujoco.mj_forward(model, data)
    feet_z = [data.geom_xpos[model.geom(g).id, 2] for g in ("front_left_foot", "front_right_foot",
                                                           "back_left_foot", "back_right_foot")]
    assert max(feet_z) < 0.3 and data.xpos[model.body("torso").id, 2] == pytest.approx(0.55)


@pytest.fixture(scope="module")
def ant_rollout():
    """States [T, 2] of AntWalkForward under random actions, with its initial State, 40 control steps."""
    from mjxmbrl.envs import make_vector_env

    env = make_vector_env("AntWalkForward", 2, impl="jax", auto_reset=False)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (40, 2, 8), minval=-1, maxval=1)

    def run(key, actions):
        state = env.reset(key)
        return state, jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)[1]

    key = jax.random.PRNGKey(0)
    state0, traj = compile_fast(run, key, actions)(key, actions)
    obs = np.concatenate([np.asarray(state0.obs)[None], np.asarray(traj.obs)])  # [T + 1, 2, 40]
    return obs, np.asarray(traj.reward), actions


def test_env_reward_matches_the_known_reward(ant_rollout):
    obs, reward, actions = ant_rollout
    assert np.all(np.isfinite(obs))
    spec = ENV_SPECS["AntWalkForward"]
    np.testing.assert_allclose(np.asarray(spec.reward_fn(obs[:-1], actions, obs[1:])), reward, atol=1e-6)
    assert np.abs(reward).max() > 0.05  # the random ant moves


def test_target_direction_integrates_in_closed_form(ant_rollout):
    """App. C.2: e_{t+1} = Rot(-w dt) e_t from the angular velocities alone tracks the simulator's target direction."""
    obs = ant_rollout[0]
    e, w = obs[..., ant_walk.TARGET_DIRECTION], obs[..., ant_walk.ANGULAR_VELOCITY]
    one_step = np.asarray(ant_walk.rotate_egocentric(e[:-1], 0.5 * (w[:-1] + w[1:]), ant_walk.CTRL_DT))
    reversed_turn = np.asarray(ant_walk.rotate_egocentric(e[:-1], -0.5 * (w[:-1] + w[1:]), ant_walk.CTRL_DT))
    error, unchanged = np.abs(one_step - e[1:]).mean(), np.abs(e[:-1] - e[1:]).mean()
    assert unchanged > 0.005  # the random ant turns: keeping e_t would be wrong ...
    assert error < 0.25 * unchanged  # ... rotating it is right to within a quarter of that (impacts
    assert np.abs(reversed_turn - e[1:]).mean() > unchanged  # inside a step change w), the other way is worse
    integrated = e[0]
    for t in range(len(e) - 1):  # chained over the whole rollout, as a planner does
        integrated = np.asarray(ant_walk.rotate_egocentric(integrated, 0.5 * (w[t] + w[t + 1]), ant_walk.CTRL_DT))
    drift, moved = np.abs(integrated - e[-1]).max(), np.abs(e[0] - e[-1]).max()
    assert drift < 0.25 * moved, (drift, moved)


def test_rotation_is_exact_for_a_constant_turn():
    # A body yawing at w_z for dt sees a world-fixed x axis turn by -w_z dt about its z axis.
    e = jnp.array([1.0, 0.0, 0.0])
    turned = ant_walk.rotate_egocentric(e, jnp.array([0.0, 0.0, 2.0]), 0.25)
    np.testing.assert_allclose(turned, [np.cos(0.5), -np.sin(0.5), 0.0], atol=1e-6)
    np.testing.assert_allclose(ant_walk.rotate_egocentric(e, jnp.zeros(3), 0.25), e, atol=1e-7)
    # Gradients stay finite at and near w = 0 (planners and the model's loss differentiate through it).
    for w in (jnp.zeros(3), jnp.array([1e-6, 0.0, 0.0]), jnp.array([0.0, 3.0, -1.0])):
        jac = jax.jacobian(lambda w: ant_walk.rotate_egocentric(e, w, 0.25))(w)
        assert np.all(np.isfinite(np.asarray(jac))) and np.abs(np.asarray(jac)).max() < 1.0
    np.testing.assert_allclose(jax.jacobian(lambda w: ant_walk.rotate_egocentric(e, w, 0.25))(jnp.zeros(3))[:, 2],
                               [0.0, -0.25, 0.0], atol=1e-6)  # d e / d w_z = -dt (z x e) = (0, -dt, 0)


def test_mlp_model_rotates_the_task_group_without_a_network():
    from mjxmbrl.models.mlp import MLPModelConfig, check_groups, make_mlp_model

    groups = ENV_SPECS["AntWalkForward"].obs_groups
    model = make_mlp_model(MLPModelConfig(hidden_sizes=(32,)), 40, 8, 0.02, groups)
    params = model.init(jax.random.PRNGKey(0))
    assert "target_direction" not in params["net"]["dynamics"]["params"]
    assert "angular_velocity" in params["net"]["dynamics"]["params"]
    obs = jax.random.normal(jax.random.PRNGKey(1), (40,))
    obs = obs.at[37:40].set(jnp.array([0.6, 0.8, 0.0]))
    action = jnp.full((8,), 0.3)
    nxt = model.step(params, obs, action, None)
    w = 0.5 * (obs[19:22] + nxt[19:22])  # the observed and the predicted angular velocity
    np.testing.assert_allclose(nxt[37:40], ant_walk.rotate_egocentric(obs[37:40], w, 0.02), atol=1e-6)
    assert float(jnp.linalg.norm(nxt[37:40])) == pytest.approx(1.0, abs=1e-5)
    bad = tuple(g if g.name != "target_direction" else ObsGroup(g.name, g.start, g.stop, rotated_by=37) for g in groups)
    with pytest.raises(ValueError, match="angular velocity"):
        check_groups(bad, 40)
