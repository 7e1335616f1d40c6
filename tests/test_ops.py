"""ops: hand-computed cases, plain-Python loop references on random inputs, shapes and properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmbrl import ops


def random_sequence(seed, length=7):
    """rewards, discounts (one termination: d = 0), values, q, log_rhos of one window, float32 numpy."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=length).astype(np.float32)
    discounts = np.full(length, 0.9, np.float32)
    discounts[length // 2] = 0.0
    values = rng.normal(size=length).astype(np.float32)
    q = rng.normal(size=length).astype(np.float32)
    log_rhos = rng.normal(scale=1.0, size=length).astype(np.float32)
    return rewards, discounts, values, q, log_rhos


# ---------------------------------------------------------------- Polyak


def test_polyak_update_exact():
    target = {"w": jnp.array([0.0, 1.0, -2.0]), "b": jnp.array(4.0)}
    online = {"w": jnp.array([10.0, 1.0, 2.0]), "b": jnp.array(0.0)}
    # t + 0.1 (o - t): w = [1, 1, -1.6], b = 4 - 0.4 = 3.6
    out = jax.jit(ops.polyak_update)(target, online, 0.1)
    np.testing.assert_allclose(out["w"], [1.0, 1.0, -1.6], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 3.6, rtol=1e-6)
    # tau = 1 copies the online leaf, tau = 0 keeps the target
    assert np.array_equal(ops.polyak_update(target, online, 1.0)["w"], online["w"])
    assert np.array_equal(ops.polyak_update(target, online, 0.0)["w"], target["w"])


# ---------------------------------------------------------------- n-step returns


def n_step_loop(rewards, discounts, values, n):
    length = len(rewards)
    out = []
    for t in range(length):
        m = min(n, length - t)
        ret, scale = 0.0, 1.0
        for k in range(m):
            ret += scale * rewards[t + k]
            scale *= discounts[t + k]
        out.append(ret + scale * values[t + m - 1])
    return np.array(out)


def test_n_step_returns_by_hand():
    r = jnp.array([1.0, 2.0, 3.0, 4.0])
    d = jnp.full((4,), 0.5)
    v = jnp.array([10.0, 20.0, 30.0, 40.0])
    # n = 2: t=0: 1 + 0.5*2 + 0.25*20 = 7; t=1: 2 + 0.5*3 + 0.25*30 = 11; t=2: 3 + 0.5*4 + 0.25*40 = 15;
    # t=3 (window ends): 4 + 0.5*40 = 24
    np.testing.assert_allclose(ops.n_step_returns(r, d, v, 2), [7.0, 11.0, 15.0, 24.0], rtol=1e-6)
    # n = 1: r + d v = [6, 12, 18, 24]
    np.testing.assert_allclose(ops.n_step_returns(r, d, v, 1), [6.0, 12.0, 18.0, 24.0], rtol=1e-6)
    # n = 4 from t = 0: 1 + 0.5*2 + 0.25*3 + 0.125*4 + 0.0625*40 = 5.75
    assert float(ops.n_step_returns(r, d, v, 4)[0]) == pytest.approx(5.75, rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10])
def test_n_step_returns_match_loop(n):
    rewards, discounts, values, _, _ = random_sequence(n)
    got = jax.jit(ops.n_step_returns, static_argnums=3)(rewards, discounts, values, n)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, n_step_loop(rewards, discounts, values, n), rtol=1e-5, atol=1e-6)


def test_n_step_returns_rejects_bad_input():
    x = jnp.zeros((5,))
    with pytest.raises(ValueError, match="n must be >= 1"):
        ops.n_step_returns(x, x, x, 0)
    with pytest.raises(ValueError, match="rank-1 arrays of one length"):
        ops.n_step_returns(x, jnp.zeros((4,)), x, 2)


# ---------------------------------------------------------------- lambda returns


