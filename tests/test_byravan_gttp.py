"""Byravan et al. 2022 (arXiv:2110.03363, App. A.2) go-to-target-pose ant: the rewards against hand-computed
cases, the bonus and new-target logic on scripted trajectories, target placement and its curriculum, the
shipped reference poses, and the closed-form integration of the task observation (App. C.2) against the
simulator and inside the per-group MLP model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import ENV_SPECS, ant_gttp, make_env
from mjxmbrl.envs.ant_gttp import Target

DT = 0.02


def _target_at(origin, yaw=0.0, shape=None):
    """A target whose bodies sit at fixed offsets from `origin`, turned by `yaw`."""
    shape = np.linspace(-0.3, 0.3, 24).reshape(8, 3) if shape is None else shape
    rot = np.asarray(ant_gttp.yaw_matrix(jnp.asarray(yaw)))
    return Target(joints=jnp.zeros(8), root=jnp.asarray(origin, jnp.float32),
                  bodies=jnp.asarray(origin + shape @ rot.T, jnp.float32),
                  rotations=jnp.asarray(np.broadcast_to(rot, (9, 3, 3)), jnp.float32),
                  com=jnp.asarray(origin, jnp.float32))


def test_dense_reward_hand_computed():
    origin = np.array([1.0, 2.0, 0.5])
    target = _target_at(origin)
    same = (target.root, target.bodies, target.rotations, target.com)
    assert float(ant_gttp.dense_reward(target, *same)) == pytest.approx(1.0, abs=1e-6)
    # Shifted by 0.5 m along x, same shape and orientation: d = d_root = 0.5, r_pos = r_quat = 1.
    shift = jnp.array([0.5, 0.0, 0.0])
    r_pose = 0.5 * np.exp(-0.5) + 0.5 * np.exp(-0.05)
    expected = 0.6 * np.exp(-0.25) * r_pose + 0.4 * np.exp(-0.25 / 0.3)
    moved = ant_gttp.dense_reward(target, target.root + shift, target.bodies + shift, target.rotations, target.com + shift)
    assert float(moved) == pytest.approx(expected, rel=1e-5)
    # In place but every body turned by 0.3 rad about z: r_quat = exp(-4 * 9 * 0.09); the shape turns too.
    turned = _target_at(origin, yaw=0.3)
    shape_error = np.sum((np.asarray(turned.bodies) - np.asarray(target.bodies)) ** 2)
    r_pose = 0.5 * (0.4 * np.exp(-0.85 * shape_error) + 0.6 * np.exp(-4 * 9 * 0.09)) + 0.5
    value = ant_gttp.dense_reward(target, turned.root, turned.bodies, turned.rotations, turned.com)
    assert float(value) == pytest.approx(0.6 * r_pose + 0.4, rel=1e-5)


def test_planner_reward_hand_computed():
    obs = jnp.zeros((2, ant_gttp.OBS_SIZE))
    obs = obs.at[1, ant_gttp.TARGET_ROOT].set(jnp.array([3.0, 4.0, 0.0]))  # d_root = 5
    obs = obs.at[1, ant_gttp.TARGET_JOINTS].set(1.0)  # |dq|^2 = 8 = J
    reward = ENV_SPECS["AntGTTP"].reward_fn(obs + 7.0, jnp.ones((2, 8)), obs)  # reads next_obs only
    near = 0.9 * np.exp(-5 / 4) + 0.1 * np.exp(-5 / 40)
    np.testing.assert_allclose(reward, [0.8, 0.5 * near * 0.6 * np.exp(-2.0) + 0.5 * np.exp(-5 / 40)], rtol=1e-5)


def test_bonus_after_ten_steps_held_then_the_streak_restarts():
    dense = [0.9] * 9 + [0.5] + [0.9] * 10 + [0.81] * 3  # broken once at step 9, then held for 10
    streak, rewards, successes = jnp.zeros((), jnp.int32), [], []
    for r in dense:
        reward, success, streak = ant_gttp.sparse_step(jnp.asarray(r), streak)
        rewards.append(float(reward))
        successes.append(bool(success))
    assert [t for t, s in enumerate(successes) if s] == [19]
    np.testing.assert_allclose(rewards, np.asarray(dense) + 50.0 * np.asarray(successes), rtol=1e-6)
    assert int(streak) == 3  # counted again from 0 after the success
    _, success, _ = ant_gttp.sparse_step(jnp.asarray(0.8), jnp.asarray(9))  # strictly above the threshold
    assert not bool(success)


def test_targets_are_placed_within_the_headings_and_the_curriculum():
    pose = {"joints": jnp.arange(8.0), "height": jnp.asarray(0.6), "bodies": jnp.zeros((8, 3)).at[:, 0].set(0.4),
            "rotations": jnp.broadcast_to(jnp.eye(3), (9, 3, 3)), "com": jnp.array([0.1, 0.0, 0.0])}
    root, yaw = jnp.array([2.0, -1.0, 0.5]), jnp.asarray(0.7)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    for achieved, (low, high) in [(0, (0.0, 0.0)), (1, (0.125, 1.25)), (2, (0.25, 2.5)), (4, (0.5, 5.0)), (9, (0.5, 5.0))]:
        targets = jax.vmap(lambda k: ant_gttp.place_target(k, root, yaw, jnp.asarray(achieved), pose))(keys)
        offset = np.asarray(targets.root[:, :2] - root[:2])
        distance = np.linalg.norm(offset, axis=-1)
        assert distance.min() >= low - 1e-5 and distance.max() <= high + 1e-5, achieved
        if achieved:
            assert distance.max() > low + 0.9 * (high - low)  # the range is used
            heading = np.angle(np.exp(1j * (np.arctan2(offset[:, 1], offset[:, 0]) - 0.7)))
            assert np.abs(heading).max() <= np.deg2rad(120) + 1e-4 and np.abs(heading).max() > np.deg2rad(110)
        turn = np.angle(np.exp(1j * (np.asarray(ant_gttp.yaw_of(targets.rotations[:, 0])) - 0.7)))
        assert np.abs(turn).max() <= np.deg2rad(120) + 1e-4 and np.abs(turn).max() > np.deg2rad(110)
        np.testing.assert_allclose(targets.root[:, 2], 0.6)
        # The pose's body offsets and centre of mass turn with the target's yaw.
        np.testing.assert_allclose(np.linalg.norm(targets.bodies - targets.root[:, None], axis=-1), 0.4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(targets.bodies[:, 0, :2] - targets.root[:, :2]) / 4,
                                   np.asarray(targets.com[:, :2] - targets.root[:, :2]), atol=1e-6)


def test_remove_yaw_keeps_the_tilt():
    import mujoco

    rng = np.random.default_rng(0)
    quats = rng.normal(size=(50, 4))
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    for q, tilt in zip(quats, ant_gttp.remove_yaw(quats)):
        r, r_tilt = np.zeros(9), np.zeros(9)
        mujoco.mju_quat2Mat(r, q)
        mujoco.mju_quat2Mat(r_tilt, tilt)
        r, r_tilt = r.reshape(3, 3), r_tilt.reshape(3, 3)
        assert abs(np.arctan2(r_tilt[1, 0], r_tilt[0, 0])) < 1e-6 and tilt[0] >= 0  # heading 0
        np.testing.assert_allclose(r_tilt[2], r[2], atol=1e-6)  # the world's z axis in the body frame: same tilt


def test_shipped_reference_poses():
    from mjxmbrl.envs import byravan_envs

    poses = byravan_envs.load_reference_poses()
    assert poses.ndim == 2 and poses.shape[1] == 13 and len(poses) >= 200
    np.testing.assert_allclose(np.linalg.norm(poses[:, 1:5], axis=-1), 1.0, atol=1e-5)
    assert np.all((poses[:, 0] > 0.1) & (poses[:, 0] < 1.5))  # torso heights of an ant with a foot down
    env = byravan_envs.AntGoToTargetPose()
    low, high = env.mj_model.jnt_range[1:, 0], env.mj_model.jnt_range[1:, 1]
    assert np.all((poses[:, 5:] >= low - 0.2) & (poses[:, 5:] <= high + 0.2))  # soft limits: the walkers push past them
    assert poses[:, 5:].std(axis=0).min() > 0.05  # every joint moves across the set


@pytest.fixture(scope="module")
def gttp():
    """(unwrapped env, jitted reset, jitted step) of AntGTTP."""
    env = make_env("AntGTTP", impl="jax").unwrapped
    key = jax.random.PRNGKey(0)
    reset = compile_fast(env.reset, key)
    state = reset(key)
    return env, reset, compile_fast(env.step, state, jnp.zeros(8))


def test_holding_the_target_pays_the_bonus_and_draws_a_nearer_then_farther_target(gttp):
    """Scripted: the target set to the ant's own settled pose is held for 10 steps: bonus, a new target at
    the curriculum's second distance, observed at once; the count of achieved targets goes up."""
    env, reset, step = gttp
    state = reset(jax.random.PRNGKey(1))
    for _ in range(40):  # settle standing under zero torque
        state = step(state, jnp.zeros(8))
    data = state.data
    here = Target(joints=data.qpos[7:], root=data.xpos[env._torso], bodies=data.xpos[env._bodies],
                  rotations=data.xmat[env._axis_bodies], com=data.subtree_com[env._torso])
    state = state.replace(info={**state.info, "target": here, "streak": jnp.zeros((), jnp.int32)})
    rewards = []
    for _ in range(10):
        state = step(state, jnp.zeros(8))
        rewards.append(float(state.reward))
    assert all(0.8 < r < 1.0 for r in rewards[:-1]) and 50.8 < rewards[-1] < 51.0, rewards
    assert int(state.info["achieved"]) == 1 and int(state.info["streak"]) == 0
    assert float(state.metrics["targets_achieved"]) == 1.0
    new = state.info["target"]
    distance = float(jnp.linalg.norm(new.root[:2] - data.xpos[env._torso, :2]))
    assert 0.125 - 0.05 < distance < 1.25 + 0.05  # U[a/4, b/4] after one target (the ant barely moved)
    task = ant_gttp.task_observation(new, state.data.qpos[7:], state.data.xpos[env._torso], state.data.xmat[env._torso])
    np.testing.assert_allclose(state.obs[37:], task, atol=1e-6)
    assert float(jnp.linalg.norm(state.obs[ant_gttp.TARGET_ROOT])) > 0.05
    state = step(state, jnp.zeros(8))  # the new target is far: no bonus
    assert float(state.reward) < 0.8 and int(state.info["achieved"]) == 1


