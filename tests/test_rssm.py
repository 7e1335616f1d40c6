"""RSSM world model: shapes/jit/vmap, KL and free nats, episode-end masking, learning a linear system."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl.models.base import (
    ModelStats,
    init_model_stats,
    normalize_obs,
    open_loop,
    update_model_stats,
)
from mjxmbrl.models.rssm import (
    RSSMModelConfig,
    RSSMNet,
    gaussian_kl,
    make_rssm_model,
    make_rssm_net,
    posterior_sequence,
)
from mjxmbrl.types import MjxmbrlError, Transition

OBS, ACT = 3, 2
BELIEF, STATE = 16, 4
SMALL = dataclasses.replace(RSSMModelConfig(), belief_size=BELIEF, state_size=STATE, hidden_size=16, embedding_size=16)


def random_batch(key, b=2, t=6, obs=OBS, act=ACT):
    k_obs, k_act, k_rew, k_next = jax.random.split(key, 4)
    zeros = jnp.zeros((b, t))
    return Transition(
        obs=jax.random.normal(k_obs, (b, t, obs)),
        action=jax.random.uniform(k_act, (b, t, act), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k_rew, (b, t)),
        next_obs=jax.random.normal(k_next, (b, t, obs)),
        terminated=zeros,
        truncated=zeros,
    )


@pytest.fixture(scope="module")
def small():
    model = make_rssm_model(SMALL, OBS, ACT)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    return model, params


def test_shapes_jit_and_vmap_over_particles(small):
    model, params = small
    assert model.name == "rssm" and model.termination is None and not model.uses_sim_state
    assert set(params) == {"net", "stats"} and isinstance(params["stats"], ModelStats)
    obs = jnp.array([0.5, -1.0, 2.0])
    action = jnp.array([0.3, -0.2])
    key = jax.random.PRNGKey(1)

    z0 = jax.jit(model.initial_state)(params, obs, key)
    assert z0["h"].shape == (BELIEF,) and z0["s"].shape == (STATE,)
    np.testing.assert_array_equal(z0["h"], 0.0)  # the filter starts from a zero belief
    z1 = jax.jit(model.step)(params, z0, action, key)
    assert z1["h"].shape == (BELIEF,) and z1["s"].shape == (STATE,)
    assert jax.jit(model.observation)(params, z1).shape == (OBS,)
    assert jax.jit(model.reward)(params, z0, action, z1).shape == ()

    P = 8
    zs = jax.jit(model.initial_particles, static_argnums=3)(params, obs, key, P)
    assert zs["h"].shape == (P, BELIEF) and zs["s"].shape == (P, STATE)
    assert float(jnp.std(zs["s"], axis=0).min()) > 0.0  # particles draw different posterior samples
    actions = jnp.tile(action, (P, 1))
    keys = jax.random.split(key, P)
    zs1 = jax.jit(jax.vmap(model.step, in_axes=(None, 0, 0, 0)))(params, zs, actions, keys)
    assert zs1["h"].shape == (P, BELIEF) and zs1["s"].shape == (P, STATE)
    obs1 = jax.jit(jax.vmap(model.observation, in_axes=(None, 0)))(params, zs1)
    rewards = jax.jit(jax.vmap(model.reward, in_axes=(None, 0, 0, 0)))(params, zs, actions, zs1)
    assert obs1.shape == (P, OBS) and rewards.shape == (P,)
    assert bool(jnp.all(jnp.isfinite(obs1))) and bool(jnp.all(jnp.isfinite(rewards)))
    # The step is stochastic (prior sample) but its belief is deterministic given (h, s, a).
    z1b = model.step(params, z0, action, jax.random.PRNGKey(2))
    np.testing.assert_allclose(z1b["h"], z1["h"], rtol=1e-6)
    assert not np.allclose(z1b["s"], z1["s"])

    # observation() de-normalises: obs = decoder * std + mean.
    stats = params["stats"]
    shifted = dataclasses.replace(stats.obs, mean=stats.obs.mean + 5.0, var=stats.obs.var * 4.0)
    params2 = {"net": params["net"], "stats": ModelStats(obs=shifted, delta=stats.delta)}
    base = model.observation(params, z1)  # fresh stats: mean 0, std 1, so this is the decoder output
    np.testing.assert_allclose(model.observation(params2, z1), 2.0 * base + 5.0, rtol=1e-5, atol=1e-5)

    loss, metrics = jax.jit(model.loss)(params, random_batch(key), jnp.ones((2, 6)), key)
    assert loss.shape == () and bool(jnp.isfinite(loss))
    assert set(metrics) == {"model/loss", "model/obs_loss", "model/reward_loss", "model/kl"}

    with pytest.raises(MjxmbrlError, match="pixels"):
        make_rssm_model(dataclasses.replace(SMALL, pixels=True), OBS, ACT)


def test_gaussian_kl_closed_form():
    # KL[N(0, 1) || N(1, 2^2)] = log 2 + (1 + 1) / 8 - 1/2 per dimension; summed over 2 dims.
    q = (jnp.zeros(2), jnp.ones(2))
    p = (jnp.ones(2), 2.0 * jnp.ones(2))
    np.testing.assert_allclose(gaussian_kl(q, p), 2 * (np.log(2.0) + 0.25 - 0.5), rtol=1e-6)
    np.testing.assert_allclose(gaussian_kl(p, p), 0.0, atol=1e-7)


def test_free_nats_clamp():
    key = jax.random.PRNGKey(3)
    batch = random_batch(key)
    mask = jnp.ones((2, 6))

    def loss_and_prior_grad(free_nats, kl_scale):
        model = make_rssm_model(dataclasses.replace(SMALL, free_nats=free_nats, kl_scale=kl_scale), OBS, ACT)
        params = jax.jit(model.init)(jax.random.PRNGKey(0))

        def f(net):
            return model.loss({"net": net, "stats": params["stats"]}, batch, mask, key)

        (loss, metrics), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(params["net"])
        return loss, metrics, grads["params"]

    # free_nats far above every step's KL: the KL term is the constant kl_scale * free_nats
    # and the prior, which only enters through the KL, receives no gradient at all.
    loss, metrics, grads = loss_and_prior_grad(100.0, 0.5)
    assert 0.0 < float(metrics["model/kl"]) < 100.0
    kl_part = float(loss - metrics["model/obs_loss"] - metrics["model/reward_loss"])
    np.testing.assert_allclose(kl_part, 50.0, rtol=1e-5)
    for leaf in jax.tree_util.tree_leaves(grads["prior_net"]):
        np.testing.assert_array_equal(leaf, 0.0)
    assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree_util.tree_leaves(grads["posterior_net"]))

    # Without free nats the KL is the unclamped mean and it trains the prior.
    loss, metrics, grads = loss_and_prior_grad(0.0, 0.5)
    kl_part = float(loss - metrics["model/obs_loss"] - metrics["model/reward_loss"])
    np.testing.assert_allclose(kl_part, 0.5 * float(metrics["model/kl"]), rtol=1e-5)
    assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree_util.tree_leaves(grads["prior_net"])) > 1e-6


def test_masked_steps_do_not_change_the_loss(small):
    model, params = small
    key = jax.random.PRNGKey(4)
    batch = random_batch(key)
    # Window 0's episode ends at transition 2 (its next_obs is still the true successor);
    # transitions 3..5 belong to the next episode and are masked out.
    mask = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], jnp.float32)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, b: model.loss(p, b, mask, key)[0]))
    loss, grads = value_and_grad(params, batch)

    def perturb(field, window, t):
        return batch._replace(**{field: getattr(batch, field).at[window, t].add(3.0)})

    for field in ("obs", "action", "reward", "next_obs"):
        for t in (3, 4, 5):
            loss2, grads2 = value_and_grad(params, perturb(field, 0, t))
            assert float(loss2) == float(loss), (field, t)
            for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads2)):
                np.testing.assert_array_equal(a, b)
    # Valid steps matter: the episode's last successor and reward, an earlier action, and
    # the same step index in the other window, whose episode has not ended.
    for field, window, t in (("next_obs", 0, 2), ("reward", 0, 2), ("action", 0, 1), ("next_obs", 1, 4)):
        changed = float(value_and_grad(params, perturb(field, window, t))[0])
        assert abs(changed - float(loss)) > 1e-4, (field, window, t)


def linear_system_batch(key, a_mat, b_mat, n, t):
    """Windows of x' = A x + B a from x_0 ~ N(0, I), uniform actions, reward -|x'|^2."""
    k_x, k_a = jax.random.split(key)
    actions = jax.random.uniform(k_a, (n, t, b_mat.shape[1]), minval=-1.0, maxval=1.0)

    def body(x, a):
        x_next = x @ a_mat.T + a @ b_mat.T
        return x_next, (x, x_next)

    _, (xs, next_xs) = jax.lax.scan(body, jax.random.normal(k_x, (n, a_mat.shape[0])), jnp.swapaxes(actions, 0, 1))
    xs, next_xs = jnp.swapaxes(xs, 0, 1), jnp.swapaxes(next_xs, 0, 1)
    zeros = jnp.zeros((n, t))
    return Transition(xs, actions, -jnp.sum(next_xs**2, -1), next_xs, zeros, zeros)


def test_learns_a_linear_system():
    dim, act, n, horizon = 3, 1, 64, 10
    k_sys, k_b, k_train, k_test, k_init = jax.random.split(jax.random.PRNGKey(7), 5)
    q, _ = jnp.linalg.qr(jax.random.normal(k_sys, (dim, dim)))
    a_mat, b_mat = 0.9 * q, 0.5 * jax.random.normal(k_b, (dim, act))  # stable: |eig| = 0.9, rotating
    train = linear_system_batch(k_train, a_mat, b_mat, n, horizon)
    test = linear_system_batch(k_test, a_mat, b_mat, n, 5)
    mask = jnp.ones((n, horizon))

    # free_nats 1 (not 3): with a 4-d state and 10-step windows, 3 free nats per step let
    # the posterior carry much of each observation, which slows the prior's learning.
    cfg = dataclasses.replace(SMALL, belief_size=32, hidden_size=32, embedding_size=32, free_nats=1.0)
    model = make_rssm_model(cfg, dim, act)
    params = model.init(k_init)
    stats = update_model_stats(init_model_stats(dim), train)
    opt = optax.adam(1e-3)

    @jax.jit
    def update(net, opt_state, key):
        def f(net):
            return model.loss({"net": net, "stats": stats}, train, mask, key)

        (loss, metrics), grads = jax.value_and_grad(f, has_aux=True)(net)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(net, updates), opt_state, metrics

    @jax.jit
    def open_loop_error(net, key):
        p = {"net": net, "stats": stats}

        def one(obs0, actions, k):
            k_init, k_roll = jax.random.split(k)
            return open_loop(model, p, model.initial_state(p, obs0, k_init), actions, k_roll)[1]

        pred = jax.vmap(one)(test.obs[:, 0], test.action, jax.random.split(key, n))
        return jnp.mean(jnp.square((pred - test.next_obs) / jnp.sqrt(stats.obs.var)))

    net, opt_state = params["net"], opt.init(params["net"])
    key = jax.random.PRNGKey(8)
    error_before = float(open_loop_error(net, key))
    first = None
    for _ in range(300):
        key, k = jax.random.split(key)
        net, opt_state, metrics = update(net, opt_state, k)
        first = metrics if first is None else first
    error_after = float(open_loop_error(net, key))
    no_change = float(jnp.mean(jnp.square((test.obs[:, :1] - test.next_obs) / jnp.sqrt(stats.obs.var))))

    assert float(metrics["model/loss"]) < float(first["model/loss"]) / 4
    assert float(metrics["model/obs_loss"]) < float(first["model/obs_loss"]) / 10
    assert float(metrics["model/reward_loss"]) < float(first["model/reward_loss"]) / 10
    assert error_after < 0.25 * no_change, (error_after, no_change)
    assert error_after < 0.5 * error_before, (error_after, error_before)


# ---- filtering while acting ----------------------------------------------------------


def test_filter_over_a_window_is_the_loss_posterior_sequence(small):
    """initial_state + T filter steps with the loss's keys give the loss's (h, s) sequence, and the
    loss's reconstruction term is computed from that sequence."""
    model, params = small
    key = jax.random.PRNGKey(11)
    batch = random_batch(jax.random.PRNGKey(12), b=1, t=5)
    params = {"net": params["net"], "stats": update_model_stats(params["stats"], batch)}  # non-trivial stats
    obs_seq = jnp.concatenate([batch.obs[:, :1], batch.next_obs], axis=1)  # [1, T+1, D]

    net = make_rssm_net(SMALL, OBS)
    target = normalize_obs(params["stats"], obs_seq)
    embeddings = net.apply(params["net"], target, method=RSSMNet.encode)
    all_h, all_s, kl = posterior_sequence(net, params["net"], embeddings, batch.action, key)
    assert all_h.shape == (1, 6, BELIEF) and all_s.shape == (1, 6, STATE) and kl.shape == (1, 5)

    key_0, key_scan = jax.random.split(key)
    z = jax.jit(model.initial_state)(params, obs_seq[0, 0], key_0)
    hs, ss = [z["h"]], [z["s"]]
    filter_fn = jax.jit(model.filter)
    for t, k in enumerate(jax.random.split(key_scan, 5)):
        z = filter_fn(params, z, batch.action[0, t], obs_seq[0, t + 1], k)
        hs.append(z["h"])
        ss.append(z["s"])
    np.testing.assert_allclose(np.stack(hs), all_h[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack(ss), all_s[0], rtol=1e-5, atol=1e-6)

    _, metrics = model.loss(params, batch, jnp.ones((1, 5)), key)
    pred = net.apply(params["net"], all_h, all_s, method=RSSMNet.decode_obs)
    np.testing.assert_allclose(metrics["model/obs_loss"], jnp.mean(jnp.sum(jnp.square(pred - target), -1)), rtol=1e-5)


def test_filter_mechanics_and_planning_from_a_belief(small):
    model, params = small
    obs, action, key = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, -0.2]), jax.random.PRNGKey(13)
    z0 = model.initial_state(params, obs, key)
    filter_fn = jax.jit(model.filter)
    z1 = filter_fn(params, z0, action, obs + 1.0, key)
    assert z1["h"].shape == (BELIEF,) and z1["s"].shape == (STATE,)
    # h' = f(h, s, a) is the prior step's belief; the new observation moves only s'.
    np.testing.assert_allclose(z1["h"], model.step(params, z0, action, key)["h"], rtol=1e-6)
    z_other_obs = filter_fn(params, z0, action, obs - 1.0, key)
    np.testing.assert_array_equal(z_other_obs["h"], z1["h"])
    assert not np.allclose(z_other_obs["s"], z1["s"])
    z_other_action = filter_fn(params, z0, -action, obs + 1.0, key)
    assert not np.allclose(z_other_action["h"], z1["h"])

    # rollout="mean": the filter takes the posterior mean, whatever the key.
    mean_model = make_rssm_model(dataclasses.replace(SMALL, rollout="mean"), OBS, ACT)
    a = mean_model.filter(params, z0, action, obs + 1.0, jax.random.PRNGKey(1))
    b = mean_model.filter(params, z0, action, obs + 1.0, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a["s"], b["s"])

    # With a belief, a plan starts from it: initial_state returns it, initial_particles tiles it.
    assert model.initial_state(params, obs, key, z1) is z1
    zs = jax.jit(model.initial_particles, static_argnums=3)(params, obs, key, 5, z1)
    assert zs["h"].shape == (5, BELIEF) and zs["s"].shape == (5, STATE)
    np.testing.assert_array_equal(zs["h"], np.broadcast_to(z1["h"], (5, BELIEF)))
    np.testing.assert_array_equal(zs["s"], np.broadcast_to(z1["s"], (5, STATE)))


