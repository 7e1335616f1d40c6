"""World models: interface, exact formulas, masks, ensembles, the oracle, and learning on toy data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.config import EnvConfig
from mjxmbrl.envs.groups import OBS_GROUPS
from mjxmbrl.envs.registry import ENV_SPECS
from mjxmbrl.models import make_model
from mjxmbrl.models.base import (
    init_model_stats,
    multi_step_errors,
    normalized_sq_error,
    update_model_stats,
)
from mjxmbrl.models.ensemble import (
    EnsembleModelConfig,
    half_batch_weights,
    member_assignment,
)
from mjxmbrl.models.gru import GRUModelConfig
from mjxmbrl.models.mlp import MLPModelConfig, check_groups
from mjxmbrl.models.oracle import OracleModelConfig
from mjxmbrl.models.trainer import make_model_trainer
from mjxmbrl.types import Transition

TOY = EnvConfig(name="toy_reach")
D, A = 6, 2
SMALL = {
    "mlp": MLPModelConfig(hidden_sizes=(32, 32)),
    "gru": GRUModelConfig(encoder_sizes=(32,), gru_size=32, decoder_sizes=(32,), head_sizes=(32,)),
    "ensemble": EnsembleModelConfig(hidden_sizes=(32, 32), num_members=3),
}


def random_batch(key, b=8, t=5, d=D, a=A):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k1, (b, t, d)),
        action=jax.random.uniform(k2, (b, t, a), minval=-1, maxval=1),
        reward=jax.random.normal(k3, (b, t)),
        next_obs=jax.random.normal(k4, (b, t, d)),
        terminated=jnp.zeros((b, t)),
        truncated=jnp.zeros((b, t)),
    )


def toy_sequences(key, b=64, t=8):
    """Windows of a linear point-mass system (the toy task's dynamics without its goal reset)."""
    k_obs, k_act = jax.random.split(key)
    obs0 = jax.random.normal(k_obs, (b, D))
    actions = jax.random.uniform(k_act, (b, t, A), minval=-1, maxval=1)

    def step(o, a):
        vel = 0.95 * o[:, 2:4] + 0.2 * a
        pos = o[:, 0:2] + 0.05 * vel
        nxt = jnp.concatenate([pos, vel, o[:, 4:6]], axis=-1)
        return nxt, (o, nxt)

    _, (obs, nxt) = jax.lax.scan(step, obs0, jnp.swapaxes(actions, 0, 1))
    obs, nxt = jnp.swapaxes(obs, 0, 1), jnp.swapaxes(nxt, 0, 1)
    reward = -jnp.sum(jnp.square(nxt[..., 0:2]), -1)
    zeros = jnp.zeros((b, t))
    return Transition(obs, actions, reward, nxt, zeros, zeros)


def with_stats(params, batch):
    return {**params, "stats": update_model_stats(init_model_stats(batch.obs.shape[-1]), batch)}


# ---- observation groups ------------------------------------------------------------


def test_declared_groups_tile_every_observation():
    for name, groups in OBS_GROUPS.items():
        check_groups(groups, ENV_SPECS[name].obs_size)  # raises on gaps, overlaps, bad velocity indices


def test_check_groups_rejects_gaps_and_bad_velocities():
    from mjxmbrl.envs.groups import ObsGroup

    with pytest.raises(ValueError, match="tile"):
        check_groups((ObsGroup("a", 0, 2), ObsGroup("b", 3, 4)), 4)
    with pytest.raises(ValueError, match="velocity"):
        check_groups((ObsGroup("q", 0, 2, (2, 5)), ObsGroup("v", 2, 4)), 4)


# ---- interface ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "gru", "ensemble"])
def test_learned_models_build_step_and_jit(name):
    cfg = SMALL[name]
    model = make_model(cfg, TOY, D, A)
    trainer = make_model_trainer(model, cfg)
    key = jax.random.PRNGKey(0)
    state = trainer.init(key)
    batch = random_batch(key)
    state, metrics = jax.jit(trainer.update)(key, state, batch, jnp.ones((8, 5)))
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert "model/loss" in metrics and "model/error_step1" in metrics
    z = model.initial_particles(state.params, batch.obs[0, 0], key, 16)
    z = jax.jit(jax.vmap(lambda z, k: model.step(state.params, z, jnp.zeros(A), k)))(z, jax.random.split(key, 16))
    obs = jax.vmap(lambda z: model.observation(state.params, z))(z)
    assert obs.shape == (16, D) and np.all(np.isfinite(obs))


def test_gru_reward_and_termination_heads():
    cfg = SMALL["gru"]
    model = make_model(cfg, TOY, D, A)
    params = model.init(jax.random.PRNGKey(0))
    z = model.initial_state(params, jnp.ones(D), jax.random.PRNGKey(1))
    z1 = model.step(params, z, jnp.zeros(A), jax.random.PRNGKey(2))
    assert model.reward(params, z, jnp.zeros(A), z1).shape == ()
    p = model.termination(params, z, jnp.zeros(A), z1)
    assert 0.0 < float(p) < 1.0
    assert make_model(dataclasses.replace(cfg, learn_reward=False), TOY, D, A).reward is None


@pytest.mark.parametrize("name", ["mlp", "gru", "ensemble"])
def test_planner_reads_the_reward_and_termination_the_loss_fits(name):
    """Model.reward / Model.termination (what planners score) give back the head losses (Eq. 11, 13) exactly."""
    cfg = dataclasses.replace(SMALL[name], learn_reward=True, learn_termination=True)
    model = make_model(cfg, TOY, D, A)
    batch = random_batch(jax.random.PRNGKey(7))
    # Observations far from zero mean and unit scale, so the heads' input normalisation matters.
    batch = batch._replace(obs=3.0 + 5.0 * batch.obs, terminated=(batch.reward > 0.5).astype(jnp.float32))
    params = with_stats(model.init(jax.random.PRNGKey(0)), batch)
    _, metrics = model.loss(params, batch, jnp.ones((8, 5)), jax.random.PRNGKey(8))

    def scored(obs, action):
        z = model.initial_state(params, obs, jax.random.PRNGKey(9))
        return model.reward(params, z, action, z), model.termination(params, z, action, z)

    reward, p_done = jax.vmap(jax.vmap(scored))(batch.obs, batch.action)  # [B, T] each
    np.testing.assert_allclose(float(metrics["model/reward_loss"]), float(jnp.mean((reward - batch.reward) ** 2)), rtol=1e-5)
    d = batch.terminated
    nll = -jnp.mean(d * jnp.log(p_done) + (1.0 - d) * jnp.log1p(-p_done))
    np.testing.assert_allclose(float(metrics["model/termination_loss"]), float(nll), rtol=1e-4)


def test_termination_loss_ignores_truncations():
    """Eq. 13 is fitted to `terminated` only: a time-limit cut is not a termination."""
    from mjxmbrl.nn.heads import termination_loss

    logits = jnp.array([0.0, 2.0])
    assert float(termination_loss(logits, jnp.array([1.0, 0.0]))) == pytest.approx(
        float(jnp.mean(jnp.array([jnp.log(2.0), jnp.log1p(jnp.exp(2.0))]))), rel=1e-6
    )
    cfg = SMALL["gru"]
    model = make_model(cfg, TOY, D, A)
    params = with_stats(model.init(jax.random.PRNGKey(0)), random_batch(jax.random.PRNGKey(1)))
    batch = random_batch(jax.random.PRNGKey(1))
    truncated = batch._replace(truncated=jnp.ones_like(batch.truncated))
    key = jax.random.PRNGKey(2)
    mask = jnp.ones((8, 5))
    assert model.loss(params, batch, mask, key)[1]["model/termination_loss"] == model.loss(params, truncated, mask, key)[1]["model/termination_loss"]
    terminated = batch._replace(terminated=jnp.ones_like(batch.terminated))
    assert model.loss(params, terminated, mask, key)[1]["model/termination_loss"] != model.loss(params, batch, mask, key)[1]["model/termination_loss"]


# ---- exact formulas --------------------------------------------------------------


def test_per_group_mlp_integrates_positions_from_predicted_velocities():
    """With all network outputs zero, Eq. 17 gives s + mu and Eq. 18 gives q + (v + mu_v) dt."""
    cfg = SMALL["mlp"]
    model = make_model(cfg, dataclasses.replace(TOY, action_repeat=2), D, A)
    dt = ENV_SPECS["toy_reach"].ctrl_dt * 2
    params = with_stats(model.init(jax.random.PRNGKey(0)), random_batch(jax.random.PRNGKey(1)))
    params = {**params, "net": jax.tree.map(jnp.zeros_like, params["net"])}
    obs = jnp.array([0.1, -0.2, 0.5, 1.5, 0.3, 0.4])
    mu = params["stats"].delta.mean
    nxt = model.step(params, obs, jnp.zeros(A), jax.random.PRNGKey(0))
    v_next = obs[2:4] + mu[2:4]
    np.testing.assert_allclose(nxt[2:6], obs[2:6] + mu[2:6], rtol=1e-6)
    np.testing.assert_allclose(nxt[0:2], obs[0:2] + v_next * dt, rtol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_multi_step_loss_equals_python_loop(name):
    """Eq. 20 / Eq. 10 by hand: roll each window open loop with a Python loop and average."""
    cfg = SMALL[name]
    model = make_model(cfg, TOY, D, A)
    batch = random_batch(jax.random.PRNGKey(3), b=4, t=4)
    params = with_stats(model.init(jax.random.PRNGKey(0)), batch)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], jnp.float32)
    loss, metrics = model.loss(params, batch, mask, jax.random.PRNGKey(4))
    std = np.sqrt(np.maximum(np.asarray(params["stats"].obs.var), 1e-6))
    per_dim = []
    for b in range(4):
        z = model.initial_state(params, batch.obs[b, 0], None)
        for t in range(4):
            z = model.step(params, z, batch.action[b, t], None)
            if mask[b, t]:
                err = ((np.asarray(model.observation(params, z)) - np.asarray(batch.next_obs[b, t])) / std) ** 2
                per_dim.append(err)
    per_dim = np.stack(per_dim)
    if name == "gru":
        expected = per_dim.mean() + float(metrics["model/reward_loss"]) + float(metrics["model/termination_loss"])
    else:
        expected = sum(per_dim[:, g.start : g.stop].mean() for g in OBS_GROUPS["toy_reach"])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_masked_steps_do_not_change_the_loss(name):
    """Steps after an episode end (mask 0) belong to another episode and must not count."""
    cfg = dataclasses.replace(SMALL[name], learn_reward=False, learn_termination=False)
    model = make_model(cfg, TOY, D, A)
    batch = random_batch(jax.random.PRNGKey(5))
    params = with_stats(model.init(jax.random.PRNGKey(0)), batch)
    mask = jnp.ones((8, 5)).at[:, 3:].set(0.0)
    key = jax.random.PRNGKey(6)
    base = float(model.loss(params, batch, mask, key)[0])
    later = batch._replace(
        next_obs=batch.next_obs.at[:, 3:].add(100.0), action=batch.action.at[:, 3:].set(-batch.action[:, 3:])
    )
    assert float(model.loss(params, later, mask, key)[0]) == pytest.approx(base, rel=1e-6)
    earlier = batch._replace(next_obs=batch.next_obs.at[:, 2].add(1.0))
    assert float(model.loss(params, earlier, mask, key)[0]) != pytest.approx(base, rel=1e-3)


