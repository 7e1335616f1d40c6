"""Diagonal Gaussian policies: tanh-squashed (Haarnoja et al. 2018, App. C; Amos et al. 2021 Sec. 3.2)
and plain (MPO's, Abdolmaleki et al. 2018; `diag_gaussian_log_prob`, `diag_gaussian_kl`).

An action is `u = tanh(x)` with `x ~ N(mean, exp(log_std)^2)` per dimension. By the
change of variables `log pi(u) = log N(x; mean, std) - sum_d log(1 - tanh(x_d)^2)`.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

from mjxmbrl.types import PRNGKey

_HALF_LOG_2PI = 0.5 * jnp.log(2.0 * jnp.pi)
_LOG_2 = jnp.log(2.0)


def tanh_log_det_jacobian(pre_tanh: jax.Array) -> jax.Array:
    """Elementwise `log(1 - tanh(x)^2)`, computed as `2 (log 2 - x - softplus(-2x))`.

    The naive form rounds `1 - tanh(x)^2` to 0 for |x| >~ 9 in float32 and returns -inf;
    this identity (from `1 - tanh(x)^2 = 4 e^{-2x} / (1 + e^{-2x})^2`) stays exact there.
    """
    return 2.0 * (_LOG_2 - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """Elementwise log density of `N(mean, exp(log_std)^2)` at `x`."""
    z = (x - mean) * jnp.exp(-log_std)
    return -0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, pre_tanh: jax.Array) -> jax.Array:
    """log pi(tanh(pre_tanh)) of the tanh-Gaussian; inputs [..., A] -> [...].

    Taking the pre-tanh value (not the action) avoids `atanh` of actions rounded to +-1.
    """
    per_dim = gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_det_jacobian(pre_tanh)
    return jnp.sum(per_dim, axis=-1)


def tanh_gaussian_from_noise(mean: jax.Array, log_std: jax.Array, eps: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """`u = tanh(mean + std * eps)` for given standard-normal noise eps, and log pi(u).

    mean, log_std, eps: [..., A] -> (action [..., A] in (-1, 1), log_prob [...]). Differentiable
    in mean and log_std (the reparameterisation of Amos et al. Sec. 3.2); SVG(H) draws the noise of
    all H + 1 steps up front and passes it here.
    """
    pre_tanh = mean + jnp.exp(log_std) * eps
    # log N(x; mean, std) at x = mean + std*eps is -eps^2/2 - log_std - log(2 pi)/2; using eps
    # directly skips the round trip (x - mean)/std.
    per_dim = -0.5 * jnp.square(eps) - log_std - _HALF_LOG_2PI - tanh_log_det_jacobian(pre_tanh)
    return jnp.tanh(pre_tanh), jnp.sum(per_dim, axis=-1)


def sample_tanh_gaussian(key: PRNGKey, mean: jax.Array, log_std: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Reparameterised sample `u = tanh(mean + std * eps)`, eps ~ N(0, I), and its log prob.

    mean, log_std: [..., A] -> (action [..., A] in (-1, 1), log_prob [...]).
    Gradients flow to mean and log_std through the sample (SVG / SAC actor loss, Eq. 7).
    """
    eps = jax.random.normal(key, jnp.shape(mean), dtype=jnp.result_type(mean))
    return tanh_gaussian_from_noise(mean, log_std, eps)


def tanh_gaussian_mode(mean: jax.Array) -> jax.Array:
    """Deterministic action `tanh(mean)`: the pre-tanh mean squashed (the usual evaluation action)."""
    return jnp.tanh(mean)


def diag_gaussian_log_prob(mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    """log N(x; mean, diag(std^2)) summed over the last axis: [..., A] -> [...]."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - _HALF_LOG_2PI, axis=-1)


def diag_gaussian_kl(mean_p: jax.Array, std_p: jax.Array, mean_q: jax.Array, std_q: jax.Array) -> jax.Array:
    """KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)) of diagonal Gaussians, summed over the last axis.

        KL = sum_d log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2.     [..., A] -> [...]
    """
    per_dim = jnp.log(std_q / std_p) + (jnp.square(std_p) + jnp.square(mean_p - mean_q)) / (2.0 * jnp.square(std_q)) - 0.5
    return jnp.sum(per_dim, axis=-1)