@pytest.fixture(scope="module")
def gttp_rollout(gttp):
    """Observations [T + 1, 126] of AntGTTP under random actions, 40 control steps."""
    env, reset, step = gttp
    state = reset(jax.random.PRNGKey(2))
    state = state.replace(info={**state.info, "target": state.info["target"]._replace(
        root=state.info["target"].root + jnp.array([1.0, 0.5, 0.0]))})  # keep the target out of reach
    obs = [np.asarray(state.obs)]
    for action in jax.random.uniform(jax.random.PRNGKey(3), (40, 8), minval=-1, maxval=1):
        state = step(state, action)
        obs.append(np.asarray(state.obs))
    assert int(state.info["achieved"]) == 0
    return np.stack(obs)


def test_task_observation_integrates_in_closed_form(gttp_rollout):
    """App. C.2 for GTTP: joints exactly, positions and axes from the velocities to within a fraction of their change."""
    from mjxmbrl.models.mlp import integrate_closed_form

    obs = gttp_rollout
    groups = ENV_SPECS["AntGTTP"].obs_groups
    step = jax.vmap(lambda o, n: integrate_closed_form(groups, o, n, DT))
    predicted = step(obs[:-1], obs[1:])
    np.testing.assert_allclose(predicted["target_joints"], obs[1:, ant_gttp.TARGET_JOINTS], atol=1e-5)
    for name, sl in (("target_positions", ant_gttp.TARGET_POSITIONS), ("target_axes", ant_gttp.TARGET_AXES)):
        error = np.abs(np.asarray(predicted[name]) - obs[1:, sl]).mean(-1)  # [T]
        unchanged = np.abs(obs[:-1, sl] - obs[1:, sl]).mean(-1)
        # Most steps are right to a tenth of their change (median under 0.2); the few with a foot striking
        # the floor inside the step (velocities jump between the two observations) are not, hence the mean.
        assert unchanged.mean() > 0.002 and np.median(error / unchanged) < 0.2, (name, error / unchanged)
        assert error.mean() < 0.4 * unchanged.mean(), (name, error.mean(), unchanged.mean())
    # Without the translation by -v dt the positions are worse: the points do move with the torso.
    still = obs.copy()
    still[:, 16:19] = 0.0
    unmoved = step(still[:-1], still[1:])["target_positions"]
    assert np.abs(np.asarray(unmoved) - obs[1:, ant_gttp.TARGET_POSITIONS]).mean() > 2 * np.abs(
        np.asarray(predicted["target_positions"]) - obs[1:, ant_gttp.TARGET_POSITIONS]).mean()


