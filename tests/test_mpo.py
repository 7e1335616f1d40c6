"""MPO + BC learner (Byravan et al. 2022): Retrace with cut traces, the E-step temperature dual, the
decoupled M-step trust regions, behaviour cloning, the value histogram's support; hand-computed cases,
plain-Python loop references and a few short runs of the learner on a fixed batch of windows."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmbrl import ops
from mjxmbrl.learners import mpo
from mjxmbrl.nn.distributions import diag_gaussian_kl, diag_gaussian_log_prob
from mjxmbrl.nn.networks import DistributionalCritic, TanhMeanGaussianPolicy
from mjxmbrl.types import ConfigError, Transition

OBS_SIZE, ACTION_SIZE, BATCH, SEQ_LEN = 3, 2, 8, 5


# ---------------------------------------------------------------- helpers


def softmax_np(x):
    z = np.exp(x - np.max(x))
    return z / np.sum(z)


def kl_to_uniform(q, eta):
    """KL(softmax(q / eta) || uniform over the N entries), float64 numpy."""
    p = softmax_np(np.asarray(q, np.float64) / eta)
    return float(np.sum(p * np.log(p * len(p))))


def episode_mask(done):
    """mask[b, t] = 1 iff no step s < t of the window has done = 1 (the replay's sequence_mask)."""
    before = np.cumsum(done, axis=-1) - done
    return (before == 0).astype(np.float32)


def make_windows(seed, batch=BATCH, seq_len=SEQ_LEN, same_state=None, same_action=None):
    """A fixed batch (Transition [B, T], mask [B, T]) shaped like the replay's windows.

    Observations chain (next_obs[t] = obs[t + 1]) except where an episode ended (terminated or
    truncated): there next_obs is the final observation and obs[t + 1] a reset one; the mask is 0
    after the first episode end; about a third of the steps are planned. `same_state` /
    `same_action` put one state and one executed action in every step (the BC test).
    """
    rng = np.random.default_rng(seed)
    chain = rng.normal(size=(batch, seq_len + 1, OBS_SIZE)).astype(np.float32)
    final = rng.normal(size=(batch, seq_len, OBS_SIZE)).astype(np.float32)
    terminated = np.zeros((batch, seq_len), np.float32)
    truncated = np.zeros((batch, seq_len), np.float32)
    terminated[1, 2] = terminated[5, 0] = 1.0
    truncated[2, 1] = truncated[6, 3] = 1.0
    done = np.maximum(terminated, truncated)
    next_obs = np.where(done[..., None] > 0, final, chain[:, 1:])
    obs = chain[:, :-1]
    action = rng.uniform(-0.9, 0.9, size=(batch, seq_len, ACTION_SIZE)).astype(np.float32)
    if same_state is not None:
        obs = next_obs = np.broadcast_to(np.asarray(same_state, np.float32), obs.shape)
    if same_action is not None:
        action = np.broadcast_to(np.asarray(same_action, np.float32), action.shape)
    extras = {
        mpo.BEHAVIOUR_LOG_PROB: rng.normal(-1.0, 1.0, size=(batch, seq_len)).astype(np.float32),
        "planned": (rng.uniform(size=(batch, seq_len)) < 0.3).astype(np.float32),
    }
    seq = Transition(
        obs=jnp.asarray(obs), action=jnp.asarray(action),
        reward=jnp.asarray(rng.uniform(size=(batch, seq_len)), jnp.float32), next_obs=jnp.asarray(next_obs),
        terminated=jnp.asarray(terminated), truncated=jnp.asarray(truncated), valid=jnp.ones((batch, seq_len)),
        extras={k: jnp.asarray(v) for k, v in extras.items()},
    )
    return seq, jnp.asarray(episode_mask(done))


def small_config(**overrides):
    base = {"policy_hidden_sizes": (16,), "critic_hidden_sizes": (16,), "batch_size": BATCH, "seq_len": SEQ_LEN,
            "num_action_samples": 8, "num_bins": 21, "target_update_period": 10_000}
    return mpo.MPOConfig(**{**base, **overrides})


def policy_net(cfg):
    return TanhMeanGaussianPolicy(ACTION_SIZE, tuple(cfg.policy_hidden_sizes), cfg.min_std)


def policy_states(seq, mask):
    """The states the M-step runs on, [B (T + 1), D], and their weights (as in `update`)."""
    states = jnp.concatenate([seq.obs[:, :1], seq.next_obs], axis=1).reshape(-1, OBS_SIZE)
    weights = jnp.concatenate([mask[:, :1], mask], axis=1).reshape(-1)
    return states, weights


def positive_inverse(x):
    """The raw dual parameter whose value `softplus(raw) + 1e-8` is x (the learner's parametrisation)."""
    return x + jnp.log(-jnp.expm1(-x))


@functools.cache
def run_learner(overrides, num_updates, batch_kwargs=(), init_alphas=()):
    """`num_updates` learner updates on one fixed batch; one jitted program (init + scan) per config, cached.

    Each entry (alpha_mean, alpha_std, frozen) of `init_alphas` is one run from the same initial networks with
    those initial multipliers, held there after every update when `frozen` (none: the config's). Returns per
    run a namespace: cfg, learner, batch, state0, keys, the final state, the per-update metrics and the
    per-update KL(pi_target || pi_online) of the mean and the covariance halves after the update (the
    M-step's definitions, weighted over the M-step's states).
    """
    cfg = small_config(**dict(overrides))
    learner = mpo.make_mpo(cfg, OBS_SIZE, ACTION_SIZE, total_env_steps=1000, action_repeat=1)
    batch = make_windows(0, **dict(batch_kwargs))
    policy = policy_net(cfg)
    keys = jax.random.split(jax.random.PRNGKey(1), num_updates)

    @jax.jit
    def go(alphas, batch):
        states, weights = policy_states(*batch)
        state0 = learner.init(jax.random.PRNGKey(0))
        if alphas is not None:
            raw = {"alpha_mean": positive_inverse(alphas[0]), "alpha_std": positive_inverse(alphas[1])}
            state0 = state0.replace(duals={**state0.duals, **raw})

        def body(state, key):
            state, metrics = learner.update(key, state, batch, jnp.zeros((), jnp.int32))
            if alphas is not None:
                held = {name: jnp.where(alphas[2] > 0, state0.duals[name], state.duals[name])
                        for name in ("alpha_mean", "alpha_std")}
                state = state.replace(duals={**state.duals, **held})
            old_mean, old_std = policy.apply(state.target_policy_params, states)
            mean, std = policy.apply(state.policy_params, states)
            kl_mean = mpo.weighted_mean(diag_gaussian_kl(old_mean, old_std, mean, old_std), weights)
            kl_std = mpo.weighted_mean(diag_gaussian_kl(old_mean, old_std, old_mean, std), weights)
            return state, (metrics, kl_mean, kl_std)

        state, (metrics, kl_mean, kl_std) = jax.lax.scan(body, state0, keys)
        return state0, state, metrics, kl_mean, kl_std

    runs, compiled = [], None
    for alphas in init_alphas or (None,):
        alphas = None if alphas is None else jnp.asarray(alphas, jnp.float32)
        # XLA's CPU backend at optimisation level 0 compiles this program in about a third of the time
        # (the compile, not the 100 updates, is what these tests spend).
        options = {"xla_backend_optimization_level": 0}
        compiled = compiled or go.lower(alphas, batch).compile(compiler_options=options)
        state0, state, metrics, kl_mean, kl_std = compiled(alphas, batch)
        runs.append(types.SimpleNamespace(cfg=cfg, learner=learner, batch=batch, state0=state0, keys=keys, state=state,
                                          metrics=jax.tree.map(np.asarray, metrics), kl_mean=np.asarray(kl_mean),
                                          kl_std=np.asarray(kl_std)))
    return runs


# The trust-region runs: a policy learning rate at which one Adam step stays inside the trust region but 100
# unconstrained steps leave it many times over. On: paper-scale initial multipliers (E.1: 10 and 1000; 100 here)
# adapted by the duals' steps (dual_lr 0.1); off: the multipliers held at 1e-6 (the temperature adapts in both).
TRUST_REGION = (("policy_lr", 1e-3), ("epsilon_mean", 2e-3), ("epsilon_std", 2e-4), ("init_temperature", 1.0),
                ("dual_lr", 0.1))
ALPHAS_ON, ALPHAS_OFF = (10.0, 100.0, 0.0), (1e-6, 1e-6, 1.0)
NUM_UPDATES = 100


def trust_region_runs():
    return run_learner(TRUST_REGION, NUM_UPDATES, init_alphas=(ALPHAS_ON, ALPHAS_OFF))


# ---------------------------------------------------------------- value histogram support


def test_value_range_defaults_and_overrides():
    """value_range: +-reward_scale * action_repeat / (1 - discount) unless v_min / v_max are given."""
    assert mpo.value_range(mpo.MPOConfig(), 1) == pytest.approx((-100.0, 100.0))
    assert mpo.value_range(mpo.MPOConfig(discount=0.9, reward_scale=0.5), 4) == pytest.approx((-20.0, 20.0))
    assert mpo.value_range(mpo.MPOConfig(v_min=0.0, v_max=300.0), 2) == (0.0, 300.0)
    assert mpo.value_range(mpo.MPOConfig(v_max=50.0), 1) == pytest.approx((-100.0, 50.0))


def test_two_hot_round_trip_and_projection_on_the_learner_support():
    """On the learner's 101-bin support [-100, 100]: two_hot_inverse(two_hot(x)) = clip(x), and projecting a
    histogram's Bellman update r + gamma z back onto the support keeps its mass and the mean of the clipped
    atoms. test_ops.py checks small supports; this is the learner's own one."""
    cfg = mpo.MPOConfig()
    bins = np.linspace(*mpo.value_range(cfg, 1), cfg.num_bins).astype(np.float32)
    assert bins.shape == (101,) and bins[1] - bins[0] == pytest.approx(2.0)
    x = np.array([-250.0, -100.0, -99.3, -37.25, -0.4, 0.0, 1.0, 13.7, 64.01, 99.99, 100.0, 100.5, 1e6], np.float32)
    probs = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (101,))), np.float64)
    atoms = [0.5 + 0.9 * bins, 30.0 + 0.99 * bins]  # inside [-89.5, 90.5]; beyond v_max from z > 70.7 on

    @jax.jit
    def compute(x, probs, atoms, bins):
        hot = ops.two_hot(x, bins)
        projected = jax.vmap(ops.categorical_projection, in_axes=(0, None, None))(atoms, probs, bins)
        return hot, ops.two_hot_inverse(hot, bins), projected, ops.two_hot_inverse(projected, bins)

    hot, back, projected, projected_mean = (np.asarray(a, np.float64) for a in compute(x, probs.astype(np.float32),
                                                                                      np.stack(atoms), bins))
    np.testing.assert_allclose(hot.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(back, np.clip(x, -100.0, 100.0), atol=1e-4)
    np.testing.assert_allclose(hot[7, 56:58], [0.15, 0.85], atol=1e-5)  # 13.7: 0.85 of the way from 12 to 14
    np.testing.assert_allclose(projected.sum(-1), 1.0, atol=1e-5)
    for i, a in enumerate(atoms):
        assert projected_mean[i] == pytest.approx(np.sum(probs * np.clip(a, -100.0, 100.0)), abs=1e-3)
    assert projected[1, -1] >= probs[atoms[1] >= 100.0].sum()  # atoms beyond v_max pile onto it


# ---------------------------------------------------------------- Retrace


def retrace_reference(q, next_values, rewards, terminated, truncated, planned, mask, log_pi, log_mu, gamma, lam):
    """One window, from the definition: G_t = Q_t + sum_{j>=t} (prod_{k=t+1..j} d_{k-1} c_k) (r_j + d_j V_j - Q_j)
    with d_k = gamma (1 - terminated_k) and c_k = lambda min(1, pi/mu), or 0 where step k was planned,
    an episode ended at k - 1 (terminated or truncated) or mask_k = 0."""
    length = len(q)
    d = [gamma * (1.0 - float(terminated[k])) for k in range(length)]
    c = []
    for k in range(length):
        ended_before = k > 0 and max(float(terminated[k - 1]), float(truncated[k - 1])) > 0.5
        if planned[k] > 0.5 or ended_before or mask[k] < 0.5:
            c.append(0.0)
        else:
            c.append(lam * min(1.0, math.exp(float(log_pi[k]) - float(log_mu[k]))))
    out = []
    for t in range(length):
        total, weight = float(q[t]), 1.0
        for j in range(t, length):
            if j > t:
                weight *= d[j - 1] * c[j]
            total += weight * (float(rewards[j]) + d[j] * float(next_values[j]) - float(q[j]))
        out.append(total)
    return np.array(out)


def test_retrace_log_rhos_by_hand():
    """The log-ratio is log pi - log mu, and -1e9 (trace exp(.) exactly 0) where the action was planned,
    the previous step ended an episode, or the step is masked."""
    log_pi = jnp.array([[-1.0, -2.0, -0.5, -1.5, -1.0]])
    log_mu = jnp.array([[-2.0, -1.0, -1.0, -1.0, -3.0]])
    planned = jnp.array([[0.0, 1.0, 0.0, 0.0, 0.0]])
    done = jnp.array([[0.0, 0.0, 1.0, 0.0, 0.0]])  # ends at step 2: step 3 belongs to the next episode
    mask = jnp.array([[1.0, 1.0, 1.0, 1.0, 0.0]])
    out = mpo.retrace_log_rhos(log_pi, log_mu, planned, done, mask)
    np.testing.assert_allclose(out[0, [0, 2]], [1.0, 0.5])
    assert np.all(np.asarray(out[0, [1, 3, 4]]) == -1e9)
    assert np.all(np.exp(np.asarray(out[0, [1, 3, 4]])) == 0.0)


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_retrace_with_cut_traces_matches_loop(lam):
    """vmap(ops.retrace_targets) over [B, T] with mpo.retrace_log_rhos equals the definition's loop on random
    windows with terminations, truncations, planned steps and masked steps (as the learner calls it)."""
    rng = np.random.default_rng(int(lam * 10))
    b, t, gamma = 6, 9, 0.95
    def f32(x):
        return np.asarray(x, np.float32)

    q, values, rewards = (f32(rng.normal(size=(b, t))) for _ in range(3))
    log_pi, log_mu = f32(rng.normal(-1.0, 1.0, size=(b, t))), f32(rng.normal(-1.0, 1.0, size=(b, t)))
    terminated = f32(rng.uniform(size=(b, t)) < 0.15)
    truncated = f32(rng.uniform(size=(b, t)) < 0.15)
    planned = f32(rng.uniform(size=(b, t)) < 0.25)
    mask = f32(rng.uniform(size=(b, t)) > 0.1)
    # every case occurs, and some traces pass (c > 0) and are truncated (pi/mu > 1)
    assert terminated.sum() > 0 and truncated.sum() > 0 and planned.sum() > 0 and (1 - mask).sum() > 0
    done = np.maximum(terminated, truncated)

    log_rhos = mpo.retrace_log_rhos(log_pi, log_mu, planned, done, mask)
    got = jax.jit(jax.vmap(ops.retrace_targets, in_axes=(0, 0, 0, 0, 0, None)), static_argnums=5)(
        q, values, rewards, gamma * (1.0 - terminated), log_rhos, lam
    )
    expected = np.stack([
        retrace_reference(q[i], values[i], rewards[i], terminated[i], truncated[i], planned[i], mask[i],
                          log_pi[i], log_mu[i], gamma, lam)
        for i in range(b)
    ])
    passing = np.asarray(log_rhos)[:, 1:] > -1e8
    assert passing.sum() >= 10 and (np.asarray(log_rhos)[:, 1:][passing] > 0).any()
    assert got.shape == (b, t)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # the cuts matter: the same windows without them give other targets
    uncut = jax.vmap(ops.retrace_targets, in_axes=(0, 0, 0, 0, 0, None))(
        q, values, rewards, gamma * (1.0 - terminated), log_pi - log_mu, lam)
    assert np.abs(np.asarray(uncut) - expected).max() > 1e-2


def test_learner_retrace_targets_match_loop():
    """The learner's first update computes its critic targets as the definition does: Q and V from the target
    critic (V_t the mean over the E-step's N samples at s_{t+1}), pi the target policy at s_t, mu the stored
    behaviour log-probability, d_t = gamma (1 - terminated_t), cuts at planned / new-episode / masked steps.
    Checked through the metric learner/retrace_target (the masked mean of the targets)."""
    run = trust_region_runs()[0]
    cfg, (seq, mask), state = run.cfg, run.batch, run.state0
    policy = policy_net(cfg)
    critic = DistributionalCritic(cfg.num_bins, tuple(cfg.critic_hidden_sizes))
    bins = jnp.linspace(*mpo.value_range(cfg, 1), cfg.num_bins)

    @jax.jit
    def inputs(state, seq, key):
        def q_mean(obs, action):
            logits = critic.apply(state.target_critic_params, obs, jnp.clip(action, -1.0, 1.0))
            return ops.two_hot_inverse(jax.nn.softmax(logits), bins)

        states = jnp.concatenate([seq.obs[:, :1], seq.next_obs], axis=1)
        mean, std = policy.apply(state.target_policy_params, states)
        sampled = mean[None] + std[None] * jax.random.normal(key, (cfg.num_action_samples,) + mean.shape)
        next_values = jnp.mean(q_mean(jnp.broadcast_to(states, sampled.shape[:-1] + states.shape[-1:]), sampled), 0)
        obs_mean, obs_std = policy.apply(state.target_policy_params, seq.obs)  # pi(a_t | s_t) at the window's own obs
        log_pi = diag_gaussian_log_prob(obs_mean, obs_std, seq.action)
        return q_mean(seq.obs, seq.action), next_values[:, 1:], log_pi

    q_executed, next_values, log_pi = (np.asarray(x) for x in inputs(state, seq, run.keys[0]))
    targets = np.stack([
        retrace_reference(q_executed[i], next_values[i], cfg.reward_scale * np.asarray(seq.reward[i]),
                          np.asarray(seq.terminated[i]), np.asarray(seq.truncated[i]),
                          np.asarray(seq.extras["planned"][i]), np.asarray(mask[i]), log_pi[i],
                          np.asarray(seq.extras[mpo.BEHAVIOUR_LOG_PROB][i]), cfg.discount, cfg.retrace_lambda)
        for i in range(seq.reward.shape[0])
    ])
    expected = float(np.sum(targets * np.asarray(mask)) / np.sum(np.asarray(mask)))
    assert float(run.metrics["learner/retrace_target"][0]) == pytest.approx(expected, rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------- E-step


def test_temperature_dual_minimiser_has_kl_epsilon():
    """For one state with N discrete Q values, the minimiser eta* of the dual (found in float64 on a
    log-spaced grid, then refined by bisection on the sign of its derivative) makes
    KL(softmax(q / eta*) || uniform) = epsilon."""
    q = np.array([0.3, -1.2, 2.0, 0.5, 1.1, -0.4, 0.9])
    epsilon = 0.1
    with jax.enable_x64(True):
        qj = jnp.asarray(q, jnp.float64)[:, None]  # [N, M = 1]
        dual = jax.jit(lambda eta: mpo.temperature_dual(qj, eta, epsilon))
        grid = np.logspace(-2.0, 2.0, 8001)
        values = np.asarray(jax.vmap(dual)(jnp.asarray(grid)))
        i = int(np.argmin(values))
        assert 0 < i < len(grid) - 1  # an interior minimum
        slope = jax.jit(jax.grad(dual))
        lo, hi = grid[i - 1], grid[i + 1]
        assert float(slope(lo)) < 0.0 < float(slope(hi))
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float(slope(mid)) < 0.0 else (lo, mid)
        eta_star = 0.5 * (lo + hi)
        assert float(dual(eta_star)) <= values.min() + 1e-12
    assert kl_to_uniform(q, eta_star) == pytest.approx(epsilon, abs=1e-9)
    assert kl_to_uniform(q, grid[i]) == pytest.approx(epsilon, abs=2e-3)  # the grid's own minimiser
    # the dual's slope is eps - KL: a smaller eta (sharper weights) has a larger KL, a larger eta a smaller one
    assert kl_to_uniform(q, 0.9 * eta_star) > epsilon > kl_to_uniform(q, 1.1 * eta_star)


def test_temperature_dual_by_hand_and_state_weights():
    """g(eta) = eta eps + eta mean_s log mean_n exp(Q / eta), the masked mean over states."""
    q = jnp.array([[0.0, 1.0], [math.log(3.0), 5.0]])  # N = 2 actions, M = 2 states
    # state 0: log((1 + 3) / 2) = log 2; eta = 1, eps = 0.1 -> 0.1 + log 2 with state 1 masked out
    got = mpo.temperature_dual(q, jnp.asarray(1.0), 0.1, jnp.array([1.0, 0.0]))
    assert float(got) == pytest.approx(0.1 + math.log(2.0), rel=1e-6)
    # both states, eta = 2: state 1: 2 log((e^0.5 + e^2.5) / 2)
    s0 = 2.0 * math.log((1.0 + math.sqrt(3.0)) / 2.0)
    s1 = 2.0 * math.log((math.exp(0.5) + math.exp(2.5)) / 2.0)
    got = mpo.temperature_dual(q, jnp.asarray(2.0), 0.1)
    assert float(got) == pytest.approx(0.2 + 0.5 * (s0 + s1), rel=1e-6)


def test_e_step_weights_are_softmax_without_gradient():
    """e_step_weights(q, eta) = softmax over the N samples of q / eta, per state, with no gradient to eta."""
    q = jnp.array([[0.3, -2.0], [-1.2, 0.0], [2.0, 1.0], [0.5, 4.0]])  # [N = 4, M = 2]
    for eta in (0.5, 1.7):
        got = mpo.e_step_weights(q, jnp.asarray(eta))
        for m in range(2):
            np.testing.assert_allclose(got[:, m], softmax_np(np.asarray(q[:, m], np.float64) / eta), rtol=1e-6)
    grad = jax.grad(lambda eta: jnp.sum(mpo.e_step_weights(q, eta) * q))(1.0)
    assert float(grad) == 0.0


# ---------------------------------------------------------------- M-step, KL and BC


def test_diag_gaussian_kl_closed_form():
    """KL(N(0, 1) || N(1, 2^2)) = log 2 + 2/8 - 1/2; other 1-D cases match numerical integration; the
    diagonal case sums its dimensions; KL(p || p) = 0."""
    one = diag_gaussian_kl(jnp.array([0.0]), jnp.array([1.0]), jnp.array([1.0]), jnp.array([2.0]))
    assert float(one) == pytest.approx(math.log(2.0) + 0.25 - 0.5, rel=1e-6)
    x = np.linspace(-30.0, 30.0, 600_001)
    cases = [(0.3, 0.7, -0.2, 1.3), (1.0, 2.0, 0.5, 0.6), (-0.4, 0.05, -0.3, 0.1)]
    for mp, sp, mq, sq in cases:
        log_p = -0.5 * ((x - mp) / sp) ** 2 - math.log(sp) - 0.5 * math.log(2 * math.pi)
        log_q = -0.5 * ((x - mq) / sq) ** 2 - math.log(sq) - 0.5 * math.log(2 * math.pi)
        integral = float(np.sum(np.exp(log_p) * (log_p - log_q)) * (x[1] - x[0]))
        got = diag_gaussian_kl(jnp.array([mp]), jnp.array([sp]), jnp.array([mq]), jnp.array([sq]))
        assert float(got) == pytest.approx(integral, rel=1e-4)
    params = [jnp.array([[c[k] for c in cases]]) for k in range(4)]  # [1, 3]: three dimensions at once
    summed = sum(float(diag_gaussian_kl(*[jnp.array([c[k]]) for k in range(4)])) for c in cases)
    assert float(diag_gaussian_kl(*params)[0]) == pytest.approx(summed, rel=1e-6)
    assert float(diag_gaussian_kl(params[0], params[1], params[0], params[1])[0]) == 0.0
    # log N(x; m, s) of a diagonal Gaussian: -0.5 z^2 - log s - log(2 pi) / 2 per dimension, summed
    lp = diag_gaussian_log_prob(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5]), jnp.array([1.5, 0.0]))
    assert float(lp) == pytest.approx(-0.125 - math.log(2.0) - 2.0 - math.log(0.5) - math.log(2 * math.pi), rel=1e-6)


