"""Byravan et al. 2022 (arXiv:2110.03363, App. A) on the high-DoF body, the DM Control humanoid standing in for
the OP3: the walking and go-to-target-pose rewards against hand-computed cases, the OP3's one-step bonus and
curriculum, the egocentric observation, the fall that ends an episode, and the closed-form task groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import ENV_SPECS, ant_gttp, make_env
from mjxmbrl.envs import humanoid_tasks as ht

DT = 0.025


def test_walk_reward_hand_computed():
    obs = jnp.zeros((2, ht.WALK_OBS_SIZE))
    obs = obs.at[:, ht.LINEAR_VELOCITY].set(jnp.array([[1.5, 0.2, 0.0], [0.3, -0.4, 0.1]]))
    obs = obs.at[:, ht.TARGET_DIRECTION].set(jnp.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    obs = obs.at[1, ht.JOINT_ANGLES].set(0.5)  # |q|^2 = 21 * 0.25
    reward = ENV_SPECS["HumanoidWalkForward"].reward_fn(obs + 3.0, jnp.ones((2, 21)), obs)  # reads next_obs only
    np.testing.assert_allclose(reward, [1.5 + 0.1, 0.4 + 0.1 * np.exp(-2 * 0.25)], rtol=1e-6)


def _target(origin, yaw=0.0, velocities=None):
    shape = np.linspace(-0.5, 0.5, 45).reshape(15, 3)
    rot = np.asarray(ant_gttp.yaw_matrix(jnp.asarray(yaw)))
    origin = np.asarray(origin, np.float32)
    return ht.Target(joints=jnp.zeros(21), velocities=jnp.zeros(21) if velocities is None else velocities,
                     root=jnp.asarray(origin), bodies=jnp.asarray(origin + shape @ rot.T, jnp.float32),
                     rotations=jnp.asarray(np.broadcast_to(rot, (16, 3, 3)), jnp.float32),
                     com=jnp.asarray(origin + np.array([0.0, 0.0, -0.2]), jnp.float32))


def test_dense_reward_hand_computed():
    target = _target([1.0, 2.0, 1.2])
    same = (target.root, target.bodies, target.rotations, target.com, jnp.zeros(21))
    assert float(ht.dense_reward(target, *same)) == pytest.approx(0.6 * 1.9 + 0.4, abs=1e-5)
    # Shifted by 0.1 m, same shape: d = 0.1, every pose term 1; (m d)^2 = 0.16.
    shift = jnp.array([0.0, 0.1, 0.0])
    moved = ht.dense_reward(target, target.root + shift, target.bodies + shift, target.rotations, target.com + shift,
                            jnp.zeros(21))
    assert float(moved) == pytest.approx(0.6 * np.exp(-0.16) * 1.9 + 0.4 * np.exp(-0.16 / 0.3), rel=1e-5)
    # In place: joints moving at 1 rad/s (r_vel = exp(-2.1)); the left hand 0.05 m off (r_app = exp(-0.4));
    # the com 0.1 m lower relative to the torso (r_com = exp(-0.4), d = 0.1); every body turned by 0.2 rad.
    turned = _target([1.0, 2.0, 1.2], yaw=0.2)
    bodies = target.bodies.at[ht.END_EFFECTORS[0]].add(jnp.array([0.05, 0.0, 0.0]))
    com = target.com - jnp.array([0.0, 0.0, 0.1])
    value = ht.dense_reward(target, target.root, bodies, turned.rotations, com, jnp.ones(21))
    r_pose = 0.1 * np.exp(-0.4) + np.exp(-2.1) + 0.15 * np.exp(-0.4) + 0.65 * np.exp(-2 * 16 * 0.04)
    assert float(value) == pytest.approx(0.6 * np.exp(-0.16) * r_pose + 0.4 * np.exp(-0.16 / 0.3), rel=1e-5)


def test_planner_reward_hand_computed():
    obs = jnp.zeros((2, ht.GTTP_OBS_SIZE))
    obs = obs.at[1, ht.TARGET_ROOT].set(jnp.array([0.6, 0.8, 0.0]))  # d_root = 1
    obs = obs.at[1, ht.TARGET_JOINTS].set(1.0)  # |dq|^2 = 21 = J
    reward = ENV_SPECS["HumanoidGTTP"].reward_fn(obs + 7.0, jnp.ones((2, 21)), obs)
    near = 0.9 * np.exp(-1.0) + 0.1 * np.exp(-0.1)
    np.testing.assert_allclose(reward, [0.8, 0.5 * near * 0.6 * np.exp(-2.0) + 0.5 * np.exp(-0.1)], rtol=1e-5)


def test_one_step_above_the_threshold_achieves_the_target():
    streak, out = jnp.zeros((), jnp.int32), []
    for dense in (0.6, 0.66, 0.66, 0.64):
        reward, success, streak = ht.sparse_step(jnp.asarray(dense), streak)
        out.append((round(float(reward), 4), bool(success), int(streak)))
    assert out == [(0.6, False, 0), (50.66, True, 0), (50.66, True, 0), (0.64, False, 0)]


def test_targets_follow_the_op3_curriculum():
    pose = {"joints": jnp.zeros(21), "velocities": jnp.zeros(21), "height": jnp.asarray(1.2),
            "bodies": jnp.zeros((15, 3)), "rotations": jnp.broadcast_to(jnp.eye(3), (16, 3, 3)), "com": jnp.zeros(3)}
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    root = jnp.array([3.0, -1.0, 1.0])
    for achieved, (low, high) in ((0, (0.0, 0.0)), (2, (0.025, 0.5)), (9, (0.05, 1.0))):
        targets = jax.vmap(lambda k: ht.place_target(k, root, jnp.asarray(0.0), jnp.asarray(achieved), pose))(keys)
        distance = np.linalg.norm(np.asarray(targets.root[:, :2] - root[:2]), axis=-1)
        assert distance.min() >= low - 1e-6 and distance.max() <= high + 1e-6, achieved
        if achieved == 9:
            assert distance.max() > 0.9 and distance.min() < 0.1  # the whole range is drawn
    np.testing.assert_allclose(targets.root[:, 2], 1.2)


def test_specs_and_groups():
    for name in ("HumanoidWalkForward", "HumanoidWalkBackward", "HumanoidGTTP"):
        spec = ENV_SPECS[name]
        assert spec.family == "byravan" and spec.action_size == 21 and spec.has_termination
        groups = spec.obs_groups
        assert groups[0].start == 0 and groups[-1].stop == spec.obs_size
        assert all(a.stop == b.start for a, b in zip(groups, groups[1:]))
        assert sum(g.size for g in groups if g not in spec.task_groups) == ht.PROPRIO_SIZE
        assert groups[0].velocity == tuple(range(21, 42))  # joint angles integrate the joint velocities
    assert [g.name for g in ENV_SPECS["HumanoidGTTP"].task_groups] == ["target_joints", "target_positions", "target_axes"]


@pytest.fixture(scope="module")
def walk():
    """(unwrapped env, jitted reset, jitted step) of HumanoidWalkBackward."""
    env = make_env("HumanoidWalkBackward", impl="jax").unwrapped
    key = jax.random.PRNGKey(0)
    reset = compile_fast(env.reset, key)
    return env, reset, compile_fast(env.step, reset(key), jnp.zeros(21))


def test_reset_is_upright_and_the_observation_egocentric(walk):
    env, reset, _ = walk
    for seed in range(3):
        state = reset(jax.random.PRNGKey(seed))
        qpos, obs = np.asarray(state.data.qpos), np.asarray(state.obs)
        assert qpos[2] == pytest.approx(1.285) and np.abs(qpos[7:]).max() <= 0.1 + 1e-6
        yaw = 2 * np.arctan2(qpos[6], qpos[3])
        assert abs(yaw) <= 0.3 and abs(yaw) > 1e-3
        # e_target = -x of the world in the torso's frame: (-cos yaw, sin yaw, 0); the world's z axis is up.
        np.testing.assert_allclose(obs[ht.TARGET_DIRECTION], [-np.cos(yaw), np.sin(yaw), 0.0], atol=1e-5)
        np.testing.assert_allclose(obs[ht.UP], [0.0, 0.0, 1.0], atol=1e-5)
        np.testing.assert_allclose(obs[ht.JOINT_ANGLES], qpos[7:], atol=1e-6)
        assert float(state.done) == 0.0


def test_env_reward_is_the_known_reward_and_a_fall_ends_the_episode(walk):
    env, reset, step = walk
    state = reset(jax.random.PRNGKey(4))
    reward_fn = ENV_SPECS["HumanoidWalkBackward"].reward_fn
    heights, dones = [], []
    for _ in range(60):  # no torque: the humanoid collapses
        previous, state = state, step(state, jnp.zeros(21))
        assert float(state.reward) == pytest.approx(float(reward_fn(previous.obs, None, state.obs)), abs=1e-5)
        heights.append(float(state.data.qpos[2]))
        dones.append(float(state.done))
    heights, dones = np.array(heights), np.array(dones)
    assert heights.min() < ht.FALL_HEIGHT and dones.max() == 1.0
    np.testing.assert_array_equal(dones, (heights < ht.FALL_HEIGHT).astype(float))


def _upright_poses(env, count=3):
    """Poses [count, 47] of the upright humanoid with small joint offsets (independent of the shipped file)."""
    qpos = np.tile(np.asarray(env._upright), (count, 1))
    qpos[:, 7:] += np.linspace(-0.05, 0.05, count)[:, None]
    return np.concatenate([qpos[:, 2:], np.zeros((count, 21))], axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def gttp(walk):
    from mjxmbrl.envs.byravan_humanoid import HumanoidGoToTargetPose

    env = HumanoidGoToTargetPose(poses=_upright_poses(walk[0]), config_overrides={"impl": "jax"})
    key = jax.random.PRNGKey(0)
    reset = compile_fast(env.reset, key)
    return env, reset, compile_fast(env.step, reset(key), jnp.zeros(21))


def test_gttp_bonus_new_target_and_closed_form_task_observation(gttp):
    """Scripted: the target set to the humanoid's own pose is achieved on the next step (bonus 50, a new target
    at the curriculum's next distance, observed at once); then the task groups integrate in closed form."""
    from mjxmbrl.models.mlp import integrate_closed_form

    env, reset, step = gttp
    state = reset(jax.random.PRNGKey(1))
    data = state.data
    here = ht.Target(joints=data.qpos[7:], velocities=data.qvel[6:], root=data.xpos[env._torso_body_id],
                     bodies=data.xpos[env._bodies], rotations=data.xmat[env._axis_bodies],
                     com=data.subtree_com[env._torso_body_id])
    state = state.replace(info={**state.info, "target": here})
    state = step(state, jnp.zeros(21))
    assert 50.65 < float(state.reward) < 51.6 and int(state.info["achieved"]) == 1
    new = state.info["target"]
    distance = float(jnp.linalg.norm(new.root[:2] - data.xpos[env._torso_body_id, :2]))
    assert 0.0125 - 0.02 < distance < 0.25 + 0.02  # U[a/4, b/4] after one target
    task = ant_gttp.task_observation(new, state.data.qpos[7:], state.data.xpos[env._torso_body_id],
                                     state.data.xmat[env._torso_body_id])
    np.testing.assert_allclose(state.obs[ht.PROPRIO_SIZE:], task, atol=1e-6)
    # Closed form (App. C.2): 20 steps of random actions with the target out of reach (no new target inside).
    state = state.replace(info={**state.info, "target": new._replace(root=new.root + jnp.array([1.0, 0.5, 0.0]))})
    obs = [np.asarray(state.obs)]
    for action in jax.random.uniform(jax.random.PRNGKey(3), (20, 21), minval=-1, maxval=1):
        state = step(state, action)
        obs.append(np.asarray(state.obs))
    assert int(state.info["achieved"]) == 1
    obs = np.stack(obs)
    groups = ENV_SPECS["HumanoidGTTP"].obs_groups
    predicted = jax.vmap(lambda o, n: integrate_closed_form(groups, o, n, DT))(obs[:-1], obs[1:])
    np.testing.assert_allclose(predicted["target_joints"], obs[1:, ht.TARGET_JOINTS], atol=1e-5)
    for name, sl in (("target_positions", ht.TARGET_POSITIONS), ("target_axes", ht.TARGET_AXES)):
        error = np.abs(np.asarray(predicted[name]) - obs[1:, sl]).mean(-1)  # [T]
        change = np.abs(obs[:-1, sl] - obs[1:, sl]).mean(-1)
        # The median step is right to a fifth of its change; steps where the contacts or the motors jerk the
        # torso inside the five simulation steps are not (measured: median 0.16, mean error 0.3 of the change).
        assert change.mean() > 1e-3 and np.median(error / change) < 0.25, (name, error / change)
        assert error.mean() < 0.4 * change.mean(), (name, error.mean(), change.mean())
    # Without the torso's motion (v = w = 0) the closed form predicts no change: much worse.
    still = obs.copy()
    still[:, ht.LINEAR_VELOCITY] = 0.0
    still[:, ht.ANGULAR_VELOCITY] = 0.0
    unmoved = jax.vmap(lambda o, n: integrate_closed_form(groups, o, n, DT))(still[:-1], still[1:])["target_positions"]
    assert np.abs(np.asarray(unmoved) - obs[1:, ht.TARGET_POSITIONS]).mean() > 2 * np.abs(
        np.asarray(predicted["target_positions"]) - obs[1:, ht.TARGET_POSITIONS]).mean()


def test_shipped_reference_poses():
    from mjxmbrl.envs import byravan_envs, byravan_humanoid

    poses = byravan_envs.load_reference_poses(byravan_humanoid.POSES_FILE)
    assert poses.ndim == 2 and poses.shape[1] == 47 and len(poses) >= 50
    np.testing.assert_allclose(np.linalg.norm(poses[:, 1:5], axis=-1), 1.0, atol=1e-5)
    assert np.all(poses[:, 0] > 1.0)  # upright
    heading = np.arctan2(2 * (poses[:, 1] * poses[:, 4] + poses[:, 2] * poses[:, 3]),
                         1 - 2 * (poses[:, 3] ** 2 + poses[:, 4] ** 2))
    np.testing.assert_allclose(heading, 0.0, atol=1e-5)  # stored without their heading
    assert poses[:, 5:26].std(axis=0).max() > 0.05  # the joints move across the set