def test_mlp_model_integrates_the_task_groups_without_networks():
    from mjxmbrl.models.mlp import MLPModelConfig, integrate_closed_form, make_mlp_model

    spec = ENV_SPECS["AntGTTP"]
    assert [g.name for g in spec.task_groups] == ["target_joints", "target_positions", "target_axes"]
    assert sum(g.size for g in spec.obs_groups if g not in spec.task_groups) == 37
    model = make_mlp_model(MLPModelConfig(hidden_sizes=(32,)), spec.obs_size, 8, DT, spec.obs_groups)
    params = model.init(jax.random.PRNGKey(0))
    nets = params["net"]["dynamics"]["params"]
    assert not {"target_joints", "target_positions", "target_axes"} & set(nets) and "joint_angles" in nets
    obs = jax.random.normal(jax.random.PRNGKey(1), (spec.obs_size,))
    nxt = model.step(params, obs, jnp.full((8,), 0.3), None)
    expected = integrate_closed_form(spec.obs_groups, obs, nxt, DT)
    np.testing.assert_allclose(nxt[ant_gttp.TARGET_JOINTS], obs[37:45] - (nxt[0:8] - obs[0:8]), atol=1e-6)
    np.testing.assert_allclose(nxt[ant_gttp.TARGET_POSITIONS], expected["target_positions"], atol=1e-6)
    np.testing.assert_allclose(nxt[ant_gttp.TARGET_AXES], expected["target_axes"], atol=1e-6)