# ---- ensemble ------------------------------------------------------------------------


def test_ts_inf_assignment_splits_particles_evenly():
    counts = np.bincount(np.asarray(member_assignment(256, 4)), minlength=4)
    assert counts.tolist() == [64, 64, 64, 64]
    assert np.bincount(np.asarray(member_assignment(10, 3))).tolist() == [4, 3, 3]
    model = make_model(SMALL["ensemble"], TOY, D, A)
    params = model.init(jax.random.PRNGKey(0))
    z = model.initial_particles(params, jnp.zeros(D), jax.random.PRNGKey(1), 9)
    assert np.bincount(np.asarray(z["member"])).tolist() == [3, 3, 3]


def test_each_member_gets_its_own_half_of_the_batch():
    w = np.asarray(half_batch_weights(jax.random.PRNGKey(0), 5, 100))
    assert w.shape == (5, 100) and np.all(w.sum(axis=1) == 50)
    assert len({tuple(row) for row in w}) == 5  # different halves


def test_ts_inf_keeps_each_particle_on_its_member_and_mean_mode_is_deterministic():
    cfg = SMALL["ensemble"]
    model = make_model(cfg, TOY, D, A)
    params = model.init(jax.random.PRNGKey(0))
    z = model.initial_particles(params, jnp.ones(D), jax.random.PRNGKey(1), 6)
    z1 = jax.vmap(lambda z, k: model.step(params, z, jnp.zeros(A), k))(z, jax.random.split(jax.random.PRNGKey(2), 6))
    np.testing.assert_array_equal(z1["member"], z["member"])
    mean_model = make_model(dataclasses.replace(cfg, rollout="mean"), TOY, D, A)
    z0 = mean_model.initial_state(params, jnp.ones(D), jax.random.PRNGKey(3))
    a = mean_model.step(params, z0, jnp.zeros(A), jax.random.PRNGKey(4))["obs"]
    b = mean_model.step(params, z0, jnp.zeros(A), jax.random.PRNGKey(5))["obs"]
    np.testing.assert_array_equal(a, b)


