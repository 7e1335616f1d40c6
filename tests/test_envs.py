"""Env registry, Brax/Playground adapters, toy env and the batched wrapper."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_compile import compile_fast

from mjxmbrl.envs import ENV_SPECS, list_env_specs, make_env, make_vector_env
from mjxmbrl.envs import toy
from mjxmbrl.types import MjxmbrlError


# ---------------------------------------------------------------- registry ---


def test_list_env_specs_sorted_and_complete():
    specs = list_env_specs()
    assert len(specs) == len(ENV_SPECS) == 25 + 6 + 1 + 8 + 3 + 3
    keys = [(s.family, s.name) for s in specs]
    assert keys == sorted(keys)
    brax_names = {s.name for s in specs if s.family == "brax"}
    assert brax_names == {"ant", "hopper", "halfcheetah", "walker2d", "humanoid", "swimmer"}
    assert ENV_SPECS["toy_reach"].family == "toy"
    polo_names = {s.name for s in specs if s.family == "polo"}
    assert polo_names == {"PointMassBox", "PointMassMaze", "HumanoidGetup", "HumanoidGetupSparse", "WalkerGetup", "WalkerGetupSparse",
                          "PoloHumanoidWalk", "FingerReorient"}
    assert {s.name for s in specs if s.family == "byravan"} == {"AntWalkForward", "AntWalkBackward", "AntGTTP",
                                                                "HumanoidWalkForward", "HumanoidWalkBackward", "HumanoidGTTP"}


def test_dm_control_specs_match_playground(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes compiler warnings to ./MUJOCO_LOG.TXT
    import mujoco
    from mujoco import mjx
    from mujoco_playground import dm_control_suite, registry

    dm_specs = {s.name: s for s in list_env_specs() if s.family == "dm_control"}
    assert set(dm_specs) == set(dm_control_suite.ALL_ENVS)
    for name, spec in dm_specs.items():
        env = registry.load(name, config_overrides={"impl": "jax"})
        assert env.action_size == spec.action_size, name
        assert float(env.dt) == pytest.approx(spec.ctrl_dt), name
        assert registry.get_default_config(name).episode_length == spec.episode_length, name
        # `env.observation_size` traces reset (mjx.forward, ~2 s per env on CPU);
        # the env's own observation function on a C-forwarded state gives the same
        # size in milliseconds. Fall back to the public property if that changes.
        try:
            mj_data = mujoco.MjData(env.mj_model)
            mujoco.mj_forward(env.mj_model, mj_data)
            data = mjx.put_data(env.mj_model, mj_data, impl="jax")
            obs_size = jax.eval_shape(lambda d: env._get_obs(d, {"rng": jax.random.PRNGKey(0)}), data).shape[-1]
        except Exception:
            obs_size = env.observation_size
        assert obs_size == spec.obs_size, name


def test_polo_specs_match_envs(tmp_path, monkeypatch):
    """The POLO and Byravan rows (envs/polo_envs.py, envs/byravan_envs.py) against the built envs (impl "jax")."""
    monkeypatch.chdir(tmp_path)
    import mujoco
    from mujoco import mjx

    from mjxmbrl.envs import polo_envs

    from mjxmbrl.envs import byravan_envs, byravan_humanoid

    polo = {s.name: s for s in list_env_specs() if s.family in ("polo", "byravan")}
    assert set(polo) == set(polo_envs.ALL_TASKS) | set(byravan_envs.TASKS) | set(byravan_humanoid.TASKS)
    for name, spec in polo.items():
        env = make_env(name, impl="jax")
        base = env.unwrapped
        assert env.action_size == base.mjx_model.nu == spec.action_size, name
        assert env.dt == pytest.approx(spec.ctrl_dt) and base._config.episode_length == spec.episode_length, name
        assert spec.has_termination == (name in byravan_humanoid.TASKS), name  # the OP3's tasks end on a fall
        assert spec.reward_fn is not None and spec.obs_groups, name
        assert spec.obs_groups[-1].stop == spec.obs_size, name
        # The env's own observation on a C-forwarded state (no contacts: mjx.put_data cannot place
        # every contact of a body lying on the floor), as in the DM Control check above.
        model = copy.deepcopy(base.mj_model)
        model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        info = jax.eval_shape(base.reset, jax.random.PRNGKey(0)).info  # AntGTTP observes its target in info
        obs = jax.eval_shape(lambda d, i: base._get_obs(d, i), mjx.put_data(model, data, impl="jax"), info)
        assert obs.shape == (spec.obs_size,), name


def test_unknown_env_name_suggests_closest():
    with pytest.raises(MjxmbrlError) as err:
        make_env("CartpoleSwingUp")
    message = str(err.value)
    assert "'CartpoleSwingup'" in message and "mjxmbrl list envs" in message
    with pytest.raises(MjxmbrlError, match="'walker2d'"):
        make_vector_env("walker2", 2)


def test_bad_impl_rejected():
    with pytest.raises(MjxmbrlError, match="impl"):
        make_env("toy_reach", impl="cuda")


# --------------------------------------------------------- real MJX envs ---


def test_cartpole_vector_env_shapes_and_finite():
    n, steps = 3, 4
    env = make_vector_env("CartpoleSwingup", n, impl="jax", episode_length=3)
    spec = ENV_SPECS["CartpoleSwingup"]

    def run(key):
        state = env.reset(key)
        actions = jnp.linspace(-1.0, 1.0, steps * n * spec.action_size).reshape(steps, n, spec.action_size)
        return jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)

    final, traj = compile_fast(run, jax.random.PRNGKey(0))(jax.random.PRNGKey(0))
    assert traj.obs.shape == (steps, n, spec.obs_size)
    assert traj.reward.shape == traj.done.shape == (steps, n)
    assert traj.info["final_obs"].shape == (steps, n, spec.obs_size)
    for leaf in jax.tree_util.tree_leaves((traj.obs, traj.reward, traj.info["final_obs"])):
        assert np.all(np.isfinite(np.asarray(leaf)))
    # episode_length 3: the third step truncates and auto-resets.
    np.testing.assert_array_equal(np.asarray(traj.info["truncated"][:, 0]), [0, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(traj.info["steps"][:, 0]), [1, 2, 0, 1])
    assert np.all(np.asarray(traj.reward) >= 0)


@pytest.mark.slow
def test_brax_env_builds_resets_and_steps():
    # hopper: the cheapest Brax task to compile on CPU (~20 s).
    env = make_env("hopper")
    spec = ENV_SPECS["hopper"]
    assert (env.observation_size, env.action_size) == (spec.obs_size, spec.action_size)
    assert env.dt == pytest.approx(spec.ctrl_dt, rel=1e-5)

    def run(key):
        state = env.reset(key)
        actions = jnp.stack([jnp.zeros(spec.action_size), 0.5 * jnp.ones(spec.action_size)])
        return jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)

    final, traj = compile_fast(run, jax.random.PRNGKey(0))(jax.random.PRNGKey(0))
    assert traj.obs.shape == (2, spec.obs_size)
    assert np.all(np.isfinite(np.asarray(traj.obs))) and np.all(np.isfinite(np.asarray(traj.reward)))
    assert not np.allclose(np.asarray(traj.obs[0]), np.asarray(traj.obs[1]))  # it moved
    # Brax's MJX pipeline state (an mjx.Data subclass) travels in the Playground `data` field.
    assert final.data.qpos.shape == (env.unwrapped.sys.nq,)


# ----------------------------------------------------------------- toy env ---


def _rollout(env, key, actions):
    """Resets env with key, applies actions [T, N, A]; returns (initial State [N], States [T, N])."""

    def run(key, actions):
        state = env.reset(key)
        return state, jax.lax.scan(lambda s, a: (env.step(s, a),) * 2, state, actions)[1]

    return compile_fast(run, key, actions)(key, actions)


def test_toy_reward_fn_matches_env():
    env = make_vector_env("toy_reach", 16, auto_reset=False, episode_length=1000)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (30, 16, 2), minval=-1.5, maxval=1.5)
    state0, traj = _rollout(env, jax.random.PRNGKey(0), actions)
    obs = jnp.concatenate([state0.obs[None], traj.obs[:-1]])
    live = np.asarray(jnp.concatenate([jnp.zeros((1, 16)), traj.done[:-1]])) == 0
    expected = toy.reward_fn(obs, actions, traj.obs)
    np.testing.assert_allclose(np.asarray(traj.reward)[live], np.asarray(expected)[live], rtol=1e-5, atol=1e-6)
    assert 0.0 <= float(traj.reward.min()) and float(traj.reward.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(toy.termination_fn(traj.obs))[live], np.asarray(traj.info["terminated"])[live])


def test_toy_good_policy_beats_random():
    env = make_vector_env("toy_reach", 64, auto_reset=False)
    key = jax.random.PRNGKey(0)

    def episode_return(policy):

        def body(s, k):
            s = env.step(s, policy(s.obs, k))
            return s, s.reward

        def run(key):
            return jax.lax.scan(body, env.reset(key), jax.random.split(key, env.episode_length))[1]

        rewards = compile_fast(run, key)(key)
        return float(rewards.sum(0).mean())

    random_return = episode_return(lambda o, k: jax.random.uniform(k, (64, 2), minval=-1, maxval=1))
    pd_return = episode_return(lambda o, k: jnp.clip(3.0 * (o[:, 4:6] - o[:, 0:2]) - o[:, 2:4], -1, 1))
    assert pd_return > 3.0 * random_return and pd_return > 30.0


def test_auto_reset_keeps_true_final_obs():
    n, length = 3, 5
    actions = jax.random.uniform(jax.random.PRNGKey(2), (length + 2, n, 2), minval=-1, maxval=1)
    auto = make_vector_env("toy_reach", n, episode_length=length, auto_reset=True)
    frozen = make_vector_env("toy_reach", n, episode_length=length, auto_reset=False)
    _, ta = _rollout(auto, jax.random.PRNGKey(3), actions)
    _, tf = _rollout(frozen, jax.random.PRNGKey(3), actions)
    last = length - 1
    # Before the limit both agree, and final_obs is obs.
    np.testing.assert_allclose(np.asarray(ta.obs[:last]), np.asarray(tf.obs[:last]))
    np.testing.assert_allclose(np.asarray(ta.info["final_obs"][:last]), np.asarray(ta.obs[:last]))
    # At the limit: final_obs is the true last obs, obs is a reset obs.
    np.testing.assert_allclose(np.asarray(ta.info["final_obs"][last]), np.asarray(tf.obs[last]))
    assert np.all(np.abs(np.asarray(ta.obs[last] - ta.info["final_obs"][last])).max(-1) > 1e-3)
    np.testing.assert_array_equal(np.asarray(ta.obs[last, :, 2:4]), 0.0)  # reset velocity is zero
    np.testing.assert_array_equal(np.asarray(ta.done[last]), 1.0)
    np.testing.assert_array_equal(np.asarray(ta.info["truncated"][last]), 1.0)
    np.testing.assert_array_equal(np.asarray(ta.info["terminated"][last]), 0.0)
    np.testing.assert_array_equal(np.asarray(ta.info["steps"][:, 0]), [1, 2, 3, 4, 0, 1, 2])
    # The reward of the last step belongs to the finished episode.
    np.testing.assert_allclose(np.asarray(ta.reward[last]), np.asarray(tf.reward[last]))
    # Without auto-reset, done envs freeze: same obs, zero reward, still done.
    np.testing.assert_allclose(np.asarray(tf.obs[last + 1 :]), np.broadcast_to(np.asarray(tf.obs[last]), tf.obs[last + 1 :].shape))
    np.testing.assert_array_equal(np.asarray(tf.reward[last + 1 :]), 0.0)
    np.testing.assert_array_equal(np.asarray(tf.done[last:]), 1.0)
    np.testing.assert_array_equal(np.asarray(tf.info["steps"][last:]), length)
    # After the reset the auto env keeps going from the new state.
    assert np.asarray(ta.done[last + 1 :]).sum() == 0


def _push_out_actions(t, n):
    return jnp.ones((t, n, 2))  # full force along (1, 1) leaves the box in ~25 steps


def test_termination_and_truncation_kept_apart():
    n = 2
    long_env = make_vector_env("toy_reach", n, episode_length=1000, auto_reset=False)
    _, traj = _rollout(long_env, jax.random.PRNGKey(4), _push_out_actions(60, n))
    term = np.asarray(traj.info["terminated"])
    assert np.all(term[-1] == 1.0) and np.all(np.asarray(traj.info["truncated"]) == 0.0)
    t_end = int(np.argmax(term[:, 0]))  # index of the terminating step of env 0
    assert np.abs(np.asarray(traj.info["final_obs"][t_end, 0, :2])).max() > toy.BOX
    # A time limit before the exit truncates without terminating ...
    short = make_vector_env("toy_reach", n, episode_length=t_end, auto_reset=False)
    _, traj_s = _rollout(short, jax.random.PRNGKey(4), _push_out_actions(t_end, n))
    assert float(traj_s.info["truncated"][-1, 0]) == 1.0 and float(traj_s.info["terminated"][-1, 0]) == 0.0
    # ... and a time limit on the exit step itself counts as termination only.
    exact = make_vector_env("toy_reach", n, episode_length=t_end + 1, auto_reset=False)
    _, traj_e = _rollout(exact, jax.random.PRNGKey(4), _push_out_actions(t_end + 1, n))
    assert float(traj_e.info["terminated"][-1, 0]) == 1.0 and float(traj_e.info["truncated"][-1, 0]) == 0.0
    assert float(traj_e.done[-1, 0]) == 1.0


@pytest.mark.parametrize("repeat", [2, 3])
def test_action_repeat_sums_reward_and_counts_control_steps(repeat):
    n, length = 2, 10
    vector_steps = -(-length // repeat)  # ceil: the limit can fall inside a repeat
    actions = jax.random.uniform(jax.random.PRNGKey(5), (vector_steps, n, 2), minval=-1, maxval=1)
    rep = make_vector_env("toy_reach", n, episode_length=length, action_repeat=repeat, auto_reset=False)
    one = make_vector_env("toy_reach", n, episode_length=length, action_repeat=1, auto_reset=False)
    _, tr = _rollout(rep, jax.random.PRNGKey(6), actions)
    _, t1 = _rollout(one, jax.random.PRNGKey(6), jnp.repeat(actions, repeat, axis=0)[:length])
    done = np.asarray(tr.done[:, 0])
    assert done[-1] == 1.0 and done[:-1].sum() == 0  # ends after ceil(L / k) vector steps
    np.testing.assert_array_equal(np.asarray(tr.info["steps"][:, 0]), np.minimum(np.arange(1, vector_steps + 1) * repeat, length))
    padded = np.concatenate([np.asarray(t1.reward), np.zeros((vector_steps * repeat - length, n))])
    np.testing.assert_allclose(np.asarray(tr.reward), padded.reshape(vector_steps, repeat, n).sum(1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(tr.obs[-1]), np.asarray(t1.obs[-1]), rtol=1e-6)
    assert float(tr.info["truncated"][-1, 0]) == 1.0


def test_action_repeat_freezes_after_termination_inside_repeat():
    n, repeat = 2, 4
    one = make_vector_env("toy_reach", n, episode_length=1000, auto_reset=False)
    _, t1 = _rollout(one, jax.random.PRNGKey(7), _push_out_actions(60, n))
    t_end = int(np.argmax(np.asarray(t1.done[:, 0])))  # sub-step index of the exit
    if (t_end + 1) % repeat == 0:
        pytest.fail("pick a key where the exit falls inside a repeat")  # keeps the test meaningful
    rep = make_vector_env("toy_reach", n, episode_length=1000, action_repeat=repeat, auto_reset=True)
    _, tr = _rollout(rep, jax.random.PRNGKey(7), _push_out_actions(t_end // repeat + 1, n))
    np.testing.assert_allclose(float(tr.reward[-1, 0]), float(t1.reward[(t_end // repeat) * repeat : t_end + 1, 0].sum()), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(tr.info["final_obs"][-1, 0]), np.asarray(t1.obs[t_end, 0]), rtol=1e-6)
    assert float(tr.info["terminated"][-1, 0]) == 1.0 and float(tr.done[:-1, 0].sum()) == 0.0


def test_reset_keys_give_fresh_initial_states():
    n, length = 4, 3
    env = make_vector_env("toy_reach", n, episode_length=length)
    state0, traj = _rollout(env, jax.random.PRNGKey(8), jnp.zeros((2 * length, n, 2)))
    first_reset = np.asarray(traj.obs[length - 1])  # all envs reset together here
    second_reset = np.asarray(traj.obs[2 * length - 1])
    for obs in (np.asarray(state0.obs), first_reset, second_reset):
        assert len({tuple(np.round(o, 5)) for o in obs}) == n  # envs differ from each other
    assert not np.allclose(first_reset, np.asarray(state0.obs))  # not the initial state again
    assert not np.allclose(second_reset, first_reset)


def test_pytree_structure_fixed_and_vmappable_over_seeds():
    env = make_vector_env("toy_reach", 3, episode_length=2, action_repeat=2)
    state = env.reset(jax.random.PRNGKey(0))
    stepped = jax.eval_shape(env.step, state, jnp.zeros((3, 2)))
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(stepped)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(stepped)):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert set(state.info) >= {"terminated", "truncated", "final_obs", "steps", "reset_key"}
    # No two leaves share a buffer (obs vs final_obs, reward vs done), so the
    # state can be donated to a jitted train step.
    for s in (state, make_vector_env("toy_reach", 3, auto_reset=False).reset(jax.random.PRNGKey(0))):
        pointers = [leaf.unsafe_buffer_pointer() for leaf in jax.tree_util.tree_leaves(s)]
        assert len(set(pointers)) == len(pointers)
        jax.jit(lambda x: x, donate_argnums=0)(s)
    # vmap over seeds: the auto-reset lax.cond becomes a select and still works.
    seeds = jax.random.split(jax.random.PRNGKey(1), 2)
    states = jax.vmap(env.reset)(seeds)
    actions = jnp.zeros((2, 3, 2))
    states = compile_fast(jax.vmap(env.step), states, actions)(states, actions)
    assert states.obs.shape == (2, 3, 6)
    np.testing.assert_array_equal(np.asarray(states.done), 1.0)
    np.testing.assert_array_equal(np.asarray(states.info["steps"]), 0)