def test_check_groups_rejects_bad_closed_form_groups():
    from mjxmbrl.envs.groups import ObsGroup
    from mjxmbrl.models.mlp import check_groups

    plain = (ObsGroup("q", 0, 3), ObsGroup("v", 3, 6), ObsGroup("w", 6, 9))
    check_groups(plain + (ObsGroup("p", 9, 15, rotated_by=6, translated_by=3),), 15)
    with pytest.raises(ValueError, match="must also be rotated"):
        check_groups(plain + (ObsGroup("p", 9, 15, translated_by=3),), 15)
    with pytest.raises(ValueError, match="3-vectors"):
        check_groups(plain + (ObsGroup("p", 9, 13, rotated_by=6), ObsGroup("x", 13, 15)), 15)
    with pytest.raises(ValueError, match="linear velocity"):
        check_groups(plain + (ObsGroup("p", 9, 15, rotated_by=6, translated_by=9),), 15)
    check_groups(plain + (ObsGroup("dq", 9, 12, minus_change_of=0),), 12)
    with pytest.raises(ValueError, match="groups with a network"):
        check_groups(plain + (ObsGroup("dq", 9, 12, minus_change_of=9),), 12)


def test_a_walking_model_transfers_to_gttp_with_identical_predictions():
    """Sec. 5.3 across tasks of one body: AntWalkForward's per-group MLP loaded into an AntGTTP run predicts the
    same proprioception bit for bit (its networks read no task entries); a cartpole model does not fit."""
    from mjxmbrl.config import load_config
    from mjxmbrl.models.mlp import MLPModelConfig, make_mlp_model
    from mjxmbrl.run.transfer import TransferError, _transferred_model

    walk, gttp = ENV_SPECS["AntWalkForward"], ENV_SPECS["AntGTTP"]
    config = MLPModelConfig(hidden_sizes=(32,))
    source_model = make_mlp_model(config, walk.obs_size, 8, DT, walk.obs_groups)
    target_model = make_mlp_model(config, gttp.obs_size, 8, DT, gttp.obs_groups)
    source = source_model.init(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    stats = source["stats"].replace(obs=source["stats"].obs.replace(
        mean=jax.random.normal(keys[0], (40,)), var=jnp.exp(jax.random.normal(keys[1], (40,)))))
    source = {**source, "stats": stats}  # trained-looking statistics, so copying them matters
    target = target_model.init(jax.random.PRNGKey(2))

    cfg = load_config("configs/byravan/ant_gttp_mpc_mpo_bc.yaml", ["transfer.source_run=src", "transfer.model=frozen"])
    source_cfg = load_config("configs/byravan/ant_walk_forward_mpc_mpo_bc.yaml")
    loaded = _transferred_model(cfg, source_cfg, source, target)
    proprio = jax.random.normal(keys[2], (37,))
    walk_obs = jnp.concatenate([proprio, jnp.array([1.0, 0.0, 0.0])])
    gttp_obs = jnp.concatenate([proprio, jax.random.normal(keys[3], (89,))])
    action = jnp.linspace(-1, 1, 8)
    np.testing.assert_array_equal(target_model.step(loaded, gttp_obs, action, None)[:37],
                                  source_model.step(source, walk_obs, action, None)[:37])
    assert not np.array_equal(target_model.step(target, gttp_obs, action, None)[:37],
                              source_model.step(source, walk_obs, action, None)[:37])  # before loading: differs
    cartpole = make_mlp_model(config, 5, 1, 0.01, ENV_SPECS["CartpoleSwingup"].obs_groups).init(jax.random.PRNGKey(0))
    with pytest.raises(TransferError, match="does not fit this run"):
        _transferred_model(cfg, load_config("configs/byravan/cartpole_swingup_mpc_mpo_bc.yaml"), cartpole, target)
