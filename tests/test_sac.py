"""SAC learner: exact-number helpers, target wiring, ensemble, temperature, learning (Polyak: test_ops.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl.agents import AGENTS
from mjxmbrl.learners.sac import (
    SACConfig,
    SACState,
    make_sac,
    soft_td_target,
    target_entropy_at,
)
from mjxmbrl.nn.networks import CriticEnsemble, GaussianActor
from mjxmbrl.types import MjxmbrlError, Transition

OBS, ACT, B = 3, 1, 64
# A decaying target entropy lets one compiled `update` see a target above (+3 at t=0) and
# below (-10 at t>=T) the policy's entropy, so the temperature test needs no second compile.
SMALL = SACConfig(
    hidden_sizes=(32, 32),
    actor_lr=1e-3,
    critic_lr=1e-3,
    alpha_lr=1e-2,
    entropy_schedule="decay",
    target_entropy_init=3.0,
    target_entropy_final=-10.0,
    entropy_decay_beta=1.0,
)
TOTAL = 1000
ACTOR = GaussianActor(ACT, SMALL.hidden_sizes, SMALL.log_std_min, SMALL.log_std_max)  # same module as SAC's


def random_batch(key, n=B, terminated=0.0, truncated=0.0):
    k_obs, k_act, k_rew, k_next = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k_obs, (n, OBS)),
        action=jax.random.uniform(k_act, (n, ACT), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k_rew, (n,)),
        next_obs=jax.random.normal(k_next, (n, OBS)),
        terminated=jnp.full((n,), terminated, jnp.float32),
        truncated=jnp.full((n,), truncated, jnp.float32),
    )


@pytest.fixture(scope="module")
def small():
    """The small learner, its initial state and its jitted update (compiled once, shared)."""
    learner = make_sac(SMALL, OBS, ACT, TOTAL)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    return learner, state, jax.jit(learner.update)


def policy_outputs(learner):
    """One compiled function for every policy path (XLA compiles dominate test time)."""

    @jax.jit
    def outputs(state, obs, key, flag):
        params = learner.policy_params(state)
        return {
            "sampled": learner.policy(params, obs, key, False),
            "mode": learner.policy(params, obs, key, True),
            "traced": learner.policy(params, obs, key, flag),
            "value": learner.value(state, obs, key),
            "pre_tanh_mean": ACTOR.apply(params, obs)[0],
        }

    return outputs


EVAL_OBS_SHAPE = (16, 32, OBS)  # leading axes [16, 32] exercise batched obs


# ---------------------------------------------------------------- pure helpers


def test_target_entropy_decay_exact():
    cfg = SACConfig(
        entropy_schedule="decay", target_entropy_init=0.0, target_entropy_final=-10.0, entropy_decay_beta=2.0
    )
    # Amos et al. Eq. 14 with T = 1000: H_t = (0 - (-10)) (1 - t/1000)^2 - 10
    #   t = 0:    10 * 1    - 10 =   0
    #   t = 250:  10 * 0.5625 - 10 = -4.375
    #   t = 500:  10 * 0.25 - 10 =  -7.5
    #   t = 1000: 10 * 0    - 10 = -10;  t = 5000 clips to T -> -10;  t = -5 clips to 0 -> 0
    for t, expected in [(0, 0.0), (250, -4.375), (500, -7.5), (1000, -10.0), (5000, -10.0), (-5, 0.0)]:
        np.testing.assert_allclose(target_entropy_at(cfg, 6, 1000, t), expected, atol=1e-6)
    linear = dataclasses.replace(cfg, target_entropy_init=1.0, target_entropy_final=-2.0, entropy_decay_beta=1.0)
    # beta = 1, t = 250 of 1000: 3 * 0.75 - 2 = 0.25
    np.testing.assert_allclose(target_entropy_at(linear, 6, 1000, 250), 0.25, atol=1e-6)
    traced = jax.jit(lambda t: target_entropy_at(cfg, 6, 1000, t))(jnp.int32(500))
    np.testing.assert_allclose(traced, -7.5, atol=1e-6)
    # Fractional beta at t = T: 1 - t/T must not round below 0 (a negative base gives NaN).
    frac = dataclasses.replace(cfg, entropy_decay_beta=2.5)
    at_end = jax.jit(lambda t: target_entropy_at(frac, 6, 1000, t))(jnp.int32(1000))
    assert float(at_end) == -10.0


def test_target_entropy_constant():
    assert float(target_entropy_at(SACConfig(), 6, 1000, 123)) == -6.0
    assert float(target_entropy_at(SACConfig(target_entropy=1.5), 6, 1000, 0)) == 1.5


def test_soft_td_target_exact():
    reward = jnp.array([1.0, 2.0, 2.0])
    terminated = jnp.array([1.0, 0.0, 0.0])
    next_q = jnp.array([[5.0, 3.0, -1.0], [4.0, 6.0, -2.0]])  # min over critics: [4, 3, -2]
    next_log_prob = jnp.array([0.5, -1.0, 0.0])
    # reward_scale 2, discount 0.9, alpha 0.2:
    #   [0] terminated: 2 * 1 = 2 (next value 4 - 0.1 ignored)
    #   [1] 2 * 2 + 0.9 * (3 - 0.2 * (-1)) = 4 + 2.88 = 6.88
    #   [2] 2 * 2 + 0.9 * (-2 - 0) = 2.2
    target = soft_td_target(reward, terminated, next_q, next_log_prob, 0.2, 0.9, 2.0)
    np.testing.assert_allclose(target, [2.0, 6.88, 2.2], atol=1e-6)


def test_ensemble_members_differ_at_init():
    net = CriticEnsemble(num_critics=3, hidden_sizes=(16,))
    obs, act = jnp.ones((5, OBS)), jnp.zeros((5, ACT))
    params = jax.jit(net.init)(jax.random.PRNGKey(0), obs, act)
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.shape[0] == 3
    kernel = params["params"]["members"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])
    q = np.asarray(jax.jit(net.apply)(params, obs, act))
    assert q.shape == (3, 5)
    assert np.min(np.abs(q[0] - q[1])) > 1e-4 and np.min(np.abs(q[1] - q[2])) > 1e-4


def test_init_outputs_do_not_alias():
    # An init whose target critic aliased the online critic (same array twice) made a
    # donating jit fail on an eagerly built state: "Attempt to donate the same buffer twice".
    # Tracing (no compile) shows it: every output must be a distinct jaxpr variable.
    learner = make_sac(dataclasses.replace(SMALL, hidden_sizes=(4,)), OBS, ACT, TOTAL)
    outvars = jax.make_jaxpr(learner.init)(jax.random.PRNGKey(0)).jaxpr.outvars
    assert len({id(v) for v in outvars}) == len(outvars)


def test_registry_and_errors():
    assert AGENTS.get("sac").config is SACConfig
    with pytest.raises(MjxmbrlError, match="sac"):
        AGENTS.get("nope")
    with pytest.raises(MjxmbrlError, match="entropy_schedule"):
        make_sac(dataclasses.replace(SACConfig(), entropy_schedule="cosine"), OBS, ACT, TOTAL)


# ---------------------------------------------------------------- the update step


def test_terminated_ignores_next_state_truncated_bootstraps(small):
    learner, state, update = small
    key = jax.random.PRNGKey(1)
    base = random_batch(jax.random.PRNGKey(2), terminated=1.0)
    other_next = base._replace(next_obs=base.next_obs + 5.0, truncated=jnp.ones(B))
    s_a, m_a = update(key, state, base, 0)
    s_b, m_b = update(key, state, other_next, 0)
    # terminated: the target is the reward alone, so next_obs cannot matter.
    assert float(m_a["learner/critic_loss"]) == float(m_b["learner/critic_loss"])
    for x, y in zip(jax.tree_util.tree_leaves(s_a.critic_params), jax.tree_util.tree_leaves(s_b.critic_params)):
        np.testing.assert_array_equal(x, y)
    # truncated only: the target bootstraps from next_obs, so moving it changes the loss.
    trunc = base._replace(terminated=jnp.zeros(B), truncated=jnp.ones(B))
    _, m_c = update(key, state, trunc, 0)
    _, m_d = update(key, state, trunc._replace(next_obs=trunc.next_obs + 5.0), 0)
    assert abs(float(m_c["learner/critic_loss"]) - float(m_d["learner/critic_loss"])) > 1e-4
    assert abs(float(m_c["learner/critic_loss"]) - float(m_a["learner/critic_loss"])) > 1e-4


def test_update_metrics_polyak_and_temperature(small):
    learner, state, update = small
    batch = random_batch(jax.random.PRNGKey(3))
    new, metrics = update(jax.random.PRNGKey(4), state, batch, 0)
    assert isinstance(new, SACState)
    assert set(metrics) == {
        "learner/critic_loss",
        "learner/actor_loss",
        "learner/alpha_loss",
        "learner/alpha",
        "learner/entropy",
        "learner/target_entropy",
        "learner/q_mean",
    }
    for name, value in metrics.items():
        assert value.shape == () and np.isfinite(value), name
    for leaf in jax.tree_util.tree_leaves(new):
        assert np.all(np.isfinite(leaf))
    np.testing.assert_allclose(metrics["learner/alpha"], SMALL.init_alpha, rtol=1e-6)
    np.testing.assert_allclose(metrics["learner/target_entropy"], 3.0, atol=1e-6)

    # Polyak: target moves exactly tau of the way to the updated online critic.
    for old_t, new_t, new_o in zip(
        jax.tree_util.tree_leaves(state.target_critic_params),
        jax.tree_util.tree_leaves(new.target_critic_params),
        jax.tree_util.tree_leaves(new.critic_params),
    ):
        np.testing.assert_allclose(new_t - old_t, SMALL.tau * (new_o - old_t), atol=1e-7)
    leaves = jax.tree_util.tree_leaves
    assert any(not np.allclose(a, b) for a, b in zip(leaves(state.critic_params), leaves(new.critic_params)))
    assert any(not np.allclose(a, b) for a, b in zip(leaves(state.actor_params), leaves(new.actor_params)))

    # Temperature (Eq. 8): a tanh-Gaussian on [-1, 1]^1 has entropy below log 2 < 3, so with
    # target +3 (t = 0) alpha grows; with target -10 (t >= T) the entropy is above it: alpha shrinks.
    entropy = float(metrics["learner/entropy"])
    assert entropy < 3.0
    assert float(new.log_alpha) > float(state.log_alpha)
    assert float(metrics["learner/alpha_loss"]) == pytest.approx(-float(state.log_alpha) * (-entropy + 3.0), rel=1e-5)
    low, m_low = update(jax.random.PRNGKey(4), state, batch, TOTAL + 7)
    assert float(m_low["learner/target_entropy"]) == -10.0
    assert float(low.log_alpha) < float(state.log_alpha)


def test_policy_and_value(small):
    learner, state, _ = small
    outputs = policy_outputs(learner)
    obs = jax.random.normal(jax.random.PRNGKey(5), EVAL_OBS_SHAPE) * 10.0
    out = outputs(state, obs, jax.random.PRNGKey(6), True)
    sampled, mode = out["sampled"], out["mode"]
    assert sampled.shape == mode.shape == EVAL_OBS_SHAPE[:-1] + (ACT,)
    assert np.all(np.abs(np.asarray(sampled)) <= 1.0) and np.all(np.abs(np.asarray(mode)) <= 1.0)
    assert not np.allclose(sampled, mode)
    np.testing.assert_allclose(mode, np.tanh(out["pre_tanh_mean"]), atol=1e-6)
    np.testing.assert_array_equal(out["traced"], mode)
    out_false = outputs(state, obs, jax.random.PRNGKey(6), False)
    np.testing.assert_array_equal(out_false["traced"], sampled)
    np.testing.assert_array_equal(outputs(state, obs, jax.random.PRNGKey(7), True)["mode"], mode)
    assert out["value"].shape == EVAL_OBS_SHAPE[:-1] and np.all(np.isfinite(out["value"]))


def test_learns_contextual_bandit(small):
    # One-step bandit: reward -(a - 0.8 obs_0)^2, every step terminal, so Q*(s, a) = r(s, a)
    # and the best deterministic action is a* = 0.8 obs_0 in [-0.8, 0.8]. Reuses the fixture's
    # compiled update (target entropy -10 at env_steps >= T) and uniform behaviour actions.
    learner, state, update = small
    outputs = policy_outputs(learner)
    rng = np.random.default_rng(0)
    eval_obs = rng.uniform(-1.0, 1.0, EVAL_OBS_SHAPE).astype(np.float32)

    def policy_error(state):
        action = outputs(state, eval_obs, jax.random.PRNGKey(0), True)["mode"]
        return float(np.mean(np.square(np.asarray(action) - 0.8 * eval_obs[..., :ACT])))

    error_before = policy_error(state)
    losses = []
    key = jax.random.PRNGKey(10)
    for i in range(300):
        obs = rng.uniform(-1.0, 1.0, (B, OBS)).astype(np.float32)
        action = rng.uniform(-1.0, 1.0, (B, ACT)).astype(np.float32)
        reward = -np.sum(np.square(action - 0.8 * obs[:, :ACT]), axis=-1)
        batch = Transition(obs, action, reward, obs, np.ones(B, np.float32), np.zeros(B, np.float32))
        state, metrics = update(jax.random.fold_in(key, i), state, batch, TOTAL)
        losses.append(float(metrics["learner/critic_loss"]))
    losses = np.asarray(losses)
    error_after = policy_error(state)
    assert np.all(np.isfinite(losses))
    assert losses[-20:].mean() < 0.25 * losses[:20].mean(), (losses[:20].mean(), losses[-20:].mean())
    # A policy that ignores obs has error ~ E[(0.8 obs_0)^2] = 0.213.
    assert error_before > 0.1, error_before
    assert error_after < 0.02, error_after


# ---------------------------------------------------------------- n-step targets and critic layer norm


def test_n_step_batch_exact():
    """Hand-computed windows: a full window, one cut by an episode end, one cut by a termination."""
    from mjxmbrl.learners.sac import n_step_batch
    from mjxmbrl.replay.buffer import sequence_mask

    gamma, n = 0.9, 3
    reward = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    terminated = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    truncated = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    next_obs = jnp.arange(3 * n, dtype=jnp.float32).reshape(3, n, 1)
    window = Transition(
        obs=-next_obs, action=jnp.zeros((3, n, 1)), reward=reward, next_obs=next_obs,
        terminated=terminated, truncated=truncated, valid=jnp.ones((3, n)),
    )
    mask = sequence_mask(jnp.maximum(terminated, truncated))
    batch, discount = n_step_batch(window, mask, gamma)
    np.testing.assert_allclose(batch.reward, [1 + 0.9 * 2 + 0.81 * 3, 1.0, 1 + 0.9 * 2], rtol=1e-6)
    np.testing.assert_allclose(discount, [0.9**3, 0.9, 0.9**2], rtol=1e-6)
    np.testing.assert_array_equal(batch.next_obs[:, 0], [2.0, 3.0, 7.0])  # the last step of each episode part
    np.testing.assert_array_equal(batch.terminated, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(batch.obs[:, 0], [0.0, -3.0, -6.0])  # step 0's observation


def test_n_step_one_step_window_equals_one_step_update(small):
    """n_step = 2 on windows whose step 0 ends an episode is the one-step update of step 0 exactly."""
    learner, state, update = small
    n_learner = make_sac(dataclasses.replace(SMALL, n_step=2), OBS, ACT, TOTAL)
    base = random_batch(jax.random.PRNGKey(7), truncated=1.0)
    second = random_batch(jax.random.PRNGKey(8))
    window = jax.tree.map(lambda a, b: jnp.stack([a, b], axis=1), base, second)
    mask = jnp.stack([jnp.ones(B), jnp.zeros(B)], axis=1)
    key = jax.random.PRNGKey(9)
    s_one, m_one = update(key, state, base, 0)
    s_two, m_two = jax.jit(n_learner.update)(key, state, (window, mask), 0)
    np.testing.assert_allclose(float(m_one["learner/critic_loss"]), float(m_two["learner/critic_loss"]), rtol=1e-6)
    # With the whole window in one episode the target changes: the second reward counts.
    full = jnp.ones((B, 2))
    _, m_full = jax.jit(n_learner.update)(key, state, (window, full), 0)
    assert abs(float(m_full["learner/critic_loss"]) - float(m_one["learner/critic_loss"])) > 1e-4
    assert n_learner.ready_rows == 2 and n_learner.sample is not None


def test_critic_layer_norm_option():
    plain = make_sac(SMALL, OBS, ACT, TOTAL).init(jax.random.PRNGKey(0))
    normed = make_sac(dataclasses.replace(SMALL, critic_layer_norm=True), OBS, ACT, TOTAL).init(jax.random.PRNGKey(0))
    names = lambda params: {"/".join(str(getattr(k, "key", k)) for k in path) for path, _ in
                            jax.tree_util.tree_flatten_with_path(params)[0]}
    assert not any("LayerNorm" in n for n in names(plain.critic_params))
    assert any("LayerNorm" in n for n in names(normed.critic_params))
    assert not any("LayerNorm" in n for n in names(normed.actor_params))  # the actor is unchanged
    with pytest.raises(MjxmbrlError, match="n_step"):
        make_sac(dataclasses.replace(SMALL, n_step=0), OBS, ACT, TOTAL)


def test_planner_values_are_in_the_task_reward_units():
    """The critic regresses reward_scale * r; value and q_value (a planner's terminal values, added to returns of
    the task's reward) divide it back: the same networks give half the values at reward_scale 2."""
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, OBS))
    key = jax.random.PRNGKey(2)
    plain = make_sac(SMALL, OBS, ACT, TOTAL)
    scaled = make_sac(dataclasses.replace(SMALL, reward_scale=2.0), OBS, ACT, TOTAL)
    state = plain.init(jax.random.PRNGKey(0))
    for fn in ("value", "q_value"):
        base = np.asarray(getattr(plain, fn)(state, obs, key))
        assert np.abs(base).max() > 1e-3
        np.testing.assert_allclose(np.asarray(getattr(scaled, fn)(state, obs, key)), 0.5 * base, rtol=1e-5, atol=1e-7)
