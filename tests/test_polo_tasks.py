"""POLO tasks (Lowrey et al. 2019, arXiv:1811.01848): getup rewards and supine starts, the walk's reward
and upright start, the reorientation target's re-draws, point-mass walls and coverage, and the tasks
stepping identically through the batched env and the oracle model."""

import copy
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import ENV_SPECS, getup, make_vector_env, reorient, walk
from mjxmbrl.envs import point_mass_worlds as pmw

POLO = ("PointMassBox", "PointMassMaze", "HumanoidGetup", "HumanoidGetupSparse", "WalkerGetup", "WalkerGetupSparse",
        "PoloHumanoidWalk", "FingerReorient")


# ------------------------------------------------------------------ getup rewards ---


def test_getup_rewards_hand_computed():
    # Humanoid, z* = 1.1: dense 1 - (1.1 - z) below, 1 above; sparse 0 up to 1.1, 1 above.
    z = jnp.array([0.3, 1.0, 1.1, 1.2])
    obs = jnp.zeros((4, 68)).at[:, -1].set(z)
    act = jnp.zeros((4, 21))
    np.testing.assert_allclose(ENV_SPECS["HumanoidGetup"].reward_fn(obs, act, obs), [0.2, 0.9, 1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(ENV_SPECS["HumanoidGetupSparse"].reward_fn(obs, act, obs), [0.0, 0.0, 0.0, 1.0])
    # Walker, z* = 1.3 * 1.1 / 1.285 = 1.11.
    assert getup.WALKER_TARGET_HEIGHT == 1.11
    z = jnp.array([0.07, 1.0, 1.11, 1.2])
    obs = jnp.zeros((4, 25)).at[:, -1].set(z)
    act = jnp.zeros((4, 6))
    np.testing.assert_allclose(ENV_SPECS["WalkerGetup"].reward_fn(obs, act, obs), [-0.04, 0.89, 1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(ENV_SPECS["WalkerGetupSparse"].reward_fn(obs, act, obs), [0.0, 0.0, 0.0, 1.0])
    # Only next_obs's last entry matters.
    other = obs.at[:, :-1].set(5.0)
    np.testing.assert_array_equal(ENV_SPECS["WalkerGetup"].reward_fn(other, act + 1, obs),
                                  ENV_SPECS["WalkerGetup"].reward_fn(obs, act, obs))


def _lowest_point(model, data) -> float:
    """Lowest z of the body's capsules and spheres (the floor plane excluded)."""
    import mujoco

    low = np.inf
    for g in range(model.ngeom):
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE:
            continue
        r, half = model.geom_size[g, 0], model.geom_size[g, 1]
        axis_z = abs(data.geom_xmat[g].reshape(3, 3)[2, 2]) if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE else 0.0
        low = min(low, data.geom_xpos[g, 2] - axis_z * half - r)
    return low


def test_target_heights_from_the_standing_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes compiler warnings to ./MUJOCO_LOG.TXT
    import mujoco
    from mujoco_playground._src.dm_control_suite import common, humanoid, walker

    heights = {}
    for name, mod in (("humanoid", humanoid), ("walker", walker)):
        model = mujoco.MjModel.from_xml_string(mod._XML_PATH.read_text(), common.get_assets())
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        heights[name] = data.xpos[model.body("torso").id, 2] - _lowest_point(model, data)
    assert heights["humanoid"] == pytest.approx(getup.HUMANOID_STAND_HEIGHT, abs=2e-3)
    assert heights["walker"] == pytest.approx(getup.WALKER_STAND_HEIGHT, abs=2e-3)


@pytest.mark.parametrize("name", ["HumanoidGetup", "WalkerGetup"])
def test_getup_starts_supine_and_stays_down(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import mujoco
    from mujoco import mjx

    from mjxmbrl.envs import polo_envs

    env = polo_envs.make(name)
    model = env.mj_model
    torso = model.body("torso").id
    no_contact = copy.deepcopy(model)
    no_contact.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    qpos = np.asarray(jax.jit(jax.vmap(env.initial_qpos))(jax.random.split(jax.random.PRNGKey(0), 4)))
    assert np.abs(qpos - qpos[0]).max() > 0.01  # joint noise
    for q in qpos:
        data = mujoco.MjData(model)
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        frame = data.xmat[torso].reshape(3, 3)  # columns: the torso's axes in the world
        assert data.xpos[torso, 2] < 0.15, data.xpos[torso, 2]
        assert abs(frame[2, 2]) < 0.2  # its up axis is horizontal ...
        assert frame[2, 0] > 0.9  # ... and its front faces the sky: on its back
        # The env's observation of this state (its own _get_obs, eagerly on data forwarded by C
        # without contacts, which mjx.put_data could not place): the task's DM Control observation
        # plus the root height, exactly the torso's z.
        kinematic = mujoco.MjData(no_contact)
        kinematic.qpos[:] = q
        mujoco.mj_forward(no_contact, kinematic)
        obs = np.asarray(env._get_obs(mjx.put_data(no_contact, kinematic, impl="jax"), {}))
        assert obs.shape == (ENV_SPECS[name].obs_size,)
        assert obs[-1] == pytest.approx(data.xpos[torso, 2], abs=1e-6)
        heights = []
        for _ in range(20 * env.n_substeps):  # 20 control steps (0.5 s) of zero control
            mujoco.mj_step(model, data)
            heights.append(data.xpos[torso, 2])
        assert max(heights) < 0.15 and max(heights) - min(heights) < 0.03, (min(heights), max(heights))
        root_linear = data.qvel[:3] if name.startswith("Humanoid") else data.qvel[:2]  # free joint / rootz, rootx
        assert np.abs(root_linear).max() < 0.1  # the body lies still (feet may still twitch from the noise)


def test_sparse_twins_differ_only_in_the_reward(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from mjxmbrl.envs import make_env

    for dense_name in ("HumanoidGetup", "WalkerGetup"):
        dense, sparse = make_env(dense_name).unwrapped, make_env(dense_name + "Sparse").unwrapped
        assert type(dense) is type(sparse) and (dense._sparse, sparse._sparse) == (False, True)
        assert dense._target == sparse._target
        np.testing.assert_array_equal(np.asarray(dense._supine_qpos), np.asarray(sparse._supine_qpos))


# ------------------------------------------------------------------ humanoid walk ---


def test_walk_reward_hand_computed():
    # App. A.2: -(1.1 - z) up to z* = 1.1, above it 1 - |1 - v_x| - |y|; (v_x, y, z) are the last entries.
    vx_y_z = jnp.array([[1.0, 0.0, 0.5], [3.0, 2.0, 1.1], [1.0, 0.0, 1.2], [0.5, -0.2, 1.3], [2.0, 0.3, 1.2]])
    obs = jnp.zeros((5, walk.OBS_SIZE)).at[:, -3:].set(vx_y_z)
    reward = ENV_SPECS["PoloHumanoidWalk"].reward_fn(obs + 7.0, jnp.ones((5, 21)), obs)
    np.testing.assert_allclose(reward, [-0.6, 0.0, 1.0, 0.3, -0.3], atol=1e-6)


def test_humanoid_walk_starts_upright_on_its_feet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import mujoco
    from mujoco import mjx

    from mjxmbrl.envs import polo_envs

    env = polo_envs.make("PoloHumanoidWalk")
    model = env.mj_model
    torso = model.body("torso").id
    no_contact = copy.deepcopy(model)
    no_contact.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
    qpos = np.asarray(jax.jit(jax.vmap(env.initial_qpos))(jax.random.split(jax.random.PRNGKey(0), 3)))
    assert np.abs(qpos - qpos[0]).max() > 0.01  # joint noise
    for q in qpos:
        data = mujoco.MjData(no_contact)
        data.qpos[:] = q
        data.qvel[:3] = [0.8, -0.1, 0.05]  # a root velocity, to see it in the observation
        mujoco.mj_forward(no_contact, data)
        assert data.xmat[torso].reshape(3, 3)[2, 2] > 0.99  # the torso's up axis points up
        assert data.xpos[torso, 2] == pytest.approx(getup.HUMANOID_STAND_HEIGHT, abs=1e-6)
        assert abs(_lowest_point(model, data)) < 0.03  # feet on the floor, not 0.215 m above it
        obs = np.asarray(env._get_obs(mjx.put_data(no_contact, data, impl="jax"), {}))
        assert obs.shape == (walk.OBS_SIZE,) == (ENV_SPECS["PoloHumanoidWalk"].obs_size,)
        np.testing.assert_allclose(obs[-3:], [0.8, q[1], q[2]], atol=1e-6)  # v_x, y, z of the root


# ------------------------------------------------------------- coverage (pure) ---


def test_coverage_cells_and_fraction():
    box, maze = pmw.get_world("PointMassBox"), pmw.get_world("PointMassMaze")
    assert box.num_cells == maze.num_cells == 256
    assert int(box.reachable.sum()) == 256
    walls = np.array([ch == "#" for row in pmw.MAZE_LAYOUT for ch in row])
    assert walls.sum() == 39 and not maze.reachable[walls].any() and maze.reachable[~walls].all()
    # A straight line across the second row from the top (y in (0.75, 0.875)) visits cells 16..31 in order.
    xs = jnp.linspace(-0.99, 0.99, 200)
    line = jnp.stack([xs, jnp.full_like(xs, 0.8)], -1)
    idx = np.asarray(box.cell_index(line))
    assert np.array_equal(np.unique(idx), np.arange(16, 32)) and np.all(np.diff(idx) >= 0)
    visited = box.visited_cells(line)
    assert float(box.coverage_fraction(visited)) == pytest.approx(16 / 256)
    # visit: one step of per-env masks [N, num_cells] from positions [N, 2].
    masks = box.visit(jnp.zeros((2, 256), bool), jnp.array([[-0.99, 0.99], [0.99, -0.99]]))
    assert np.flatnonzero(np.asarray(masks[0])).tolist() == [0] and np.flatnonzero(np.asarray(masks[1])).tolist() == [255]
    # A vertical line down column 0 of the maze: 16 of its 217 free cells.
    col0 = jnp.stack([jnp.full_like(xs, -0.95), xs], -1)
    assert float(maze.coverage_fraction(maze.visited_cells(col0))) == pytest.approx(16 / 217)
    # Walls never count; every free cell visited is 1.0; batched masks.
    masks = jnp.stack([jnp.asarray(walls), jnp.asarray(~walls), jnp.ones(256, bool)])
    np.testing.assert_allclose(maze.coverage_fraction(masks), [0.0, 1.0, 1.0])
    # Positions outside the arena are clipped to the border cells; position() reads obs[..., :2].
    assert int(box.cell_index(jnp.array([5.0, -5.0]))) == 255
    assert pmw.position(jnp.arange(8.0).reshape(2, 4)).tolist() == [[0.0, 1.0], [4.0, 5.0]]


def test_oracle_accepts_polo_tasks():
    from mjxmbrl.models.oracle import check_oracle

    for name in POLO:
        check_oracle(SimpleNamespace(env=SimpleNamespace(name=name)))  # no ConfigError


# ------------------------------------------ MJX: walls, env vs oracle, rewards ---


def _actions(name, t, n, action_size):
    if name.startswith("PointMass"):
        # env 0: full +x; env 1: full -y; env 2: full (+x, -y)
        return jnp.broadcast_to(jnp.array([[1.0, 0.0], [0.0, -1.0], [1.0, -1.0]]), (t, n, 2))
    return jax.random.uniform(jax.random.PRNGKey(1), (t, n, action_size), minval=-1, maxval=1)


# Each MJX program below compiles in 10-40 s on 2 CPU cores (the humanoid's in ~70 s): the maze runs
# by default, the others are marked slow. The *Sparse twins differ only in the reward flag
# (test_sparse_twins) and the reward is checked exactly against reward_fn here.
_SLOW = pytest.mark.slow
_PARAMS = [
    pytest.param(("PointMassMaze", 150), id="PointMassMaze"),
    pytest.param(("PointMassBox", 150), marks=_SLOW, id="PointMassBox"),
    pytest.param(("WalkerGetup", 16), marks=_SLOW, id="WalkerGetup"),
    pytest.param(("HumanoidGetup", 8), marks=_SLOW, id="HumanoidGetup"),
]


@pytest.fixture(scope="module", params=_PARAMS)
def rollout(request):
    """(name, initial State [N], States [T, N], oracle obs [N, T, D], oracle reward [N, T], actions [T, N, A])."""
    from mjxmbrl.models.base import open_loop
    from mjxmbrl.models.oracle import make_oracle_model

    name, t = request.param
    spec = ENV_SPECS[name]
    n = 3 if name.startswith("PointMass") else 2
    env = make_vector_env(name, n, impl="jax", auto_reset=False)
    actions = _actions(name, t, n, spec.action_size)

    model = make_oracle_model(name, impl="jax")

    def roll(belief, acts):
        z0 = model.initial_state({}, belief.obs, None, belief)
        zs, obs = open_loop(model, {}, z0, acts, jax.random.PRNGKey(0))
        return obs, zs.reward

    def run(key, actions):  # one program: each MJX compile takes 10-40 s on 2 CPU cores
        state = env.reset(key)
        traj = jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)[1]
        return state, traj, *jax.vmap(roll, in_axes=(0, 1))(state, actions)

    key = jax.random.PRNGKey(0)
    state0, traj, oracle_obs, oracle_reward = compile_fast(run, key, actions)(key, actions)
    return name, state0, traj, oracle_obs, oracle_reward, actions


def test_env_and_oracle_step_identically(rollout):
    name, state0, traj, oracle_obs, oracle_reward, actions = rollout
    spec = ENV_SPECS[name]
    assert traj.obs.shape == (actions.shape[0], actions.shape[1], spec.obs_size)
    assert np.all(np.isfinite(np.asarray(traj.obs))) and not np.asarray(traj.done).any()
    np.testing.assert_array_equal(np.swapaxes(np.asarray(oracle_obs), 0, 1), np.asarray(traj.obs))
    np.testing.assert_array_equal(np.swapaxes(np.asarray(oracle_reward), 0, 1), np.asarray(traj.reward))
    # The known reward is exact: a function of next_obs (0 for the point-mass worlds).
    obs = jnp.concatenate([state0.obs[None], traj.obs[:-1]])
    np.testing.assert_allclose(np.asarray(spec.reward_fn(obs, actions, traj.obs)), np.asarray(traj.reward), atol=1e-6)
    if name.startswith("PointMass"):
        assert not np.asarray(traj.reward).any()
    else:  # starts on the floor, on its back
        assert float(state0.obs[:, -1].max()) < 0.15
        assert np.allclose(np.asarray(traj.metrics["root_height"]), np.asarray(traj.obs[..., -1]))


@pytest.mark.parametrize("rollout", [p for p in _PARAMS if p.id.startswith("PointMass")], indirect=True)
def test_point_mass_walls_and_coverage(rollout):
    name, state0, traj, *_ = rollout
    world = pmw.get_world(name)
    pos = np.asarray(pmw.position(traj.obs))  # [T, 3, 2]
    start = world.start_position
    assert np.abs(np.asarray(state0.obs[:, :2]) - start).max() <= pmw.START_JITTER
    np.testing.assert_array_equal(np.asarray(state0.obs[:, 2:]), 0.0)
    half = 1.0 - pmw.SPHERE_RADIUS  # the border planes stop the centre at |x|, |y| <= 0.96 (+ contact softness)
    assert np.abs(pos).max() < half + 0.01
    cells = np.asarray(world.cell_index(pos))
    assert world.reachable[cells].all()  # never inside a wall
    if name == "PointMassBox":
        # Full +x from the top-left cell: along the top row to the right wall in ~125 steps.
        assert pos[-1, 0, 0] > half - 0.01 and np.argmax(pos[:, 0, 0] > half - 0.05) < 130
        assert set(cells[:, 0].tolist()) == set(range(16))
        visited = world.visited_cells(jnp.asarray(pos[:, 0]))
        assert float(world.coverage_fraction(visited)) == pytest.approx(16 / 256)
    else:
        # Full +x from the start: stopped by the wall in column 3 (x in [-0.625, -0.5]) on its own side.
        wall_face = -1.0 + 3 * pmw.CELL_SIZE
        assert pos[:, 0, 0].max() < wall_face - pmw.SPHERE_RADIUS + 0.01
        assert pos[-1, 0, 0] > wall_face - pmw.SPHERE_RADIUS - 0.01  # it did reach the wall
        # Full -y: down the left corridor to the bottom; full (+x, -y): stopped above the wall of row 7.
        assert pos[-1, 1, 1] < -half + 0.01
        row7_top = 1.0 - 7 * pmw.CELL_SIZE
        assert pos[:, 2, 1].min() > row7_top + pmw.SPHERE_RADIUS - 0.01


# ------------------------------------------- reorientation (the in-hand substitute) ---


def test_reorient_reward_hand_computed():
    """-angle(tip, target) / pi from the hinge: 0 on target, -1/2 at a right angle, -1 opposite."""
    obs = np.zeros((4, reorient.OBS_SIZE), np.float32)
    obs[:, reorient.TIP] = [0.13, 0.0]
    obs[:, reorient.TARGET] = [[0.13, 0.0], [0.0, 0.13], [0.0, -0.13], [-0.13, 0.0]]
    reward = np.asarray(reorient.reorient_reward(None, None, jnp.asarray(obs)))
    np.testing.assert_allclose(reward, [0.0, -0.5, -0.5, -1.0], atol=1e-6)
    assert ENV_SPECS["FingerReorient"].reward_fn is reorient.reorient_reward


def test_finger_reorient_redraws_its_target_every_75_steps_but_not_in_a_plan():
    from mjxmbrl.envs.snapshots import restore, snapshot

    t = 2 * reorient.TARGET_PERIOD + 10
    env = make_vector_env("FingerReorient", 1, impl="jax", auto_reset=False)
    plan_env = make_vector_env("FingerReorient", 1, impl="jax", auto_reset=False, planning=True)
    actions = jax.random.uniform(jax.random.PRNGKey(3), (t, 2), minval=-1, maxval=1)

    def run(key, actions):  # one program: env, planning env, and one step from a restored snapshot
        state = env.reset_one(key)
        roll = lambda e: jax.lax.scan(lambda s, a: (e.step_one(s, a),) * 2, state, actions)[1]  # noqa: E731
        traj, plan_traj = roll(env), roll(plan_env)
        after_redraw = jax.tree.map(lambda x: x[100], traj)
        restored = restore(plan_env.reset_one(jax.random.PRNGKey(7)), snapshot(after_redraw), after_redraw.obs)
        return state, traj, plan_traj, plan_env.step_one(after_redraw, actions[0]), plan_env.step_one(restored, actions[0])

    key = jax.random.PRNGKey(0)
    state0, traj, plan_traj, direct, from_snapshot = compile_fast(run, key, actions)(key, actions)
    assert state0.obs.shape == (ENV_SPECS["FingerReorient"].obs_size,)
    targets = np.concatenate([np.asarray(state0.obs[None, reorient.TARGET]), np.asarray(traj.obs[:, reorient.TARGET])])
    moved = np.flatnonzero(np.linalg.norm(np.diff(targets, axis=0), axis=1) > 1e-4) + 1  # the step that shows a new target
    assert moved.tolist() == [reorient.TARGET_PERIOD + 1, 2 * reorient.TARGET_PERIOD + 1]
    np.testing.assert_allclose(np.linalg.norm(targets, axis=1), 0.13, atol=1e-5)  # on the tip's circle
    plan_targets = np.asarray(plan_traj.obs[:, reorient.TARGET])
    np.testing.assert_array_equal(plan_targets, np.broadcast_to(targets[0], plan_targets.shape))
    np.testing.assert_array_equal(np.asarray(plan_traj.obs[:reorient.TARGET_PERIOD]), np.asarray(traj.obs[:reorient.TARGET_PERIOD]))
    obs = jnp.concatenate([state0.obs[None], traj.obs[:-1]])
    reward = np.asarray(traj.reward)
    np.testing.assert_allclose(np.asarray(reorient.reorient_reward(obs, actions, traj.obs)), reward, atol=1e-6)
    assert reward.min() >= -1.0 and reward.max() <= 0.0 and reward.std() > 0.01
    # the snapshot keeps the re-drawn target (the mocap body): a restored state steps as the original
    np.testing.assert_array_equal(np.asarray(from_snapshot.obs), np.asarray(direct.obs))
    np.testing.assert_array_equal(np.asarray(from_snapshot.reward), np.asarray(direct.reward))