def antithetic_actions(mean, std, num_samples, seed=0):
    """[N, M, A] samples mean + std e with e in +-pairs, rescaled so that per (m, a) the samples' mean is exactly
    `mean` and their mean squared deviation exactly std^2."""
    e = np.random.default_rng(seed).normal(size=(num_samples // 2,) + mean.shape)
    e = np.concatenate([e, -e]) / np.sqrt(np.mean(np.concatenate([e, -e]) ** 2, axis=0))
    return jnp.asarray(np.asarray(mean) + np.asarray(std) * e, jnp.float32)


def test_decoupled_m_step_is_stationary_at_the_old_policy():
    """With uniform E-step weights, samples whose mean and spread are the old policy's and online == old, the
    M-step loss has zero gradient in both the mean and the std, both KLs are 0 and the dual loss is
    alpha_mu eps_mu + alpha_Sigma eps_Sigma."""
    mean = jnp.array([[0.2, -0.3], [0.5, 0.1], [-0.7, 0.0]])
    std = jnp.array([[0.5, 1.0], [0.3, 0.7], [0.2, 0.4]])
    actions = antithetic_actions(mean, std, 16)
    weights = jnp.full((16, 3), 1.0 / 16)
    state_weights = jnp.ones((3,))

    def loss(mu, sigma):
        return mpo.decoupled_m_step(mu, sigma, mean, std, actions, weights, state_weights, 3.0, 7.0, 1e-2, 1e-4).loss

    g_mean, g_std = jax.jit(jax.grad(loss, argnums=(0, 1)))(mean, std)
    np.testing.assert_allclose(g_mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(g_std, 0.0, atol=1e-5)
    m = jax.jit(mpo.decoupled_m_step)(mean, std, mean, std, actions, weights, state_weights, 3.0, 7.0, 1e-2, 1e-4)
    assert float(m.kl_mean) == 0.0 and float(m.kl_std) == 0.0
    assert float(m.dual_loss) == pytest.approx(3.0 * 1e-2 + 7.0 * 1e-4, rel=1e-6)


def test_decoupled_m_step_gradients_and_kls_closed_form():
    """Non-uniform weights and a masked state: the gradients are the weighted-ML ones plus the multipliers times
    the KL gradients; the mean half's KL uses the old std and the std half's KL the old mean; the multipliers'
    gradients are eps - KL."""
    rng = np.random.default_rng(4)
    old_mean = jnp.asarray(rng.uniform(-0.5, 0.5, (3, 2)), jnp.float32)
    old_std = jnp.asarray(rng.uniform(0.3, 1.0, (3, 2)), jnp.float32)
    mean = old_mean + jnp.array([[0.1, -0.2], [0.05, 0.0], [0.3, 0.3]])
    std = old_std * jnp.array([[1.2, 0.9], [1.0, 1.1], [2.0, 2.0]])
    actions = jnp.asarray(rng.normal(size=(5, 3, 2)), jnp.float32)
    weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), axis=0)
    state_weights = jnp.array([1.0, 1.0, 0.0])  # the third state (far off) is masked out
    a_mu, a_sigma, eps_mu, eps_sigma = 2.0, 5.0, 1e-2, 1e-3

    m = jax.jit(mpo.decoupled_m_step)(mean, std, old_mean, old_std, actions, weights, state_weights, a_mu, a_sigma,
                                      eps_mu, eps_sigma)
    mu, s, mu0, s0, a, w = (np.asarray(x, np.float64) for x in (mean, std, old_mean, old_std, actions, weights))
    kl_mean = np.sum((mu - mu0) ** 2 / (2 * s0 ** 2), -1)[:2].mean()
    kl_std = np.sum(np.log(s / s0) + s0 ** 2 / (2 * s ** 2) - 0.5, -1)[:2].mean()
    assert float(m.kl_mean) == pytest.approx(kl_mean, rel=1e-5)
    assert float(m.kl_std) == pytest.approx(kl_std, rel=1e-5)

    g_mean, g_std = jax.jit(jax.grad(
        lambda x, y: mpo.decoupled_m_step(x, y, old_mean, old_std, actions, weights, state_weights,
                                          a_mu, a_sigma, eps_mu, eps_sigma).loss, argnums=(0, 1)))(mean, std)
    sw = np.array([1.0, 1.0, 0.0])[:, None] / 2.0
    nll_mean = -np.sum(w[..., None] * (a - mu) / s0 ** 2, axis=0)
    nll_std = np.sum(w[..., None] * (1.0 / s - (a - mu0) ** 2 / s ** 3), axis=0)
    np.testing.assert_allclose(g_mean, sw * (nll_mean + a_mu * (mu - mu0) / s0 ** 2), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_std, sw * (nll_std + a_sigma * (1.0 / s - s0 ** 2 / s ** 3)), rtol=1e-4, atol=1e-6)

    g_alpha = jax.jit(jax.grad(lambda x, y: mpo.decoupled_m_step(mean, std, old_mean, old_std, actions, weights,
                                                                 state_weights, x, y, eps_mu, eps_sigma).dual_loss,
                               argnums=(0, 1)))(a_mu, a_sigma)
    assert float(g_alpha[0]) == pytest.approx(eps_mu - kl_mean, rel=1e-5)
    assert float(g_alpha[1]) == pytest.approx(eps_sigma - kl_std, rel=1e-5)


def test_bc_loss_value_and_gradient_step_toward_actions():
    """bc_loss = the masked mean of -log N(a; mean, std); one gradient step on the mean moves every unmasked
    mean toward its executed action, and leaves masked rows alone."""
    mean = jnp.array([[0.0, 0.5], [-0.3, 0.2], [0.9, -0.9]])
    std = jnp.array([[0.5, 0.3], [1.0, 0.2], [0.4, 0.4]])
    actions = jnp.array([[0.6, -0.2], [0.4, 0.1], [0.0, 0.0]])
    weights = jnp.array([1.0, 1.0, 0.0])
    got = mpo.bc_loss(mean, std, actions, weights)
    z = (np.asarray(actions) - np.asarray(mean)) / np.asarray(std)
    nll = np.sum(0.5 * z ** 2 + np.log(np.asarray(std)) + 0.5 * math.log(2 * math.pi), -1)
    assert float(got) == pytest.approx(nll[:2].mean(), rel=1e-6)

    grad = jax.grad(mpo.bc_loss)(mean, std, actions, weights)
    expected = -(np.asarray(actions) - np.asarray(mean)) / np.asarray(std) ** 2 * np.array([[0.5], [0.5], [0.0]])
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    stepped = mean - 0.01 * grad
    before, after = np.abs(np.asarray(mean - actions)), np.abs(np.asarray(stepped - actions))
    assert np.all(after[:2] < before[:2])
    np.testing.assert_array_equal(stepped[2], mean[2])


def test_check_mpo_weights():
    """check_mpo: BC alone (mpo_weight = 0, bc_weight > 0) is allowed; both weights 0 or a negative one is not."""
    def cfg(**agent):
        planner = types.SimpleNamespace(name="none", proposal="policy", mixture_components=())
        env = types.SimpleNamespace(action_repeat=1)
        return types.SimpleNamespace(agent=mpo.MPOConfig(**agent), env=env, planner=planner)
    mpo.check_mpo(cfg(mpo_weight=0.0, bc_weight=1.0))
    mpo.check_mpo(cfg(mpo_weight=1.0, bc_weight=0.0))
    for bad in ({"mpo_weight": 0.0, "bc_weight": 0.0}, {"mpo_weight": -1.0, "bc_weight": 1.0}, {"bc_weight": -0.1}):
        with pytest.raises(ConfigError, match="mpo_weight"):
            mpo.check_mpo(cfg(**bad))


# ---------------------------------------------------------------- the learner on a fixed batch


def test_trust_regions_bound_the_kl_to_the_old_policy():
    """100 updates on one fixed batch, target policy fixed (target_update_period > 100): with the multipliers
    acting (paper-scale initial values, adapted with dual_lr 0.1) KL(pi_old || pi) of the mean and the
    covariance halves stays within 3 eps_mu / 3 eps_Sigma after every update (1.5 / 0.3 here); with the trust
    regions effectively off (the multipliers held at 1e-6) the same run leaves them by a factor > 10 (about 50
    here)."""
    on, off = trust_region_runs()
    eps_mu, eps_sigma = on.cfg.epsilon_mean, on.cfg.epsilon_std
    for run in (on, off):
        assert np.all(np.isfinite(run.kl_mean)) and np.all(np.isfinite(run.kl_std))
        # the old policy stayed the initial one, and the learner's metric agrees with the KL measured here
        for a, b in zip(jax.tree.leaves(run.state.target_policy_params), jax.tree.leaves(run.state0.policy_params)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(run.metrics["learner/kl_mean"][1:], run.kl_mean[:-1], rtol=1e-3, atol=1e-8)
        np.testing.assert_allclose(run.metrics["learner/kl_std"][1:], run.kl_std[:-1], rtol=1e-3, atol=1e-9)
    assert on.kl_mean.max() <= 3.0 * eps_mu, on.kl_mean.max() / eps_mu
    assert on.kl_std.max() <= 3.0 * eps_sigma, on.kl_std.max() / eps_sigma
    assert on.kl_mean.max() >= 0.2 * eps_mu  # the policy did move: the bound is not met by standing still
    # the duals' steps moved the multipliers the right way: the KLs stayed mostly (the covariance's always) below
    # their bounds, so both multipliers relaxed (to about 4.2 and 90)
    assert np.mean(on.kl_mean < eps_mu) > 0.5 and np.all(on.kl_std < eps_sigma)
    assert float(on.metrics["learner/alpha_mean"][-1]) < ALPHAS_ON[0] - 1.0
    assert float(on.metrics["learner/alpha_std"][-1]) < ALPHAS_ON[1] - 1.0
    # (the metric is read after the update's dual step, before the test puts the multipliers back)
    assert off.metrics["learner/alpha_mean"].max() < 2e-6 and off.metrics["learner/alpha_std"].max() < 2e-6
    assert off.kl_mean.max() > 10.0 * eps_mu, off.kl_mean.max() / eps_mu
    assert off.kl_std.max() > 10.0 * eps_sigma, off.kl_std.max() / eps_sigma


def test_bc_update_moves_the_policy_mean_toward_the_executed_action():
    """With bc_weight = 1 and mpo_weight tiny, learner updates on windows whose every step is one state s and
    one executed action a move the policy mean at s toward a in every dimension."""
    state_, action = (0.3, -0.5, 1.0), (0.6, -0.4)
    overrides = (("bc_weight", 1.0), ("mpo_weight", 1e-6), ("policy_lr", 5e-3))
    (run,) = run_learner(overrides, 20, (("same_state", state_), ("same_action", action)))
    policy_mean = jax.jit(lambda params: policy_net(run.cfg).apply(params, jnp.asarray([state_], jnp.float32))[0][0])
    before = np.abs(np.asarray(policy_mean(run.state0.policy_params)) - np.asarray(action))  # about [0.92, 1.01]
    after = np.abs(np.asarray(policy_mean(run.state.policy_params)) - np.asarray(action))  # about [0.07, 0.25]
    assert np.all(after < 0.5 * before), (before, after)
    assert run.metrics["learner/bc_loss"][-1] < run.metrics["learner/bc_loss"][0]


def test_planner_q_value_is_in_the_task_reward_units():
    """The critic's support spans returns of reward_scale * r; q_value (the planner's terminal value, added to
    returns of the task's reward) is the same in the task's units whatever reward_scale: the same networks at
    reward_scale 2 predict twice the return on a support twice as wide, and q_value divides it back."""
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, OBS_SIZE))
    key = jax.random.PRNGKey(2)
    plain = mpo.make_mpo(small_config(), OBS_SIZE, ACTION_SIZE, total_env_steps=1000, action_repeat=1)
    scaled = mpo.make_mpo(small_config(reward_scale=2.0), OBS_SIZE, ACTION_SIZE, total_env_steps=1000, action_repeat=1)
    state = plain.init(jax.random.PRNGKey(0))
    base = np.asarray(plain.q_value(state, obs, key))
    assert np.abs(base).max() > 1e-3
    np.testing.assert_allclose(np.asarray(scaled.q_value(state, obs, key)), base, rtol=1e-5, atol=1e-6)
