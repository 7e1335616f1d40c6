"""Tanh-Gaussian log-probabilities: hand-derived numbers and change-of-variables checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from mjxmbrl.nn import distributions as D

# Jitted once each: eager mode would compile every primitive separately and dominate test time.
gaussian_log_prob = jax.jit(D.gaussian_log_prob)
sample_tanh_gaussian = jax.jit(D.sample_tanh_gaussian)
tanh_gaussian_log_prob = jax.jit(D.tanh_gaussian_log_prob)
tanh_gaussian_mode = jax.jit(D.tanh_gaussian_mode)
tanh_log_det_jacobian = jax.jit(D.tanh_log_det_jacobian)


def test_log_prob_exact_at_origin():
    # mean 0, std 1, x = 0: log N(0; 0, 1) = -log(2 pi)/2 = -0.9189385; tanh'(0) = 1 adds 0.
    # Two dimensions sum: -1.8378771.
    lp = tanh_gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2))
    np.testing.assert_allclose(lp, -1.8378771, rtol=0, atol=1e-6)


def test_log_prob_exact_at_known_point():
    # dim 0: mean 0, std 1, x 0             -> -0.9189385 (as above)
    # dim 1: mean 0.5, std 2 (log_std ln 2), x 1.5:
    #   z = (1.5 - 0.5) / 2 = 0.5
    #   log N = -z^2/2 - ln 2 - ln(2 pi)/2 = -0.125 - 0.6931472 - 0.9189385 = -1.7370857
    #   log(1 - tanh(1.5)^2) = log sech(1.5)^2 = -2 ln cosh(1.5) = -2 ln 2.3524096 = -1.7108803
    #   log pi = -1.7370857 - (-1.7108803) = -0.0262054
    # total: -0.9189385 - 0.0262054 = -0.9451439
    mean = jnp.array([0.0, 0.5])
    log_std = jnp.array([0.0, math.log(2.0)])
    x = jnp.array([0.0, 1.5])
    np.testing.assert_allclose(tanh_log_det_jacobian(jnp.array(1.5)), -1.7108803, atol=1e-6)
    np.testing.assert_allclose(tanh_gaussian_log_prob(mean, log_std, x), -0.9451439, atol=1e-6)


def test_stable_log_det_matches_naive_and_stays_finite():
    x = np.linspace(-4.0, 4.0, 41)
    naive = np.log1p(-np.tanh(x) ** 2)  # float64: accurate in this range
    np.testing.assert_allclose(tanh_log_det_jacobian(jnp.asarray(x, jnp.float32)), naive, atol=2e-5)
    # At x = 20 float32 tanh rounds to 1 and the naive form is -inf; the identity gives
    # 2 (ln 2 - 20 - softplus(-40)) = -38.6137056.
    big = jnp.array([20.0, -20.0], jnp.float32)
    with np.errstate(divide="ignore"):
        assert np.all(np.isinf(np.log(1.0 - np.tanh(np.asarray(big)) ** 2)))
    np.testing.assert_allclose(tanh_log_det_jacobian(big), [-38.6137056, -38.6137056], rtol=1e-6)
    grad = jax.grad(lambda m: tanh_gaussian_log_prob(m, jnp.zeros(2), big))(jnp.zeros(2))
    assert np.all(np.isfinite(grad))


def test_sample_matches_log_prob_of_its_pre_tanh_value():
    key = jax.random.PRNGKey(3)
    mean = jnp.array([[0.3, -1.0, 2.0], [0.0, 0.5, -0.2]])
    log_std = jnp.array([[-1.0, 0.2, 0.0], [0.5, -3.0, 1.0]])
    action, log_prob = sample_tanh_gaussian(key, mean, log_std)
    eps = np.asarray(jax.random.normal(key, mean.shape))
    pre_tanh = np.asarray(mean) + np.exp(np.asarray(log_std)) * eps
    assert action.shape == (2, 3) and log_prob.shape == (2,)
    np.testing.assert_allclose(action, jnp.tanh(pre_tanh), atol=1e-6)
    np.testing.assert_allclose(log_prob, tanh_gaussian_log_prob(mean, log_std, pre_tanh), atol=1e-5)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)


def test_density_integrates_to_one_and_matches_change_of_variables():
    # p_U(u) = p_X(atanh u) / (1 - u^2), evaluated independently in float64 numpy.
    mean, log_std = 0.4, math.log(0.8)
    u = np.linspace(-1.0, 1.0, 200_001)[1:-1]
    x = np.arctanh(u)
    direct = np.exp(-0.5 * ((x - mean) / 0.8) ** 2) / (0.8 * math.sqrt(2 * math.pi)) / (1.0 - u**2)
    shape = (u.size, 1)
    log_p = tanh_gaussian_log_prob(jnp.full(shape, mean), jnp.full(shape, log_std), x[:, None].astype(np.float32))
    ours = np.exp(np.asarray(log_p))
    mid = np.abs(u) < 0.99  # away from the float32 rounding of atanh near +-1
    np.testing.assert_allclose(ours[mid], direct[mid], rtol=1e-3)
    du = u[1] - u[0]
    assert abs(np.sum(ours) * du - 1.0) < 2e-3


def test_monte_carlo_bin_masses_and_entropy():
    mean, log_std = jnp.array([0.4]), jnp.array([math.log(0.8)])
    n = 200_000
    shape = (n, 1)
    actions, log_probs = sample_tanh_gaussian(
        jax.random.PRNGKey(0), jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape)
    )
    actions = np.asarray(actions[:, 0])
    # Bin masses from the density (numerical integral) against sample frequencies.
    edges = np.array([-1.0, -0.5, 0.0, 0.5, 0.9, 1.0])
    u = np.linspace(-1.0, 1.0, 400_001)[1:-1]
    dens = np.exp(np.asarray(tanh_gaussian_log_prob(mean, log_std, jnp.asarray(np.arctanh(u))[:, None])))
    du = u[1] - u[0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        mass = np.sum(dens[(u >= lo) & (u < hi)]) * du
        freq = np.mean((actions >= lo) & (actions < hi))
        assert abs(mass - freq) < 5e-3, (lo, hi, mass, freq)
    # Entropy: -E[log pi] from samples against -integral p log p.
    entropy_numeric = -np.sum(dens * np.log(np.maximum(dens, 1e-30))) * du
    assert abs(-float(np.mean(log_probs)) - entropy_numeric) < 1e-2


def test_mode_and_gaussian_log_prob():
    mean = jnp.array([-2.0, 0.0, 0.7])
    np.testing.assert_allclose(tanh_gaussian_mode(mean), np.tanh([-2.0, 0.0, 0.7]), atol=1e-7)
    # log N(1; 0, e^0) = -1/2 - 0.9189385 = -1.4189385
    np.testing.assert_allclose(gaussian_log_prob(0.0, 0.0, 1.0), -1.4189385, atol=1e-6)


def test_shapes_with_leading_axes():
    shape = (2, 3, 4)
    mean = np.zeros(shape, np.float32)
    action, log_prob = sample_tanh_gaussian(jax.random.PRNGKey(0), mean, mean)
    assert action.shape == shape and log_prob.shape == shape[:-1]