def test_ensemble_members_differ_after_training():
    cfg = dataclasses.replace(SMALL["ensemble"], rollout="mean")
    model = make_model(cfg, TOY, D, A)
    trainer = make_model_trainer(model, cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update)
    for i in range(150):
        batch = toy_sequences(jax.random.PRNGKey(100 + i), b=64, t=1)
        state, metrics = update(jax.random.PRNGKey(i), state, batch, jnp.ones((64, 1)))
    test = toy_sequences(jax.random.PRNGKey(7), b=32, t=1)
    from mjxmbrl.models.base import normalize_obs
    from mjxmbrl.models.ensemble import GaussianMember

    member = GaussianMember(D, tuple(cfg.hidden_sizes), cfg.init_max_logvar, cfg.init_min_logvar)
    x = jnp.concatenate([normalize_obs(state.params["stats"], test.obs[:, 0]), test.action[:, 0]], -1)
    means, _ = jax.vmap(member.apply, in_axes=(0, None))(state.params["net"]["members"], x)
    spread = float(jnp.mean(jnp.std(means, axis=0)))
    assert spread > 1e-3, spread  # members differ
    assert float(metrics["model/mse"]) < 0.2  # and each has learned the change


# ---- learning ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_models_learn_toy_dynamics(name):
    cfg = dataclasses.replace(SMALL[name], learning_rate=3e-3)
    model = make_model(cfg, TOY, D, A)
    trainer = make_model_trainer(model, cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update)
    test = toy_sequences(jax.random.PRNGKey(999), b=64, t=8)
    mask = jnp.ones((64, 8))
    first = None
    for i in range(200):
        state, metrics = update(jax.random.PRNGKey(i), state, toy_sequences(jax.random.PRNGKey(i), b=64, t=8), mask)
        first = first if first is not None else float(metrics["model/error_step8"])
    errors = multi_step_errors(model, state.params, test, jax.random.PRNGKey(0))
    no_change = normalized_sq_error(test.obs[:, :1], test.next_obs, state.params["stats"])
    assert float(errors[:, -1].mean()) < 0.2 * float(no_change[:, -1].mean())
    assert float(errors[:, -1].mean()) < 0.2 * first