def oscillator_windows(key, n, t):
    """A damped rotation x' = A x + B a of position and velocity, of which only the position is observed."""
    angle = 0.6
    a_mat = 0.95 * jnp.array([[jnp.cos(angle), -jnp.sin(angle)], [jnp.sin(angle), jnp.cos(angle)]])
    b_mat = jnp.array([[0.0], [0.5]])
    k_x, k_a = jax.random.split(key)
    actions = jax.random.uniform(k_a, (n, t, 1), minval=-1.0, maxval=1.0)

    def body(x, a):
        x_next = x @ a_mat.T + a @ b_mat.T
        return x_next, (x, x_next)

    _, (xs, next_xs) = jax.lax.scan(body, jax.random.normal(k_x, (n, 2)), jnp.swapaxes(actions, 0, 1))
    obs, next_obs = jnp.swapaxes(xs, 0, 1)[..., :1], jnp.swapaxes(next_xs, 0, 1)[..., :1]
    zeros = jnp.zeros((n, t))
    return Transition(obs, actions, -jnp.sum(next_obs**2, -1), next_obs, zeros, zeros)


def test_a_filtered_belief_predicts_better_than_a_restart():
    """With the velocity hidden, one observation cannot tell where the system goes; the belief
    filtered over the episode so far can. Open-loop predictions of the next 3 observations after
    k = 5 steps: from the filtered belief against a restart at the same observation."""
    n, horizon, k, ahead = 64, 10, 5, 3
    cfg = dataclasses.replace(SMALL, belief_size=32, hidden_size=32, embedding_size=32, free_nats=1.0, rollout="mean")
    model = make_rssm_model(cfg, 1, 1)
    train = oscillator_windows(jax.random.PRNGKey(20), n, horizon)
    test = oscillator_windows(jax.random.PRNGKey(21), n, k + ahead)
    stats = update_model_stats(init_model_stats(1), train)
    mask = jnp.ones((n, horizon))
    opt = optax.adam(3e-3)

    @jax.jit
    def update(net, opt_state, key):
        grads = jax.grad(lambda net: model.loss({"net": net, "stats": stats}, train, mask, key)[0])(net)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(net, updates), opt_state

    @jax.jit
    def errors(net):
        p = {"net": net, "stats": stats}

        def one(obs, actions, next_obs):
            z = model.initial_state(p, obs[0], None)
            z = jax.lax.fori_loop(0, k, lambda t, z: model.filter(p, z, actions[t], next_obs[t], None), z)
            restart = model.initial_state(p, next_obs[k - 1], None)
            pred_filtered = open_loop(model, p, z, actions[k:], jax.random.PRNGKey(0))[1]
            pred_restart = open_loop(model, p, restart, actions[k:], jax.random.PRNGKey(0))[1]
            return jnp.square(pred_filtered - next_obs[k:]), jnp.square(pred_restart - next_obs[k:])

        filtered, restarted = jax.vmap(one)(test.obs, test.action, test.next_obs)
        return jnp.mean(filtered), jnp.mean(restarted)

    net = model.init(jax.random.PRNGKey(22))["net"]
    opt_state, key = opt.init(net), jax.random.PRNGKey(23)
    for _ in range(300):
        key, step_key = jax.random.split(key)
        net, opt_state = update(net, opt_state, step_key)
    filtered, restarted = (float(e) for e in errors(net))
    assert filtered < 0.5 * restarted, (filtered, restarted)