def test_lambda_returns_by_hand():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.full((3,), 0.5)
    v = jnp.array([10.0, 20.0, 30.0])
    # lambda = 0.5: G2 = 3 + 0.5*30 = 18; G1 = 2 + 0.5*(0.5*20 + 0.5*18) = 11.5;
    # G0 = 1 + 0.5*(0.5*10 + 0.5*11.5) = 6.375
    np.testing.assert_allclose(ops.lambda_returns(r, d, v, 0.5), [6.375, 11.5, 18.0], rtol=1e-6)
    # lambda = 0: one-step targets r + d v
    np.testing.assert_allclose(ops.lambda_returns(r, d, v, 0.0), [6.0, 12.0, 18.0], rtol=1e-6)
    # lambda = 1: G2 = 18, G1 = 2 + 9 = 11, G0 = 1 + 5.5 = 6.5
    np.testing.assert_allclose(ops.lambda_returns(r, d, v, 1.0), [6.5, 11.0, 18.0], rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_lambda_returns_are_the_weighted_average_of_n_step_returns(lam):
    """G^lambda_t = (1 - lambda) sum_{n<N} lambda^{n-1} G^(n)_t + lambda^{N-1} G^(N)_t, N = T - t (Sutton and Barto Sec. 12.1)."""
    rewards, discounts, values, _, _ = random_sequence(11)
    length = len(rewards)
    expected = []
    for t in range(length):
        horizon = length - t
        n_step = [n_step_loop(rewards, discounts, values, n)[t] for n in range(1, horizon + 1)]
        weighted = sum((1 - lam) * lam ** (n - 1) * n_step[n - 1] for n in range(1, horizon))
        expected.append(weighted + lam ** (horizon - 1) * n_step[-1])
    got = jax.jit(ops.lambda_returns)(rewards, discounts, values, lam)
    assert got.shape == (length,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_lambda_returns_extremes_are_n_step_returns():
    rewards, discounts, values, _, _ = random_sequence(3)
    np.testing.assert_allclose(
        ops.lambda_returns(rewards, discounts, values, 0.0), ops.n_step_returns(rewards, discounts, values, 1), rtol=1e-6
    )
    np.testing.assert_allclose(
        ops.lambda_returns(rewards, discounts, values, 1.0), ops.n_step_returns(rewards, discounts, values, 7), rtol=1e-5, atol=1e-6
    )


def test_lambda_returns_per_step_lambda():
    """A lambda of 0 at step t cuts the trace there: G_t = r_t + d_t v_t whatever follows."""
    rewards, discounts, values, _, _ = random_sequence(4)
    lambdas = jnp.array([0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.9])
    got = ops.lambda_returns(rewards, discounts, values, lambdas)
    assert float(got[2]) == pytest.approx(float(rewards[2] + discounts[2] * values[2]), rel=1e-6)
    tail = ops.lambda_returns(rewards[3:], discounts[3:], values[3:], 0.9)
    np.testing.assert_allclose(got[3:], tail, rtol=1e-6)


# ---------------------------------------------------------------- Retrace


def retrace_loop(q, next_values, rewards, discounts, log_rhos, lam):
    """The unrolled form G_t = Q_t + sum_{j>=t} (prod_{k=t+1..j} d_{k-1} c_k) (r_j + d_j V_j - Q_j)."""
    traces = [lam * min(1.0, math.exp(x)) for x in log_rhos]
    out = []
    for t in range(len(q)):
        total, weight = float(q[t]), 1.0
        for j in range(t, len(q)):
            if j > t:
                weight *= float(discounts[j - 1]) * traces[j]
            total += weight * float(rewards[j] + discounts[j] * next_values[j] - q[j])
        out.append(total)
    return np.array(out)


def test_retrace_targets_by_hand():
    q = jnp.array([1.0, 2.0, 3.0])
    v = jnp.array([2.5, 3.5, 4.0])
    r = jnp.array([1.0, 0.5, -1.0])
    d = jnp.array([0.9, 0.9, 0.5])
    log_rhos = jnp.log(jnp.array([1.0, 0.5, 2.0]))
    # lambda = 0.8: c = [0.8, 0.4, 0.8 (ratio 2 truncated to 1)]
    # G2 = -1 + 0.5*4 = 1
    # G1 = 0.5 + 0.9*(3.5 - 0.8*3 + 0.8*1) = 0.5 + 0.9*1.9 = 2.21
    # G0 = 1 + 0.9*(2.5 - 0.4*2 + 0.4*2.21) = 1 + 0.9*2.584 = 3.3256
    expected = [3.3256, 2.21, 1.0]
    np.testing.assert_allclose(ops.retrace_targets(q, v, r, d, log_rhos, 0.8), expected, rtol=1e-6)
    # the unrolled form by hand: deltas [2.25, 1.65, -2]; G0 = 1 + 2.25 + 0.36*1.65 + 0.36*0.72*(-2) = 3.3256
    np.testing.assert_allclose(retrace_loop(q, v, r, d, log_rhos, 0.8), expected, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_retrace_targets_match_loop(lam):
    rewards, discounts, values, q, log_rhos = random_sequence(int(lam * 10) + 20)
    got = jax.jit(ops.retrace_targets)(q, values, rewards, discounts, log_rhos, lam)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, retrace_loop(q, values, rewards, discounts, log_rhos, lam), rtol=1e-5, atol=1e-5)


def test_retrace_properties():
    rewards, discounts, values, q, log_rhos = random_sequence(5)
    # lambda = 0 (no traces): one-step expected-SARSA targets r + d V
    np.testing.assert_allclose(
        ops.retrace_targets(q, values, rewards, discounts, log_rhos, 0.0), rewards + discounts * values, rtol=1e-6, atol=1e-6
    )
    # the first action needs no correction: q[0] and log_rhos[0] do not enter
    base = ops.retrace_targets(q, values, rewards, discounts, log_rhos, 0.7)
    moved_q, moved_log_rhos = jnp.asarray(q).at[0].set(99.0), jnp.asarray(log_rhos).at[0].set(-5.0)
    moved = ops.retrace_targets(moved_q, values, rewards, discounts, moved_log_rhos, 0.7)
    assert np.array_equal(base, moved)
    # full traces (lambda = 1, pi/mu >= 1) and Q_{t+1} = V_t (the critic agrees with its expectation):
    # G_t = r_t + d_t G_{t+1}, the discounted return bootstrapped on the last value
    q_consistent = np.concatenate([[0.0], values[:-1]]).astype(np.float32)
    got = ops.retrace_targets(q_consistent, values, rewards, discounts, np.abs(log_rhos), 1.0)
    np.testing.assert_allclose(got, ops.lambda_returns(rewards, discounts, values, 1.0), rtol=1e-5, atol=1e-6)


def test_retrace_rejects_mismatched_lengths():
    x = jnp.zeros((4,))
    with pytest.raises(ValueError, match="log_rhos"):
        ops.retrace_targets(x, x, x, x, jnp.zeros((3,)), 1.0)


# ---------------------------------------------------------------- two-hot and projection


def two_hot_loop(x, bins):
    bins = [float(b) for b in bins]
    x = min(max(float(x), bins[0]), bins[-1])
    out = [0.0] * len(bins)
    for i in range(len(bins) - 1):
        if bins[i] <= x <= bins[i + 1]:
            w = (x - bins[i]) / (bins[i + 1] - bins[i])
            out[i], out[i + 1] = 1.0 - w, w
            return out
    raise AssertionError("x outside the clipped range")


def test_two_hot_by_hand():
    bins = jnp.array([-1.0, 0.0, 1.0, 2.0])
    # 0.25 lies a quarter of the way from 0 to 1
    np.testing.assert_allclose(ops.two_hot(jnp.asarray(0.25), bins), [0.0, 0.75, 0.25, 0.0], atol=1e-7)
    # outside the support: clipped onto the end bins; on a bin: all mass there
    np.testing.assert_array_equal(ops.two_hot(jnp.asarray(5.0), bins), [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ops.two_hot(jnp.asarray(-3.0), bins), [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ops.two_hot(jnp.asarray(1.0), bins), [0.0, 0.0, 1.0, 0.0])
    # uneven spacing: 2.5 on [0, 1, 3] is 3/4 of the way from 1 to 3
    np.testing.assert_allclose(ops.two_hot(jnp.asarray(2.5), jnp.array([0.0, 1.0, 3.0])), [0.0, 0.25, 0.75], atol=1e-7)


@pytest.mark.parametrize("bins", [np.linspace(-3.0, 3.0, 11), np.array([-2.0, -1.5, 0.0, 0.1, 4.0])])
def test_two_hot_matches_loop_and_inverts(bins):
    bins = jnp.asarray(bins, jnp.float32)
    x = jax.random.uniform(jax.random.PRNGKey(0), (6, 5), minval=-5.0, maxval=5.0)
    probs = jax.jit(ops.two_hot)(x, bins)
    assert probs.shape == (6, 5, bins.shape[0])
    expected = np.array([[two_hot_loop(v, bins) for v in row] for row in np.asarray(x)])
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(jnp.sum(probs, -1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(probs) >= 0.0) and np.all(np.count_nonzero(np.asarray(probs), -1) <= 2)
    back = jax.jit(ops.two_hot_inverse)(probs, bins)
    assert back.shape == (6, 5)
    np.testing.assert_allclose(back, jnp.clip(x, bins[0], bins[-1]), atol=1e-5)


def c51_projection_loop(support_src, probs_src, v_min, v_max, num_atoms):
    """Bellemare et al. 2017 Alg. 1 on an evenly spaced destination, with the l == u case kept."""
    delta = (v_max - v_min) / (num_atoms - 1)
    m = [0.0] * num_atoms
    for z, p in zip(support_src, probs_src):
        tz = min(max(float(z), v_min), v_max)
        b = (tz - v_min) / delta
        lo, up = math.floor(b), math.ceil(b)
        if lo == up:
            m[lo] += float(p)
        else:
            m[lo] += float(p) * (up - b)
            m[up] += float(p) * (b - lo)
    return np.array(m)


def test_categorical_projection_by_hand():
    # atoms 0, 1, 2 onto {0, 2}: atom 1 splits evenly -> [0.2 + 0.25, 0.25 + 0.3]; mean 1.1 kept
    out = ops.categorical_projection(jnp.array([0.0, 1.0, 2.0]), jnp.array([0.2, 0.5, 0.3]), jnp.array([0.0, 2.0]))
    np.testing.assert_allclose(out, [0.45, 0.55], rtol=1e-6)
    # atoms outside the destination range land on its ends
    out = ops.categorical_projection(jnp.array([-1.0, 3.0]), jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(out, [0.5, 0.0, 0.5], atol=1e-7)


def test_categorical_projection_of_a_bellman_update_matches_c51_loop():
    """Project r + gamma z (the distributional Bellman target) back onto z, as C51 does."""
    support = jnp.linspace(-10.0, 10.0, 51)
    probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(3), (51,)))
    shifted = 1.5 + 0.9 * support
    got = jax.jit(ops.categorical_projection)(shifted, probs, support)
    assert got.shape == (51,)
    np.testing.assert_allclose(got, c51_projection_loop(shifted, probs, -10.0, 10.0, 51), atol=1e-6)
    assert float(jnp.sum(got)) == pytest.approx(1.0, abs=1e-6)


def test_categorical_projection_keeps_mass_and_mean():
    src = jnp.sort(jax.random.uniform(jax.random.PRNGKey(0), (17,), minval=-4.0, maxval=4.0))
    probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (17,)))
    dst = jnp.array([-5.0, -2.0, -1.5, 0.0, 0.5, 3.0, 5.0])  # uneven, covers the source atoms
    out = ops.categorical_projection(src, probs, dst)
    assert out.shape == (7,)
    assert float(jnp.sum(out)) == pytest.approx(1.0, abs=1e-6)
    assert float(ops.two_hot_inverse(out, dst)) == pytest.approx(float(jnp.sum(probs * src)), abs=1e-5)


# ---------------------------------------------------------------- log-sum-exp aggregation


def test_log_sum_exp_aggregate_by_hand():
    # kappa = 1, v = [0, log 3]: log((1 + 3) / 2) = log 2
    assert float(ops.log_sum_exp_aggregate(jnp.array([0.0, math.log(3.0)]), 1.0)) == pytest.approx(math.log(2.0), rel=1e-6)
    # kappa = 1/2, v = [0, 2]: 2 log((1 + e) / 2) = 1.2402290139
    assert float(ops.log_sum_exp_aggregate(jnp.array([0.0, 2.0]), 0.5)) == pytest.approx(1.2402290139, rel=1e-6)
    # an ensemble that agrees returns its value for any kappa
    assert float(ops.log_sum_exp_aggregate(jnp.full((5,), 3.0), 100.0)) == pytest.approx(3.0, rel=1e-6)


def test_log_sum_exp_aggregate_between_mean_and_max():
    values = jax.random.normal(jax.random.PRNGKey(0), (6, 4))  # K = 6 members, 4 states
    agg = jax.jit(ops.log_sum_exp_aggregate)
    mean, vmax = jnp.mean(values, 0), jnp.max(values, 0)
    for kappa in (100.0, 3.0, 1.0, 0.1):
        out = agg(values, kappa)
        assert out.shape == (4,)
        assert np.all(out >= mean - 1e-5) and np.all(out <= vmax + 1e-5)
    # kappa -> 0: mean + kappa var / 2; kappa -> inf: max - log K / kappa (one maximum), no overflow
    np.testing.assert_allclose(agg(values, 1e-3), mean, atol=2e-3)
    np.testing.assert_allclose(agg(values, 1e3), vmax, atol=1e-2)
    var = jnp.var(values, 0)
    np.testing.assert_allclose(agg(values, 1e-2), mean + 1e-2 * var / 2, atol=1e-4)
    assert np.all(np.isfinite(agg(values * 100.0, 1e4)))
    # loop reference on a wider axis
    loop = [1.0 * math.log(sum(math.exp(float(v)) for v in values[:, j]) / 6) for j in range(4)]
    np.testing.assert_allclose(agg(values, 1.0), loop, rtol=1e-5)
    np.testing.assert_allclose(ops.log_sum_exp_aggregate(values.T, 1.0, axis=1), loop, rtol=1e-5)


# ---------------------------------------------------------------- gradient step


def quadratic(w):
    return jnp.sum(jnp.square(w)), {"first": w[0]}


def test_gradient_step_sgd_by_hand():
    w = jnp.array([1.0, 2.0])
    sgd = optax.sgd(0.1)
    step = jax.jit(lambda p, s: ops.gradient_step(quadratic, sgd, p, s, has_aux=True))(w, sgd.init(w))
    # loss 1 + 4 = 5, grads 2w = [2, 4], w - 0.1 g = [0.8, 1.6]
    assert float(step.loss) == pytest.approx(5.0)
    assert float(step.aux["first"]) == 1.0
    np.testing.assert_allclose(step.grads, [2.0, 4.0])
    np.testing.assert_allclose(step.params, [0.8, 1.6], rtol=1e-6)
    # without aux: loss alone, aux None
    plain = ops.gradient_step(lambda p: quadratic(p)[0], sgd, w, sgd.init(w))
    assert plain.aux is None
    np.testing.assert_array_equal(plain.params, step.params)


def test_gradient_step_passes_params_only_when_asked():
    w = jnp.array([1.0, 2.0])
    decayed = optax.chain(optax.add_decayed_weights(0.5), optax.sgd(0.1))
    # w - 0.1 (2w + 0.5 w) = w (1 - 0.25) = [0.75, 1.5]
    step = ops.gradient_step(lambda p: quadratic(p)[0], decayed, w, decayed.init(w), pass_params=True)
    np.testing.assert_allclose(step.params, [0.75, 1.5], rtol=1e-6)
    with pytest.raises(ValueError):
        ops.gradient_step(lambda p: quadratic(p)[0], decayed, w, decayed.init(w))


@pytest.mark.parametrize("pass_params", [False, True])
def test_gradient_step_is_bit_identical_to_the_hand_written_step(pass_params):
    """The helper performs exactly value_and_grad -> update -> apply_updates (the code it replaced)."""
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (3, 4)), "b": jnp.zeros((4,))}
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
    adam = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))

    def loss_fn(p):
        y = jnp.tanh(x @ p["w"] + p["b"])
        return jnp.mean(jnp.square(y - 0.5)), y

    def by_hand(p, s):
        (loss, y), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, s = adam.update(grads, s, p) if pass_params else adam.update(grads, s)
        return optax.apply_updates(p, updates), s, loss, y

    def helper(p, s):
        step = ops.gradient_step(loss_fn, adam, p, s, has_aux=True, pass_params=pass_params)
        return step.params, step.opt_state, step.loss, step.aux

    state_a = state_b = (params, adam.init(params))
    for _ in range(3):
        *state_a, loss_a, aux_a = jax.jit(by_hand)(*state_a)
        *state_b, loss_b, aux_b = jax.jit(helper)(*state_b)
    for a, b in zip(jax.tree.leaves((state_a, loss_a, aux_a)), jax.tree.leaves((state_b, loss_b, aux_b))):
        np.testing.assert_array_equal(a, b)