# ---- oracle --------------------------------------------------------------------------


def test_oracle_reproduces_the_env_transitions_exactly():
    from mjxmbrl.envs import make_vector_env
    from mjxmbrl.models.base import open_loop

    env_cfg = EnvConfig(name="CartpoleSwingup", action_repeat=2)
    model = make_model(OracleModelConfig(), env_cfg, 5, 1)
    assert model.loss is None and model.uses_sim_state
    env = make_vector_env("CartpoleSwingup", 3, action_repeat=2, auto_reset=False)
    state = env.reset(jax.random.PRNGKey(0))
    actions = jax.random.uniform(jax.random.PRNGKey(1), (6, 3, 1), minval=-1, maxval=1)
    env_obs, env_rewards = [], []
    s = state
    for t in range(6):
        s = env.step(s, actions[t])
        env_obs.append(s.obs)
        env_rewards.append(s.reward)
    params = model.init(None)

    def roll(belief, acts):
        z0 = model.initial_state(params, belief.obs, None, belief)
        zs, obs = open_loop(model, params, z0, acts, jax.random.PRNGKey(0))
        return obs, zs.reward

    obs, rewards = jax.jit(jax.vmap(roll, in_axes=(0, 1)))(state, actions)
    np.testing.assert_array_equal(np.swapaxes(np.asarray(obs), 0, 1), np.stack(env_obs))
    np.testing.assert_array_equal(np.swapaxes(np.asarray(rewards), 0, 1), np.stack(env_rewards))
    with pytest.raises(ValueError, match="belief"):
        model.initial_state(params, state.obs[0], None)


def test_gaussian_nll_and_beta_weighting_exact():
    """(y - m)^2 e^{-lv} + lv per dim, mean over dims; beta-NLL scales each dim by e^{beta lv} (no gradient)."""
    from mjxmbrl.models.ensemble import gaussian_nll

    mean, logvar, y = jnp.array([0.0, 1.0]), jnp.array([0.0, jnp.log(4.0)]), jnp.array([1.0, 3.0])
    # dim 0: 1 * 1 + 0 = 1; dim 1: 4 / 4 + log 4 = 1 + 1.3863
    plain = 0.5 * (1.0 + 1.0 + np.log(4.0))
    assert float(gaussian_nll(mean, logvar, y)) == pytest.approx(plain, rel=1e-6)
    weighted = 0.5 * (1.0 * 1.0 + (1.0 + np.log(4.0)) * 2.0)  # e^{0.5 log 4} = 2
    assert float(gaussian_nll(mean, logvar, y, 0.5)) == pytest.approx(weighted, rel=1e-6)
    grad_m = jax.grad(lambda m: gaussian_nll(m, logvar, y, 0.5))(mean)
    # d/dm of 0.5 * w * (y - m)^2 e^{-lv}: -w (y - m) e^{-lv}; dim 1: -2 * 2 / 4 = -1; dim 0: -1
    np.testing.assert_allclose(grad_m, [-1.0, -1.0], rtol=1e-6)
