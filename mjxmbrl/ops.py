"""Pure reinforcement-learning math: small unbatched functions with the recursion in each docstring.

Sequence functions take one trajectory of T transitions (s_t, a_t, r_t, s_{t+1}) with arrays
indexed by t; `discounts[t]` is gamma * (1 - terminated_t), so a true termination cuts the
bootstrap while a time-limit truncation does not, and `values[t]` belongs to s_{t+1}, the state
after step t. Batching is the caller's `jax.vmap`, and target functions do not stop gradients
(wrap their results in `jax.lax.stop_gradient` where they are regression targets).
We write these few functions ourselves instead of depending on rlax, whose releases pull in
tfp-nightly.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mjxmbrl.types import Params


def _check_sequences(**arrays: jax.Array) -> int:
    """Raises ValueError unless every array is rank 1 with one common length T; returns T."""
    shapes = {name: jnp.shape(x) for name, x in arrays.items()}
    if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"expected rank-1 arrays of one length T, got {listed}")
    return next(iter(shapes.values()))[0]


def polyak_update(target: Params, online: Params, tau: float) -> Params:
    """Moves every target leaf a fraction tau toward the online leaf: `t + tau (o - t)`.

    Lillicrap et al. 2016, "Continuous control with deep reinforcement learning", arXiv:1509.02971,
    Alg. 1 (theta' <- tau theta + (1 - tau) theta', written in this form). Leaves of any shape.
    """
    return jax.tree_util.tree_map(lambda t, o: t + tau * (o - t), target, online)


def n_step_returns(rewards: jax.Array, discounts: jax.Array, values: jax.Array, n: int) -> jax.Array:
    """n-step bootstrapped returns (Sutton and Barto 2018, "Reinforcement Learning: An Introduction", Eq. 7.1).

        G_t = r_t + d_t r_{t+1} + ... + (d_t ... d_{t+m-2}) r_{t+m-1} + (d_t ... d_{t+m-1}) v_{t+m-1},

    with m = min(n, T - t): near the end of the window the return bootstraps on the last value.
    rewards, discounts, values: [T] (values[t] = v(s_{t+1})); n >= 1 (static). Returns [T].
    """
    length = _check_sequences(rewards=rewards, discounts=discounts, values=values)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # Padding with r = 0, d = 1 leaves a return unchanged (0 + 1 * G = G exactly), so every t runs
    # the same n backward steps G <- r_{t+k} + d_{t+k} G from its own bootstrap value.
    padded_rewards = jnp.concatenate([rewards, jnp.zeros((n,), rewards.dtype)])
    padded_discounts = jnp.concatenate([discounts, jnp.ones((n,), discounts.dtype)])
    returns = values[jnp.minimum(jnp.arange(length) + n, length) - 1]
    for k in reversed(range(n)):
        returns = padded_rewards[k : k + length] + padded_discounts[k : k + length] * returns
    return returns


def lambda_returns(rewards: jax.Array, discounts: jax.Array, values: jax.Array, lambda_: Any) -> jax.Array:
    """TD(lambda) returns (Sutton and Barto 2018, Sec. 12.1; Hafner et al. 2020, "Dream to Control", arXiv:1912.01603, Eq. 6).

        G_{T-1} = r_{T-1} + d_{T-1} v_{T-1}
        G_t     = r_t + d_t ((1 - lambda) v_t + lambda G_{t+1})

    rewards, discounts, values: [T] (values[t] = v(s_{t+1})); lambda_: scalar or [T]. Returns [T].
    lambda = 0 gives one-step targets r_t + d_t v_t; lambda = 1 the discounted return bootstrapped
    on the last value.
    """
    _check_sequences(rewards=rewards, discounts=discounts, values=values)
    lambdas = jnp.broadcast_to(jnp.asarray(lambda_, values.dtype), values.shape)

    def backward(next_return, step):
        reward, discount, value, lam = step
        ret = reward + discount * ((1.0 - lam) * value + lam * next_return)
        return ret, ret

    _, returns = jax.lax.scan(backward, values[-1], (rewards, discounts, values, lambdas), reverse=True)
    return returns


def retrace_targets(
    q_values: jax.Array,
    next_values: jax.Array,
    rewards: jax.Array,
    discounts: jax.Array,
    log_rhos: jax.Array,
    lambda_: float,
) -> jax.Array:
    """Retrace(lambda) action-value targets (Munos et al. 2016, "Safe and Efficient Off-Policy
    Reinforcement Learning", arXiv:1606.02647: their operator R with c_s = lambda min(1, pi/mu)),
    in the recursive form MPO uses for policy evaluation (Abdolmaleki et al. 2018, "Maximum a
    Posteriori Policy Optimisation", arXiv:1806.06920;
    Byravan et al. 2022, "Evaluating model-based planning and planner amortization for continuous
    control", arXiv:2110.03363, App. E.1):

        c_t     = lambda * min(1, exp(log_rho_t))
        G_{T-1} = r_{T-1} + d_{T-1} V_{T-1}
        G_t     = r_t + d_t (V_t - c_{t+1} Q_{t+1} + c_{t+1} G_{t+1})

    which unrolls to G_t = Q_t + sum_{j>=t} (prod_{k=t+1..j} d_{k-1} c_k) (r_j + d_j V_j - Q_j).

    q_values [T]: Q(s_t, a_t) of the executed actions (online or target critic, the caller's choice);
    next_values [T]: V_t = E_{a ~ pi} Q(s_{t+1}, a), the expected target value after step t;
    rewards, discounts [T]; log_rhos [T]: log pi(a_t|s_t) - log mu(a_t|s_t) of the executed actions
    under the target policy pi and the behaviour policy mu. Returns the targets G_t for Q(s_t, a_t), [T].
    q_values[0] and log_rhos[0] do not enter: the first action needs no correction.
    """
    _check_sequences(q_values=q_values, next_values=next_values, rewards=rewards, discounts=discounts, log_rhos=log_rhos)
    traces = lambda_ * jnp.minimum(1.0, jnp.exp(log_rhos))
    # Shifted to step t: (c_{t+1}, Q_{t+1}), zero after the window so G_{T-1} = r + d V exactly.
    next_traces = jnp.concatenate([traces[1:], jnp.zeros((1,), traces.dtype)])
    next_q = jnp.concatenate([q_values[1:], jnp.zeros((1,), q_values.dtype)])

    def backward(next_target, step):
        reward, discount, value, trace, q = step
        target = reward + discount * (value - trace * q + trace * next_target)
        return target, target

    init = jnp.zeros((), jnp.result_type(rewards, next_values))
    _, targets = jax.lax.scan(backward, init, (rewards, discounts, next_values, next_traces, next_q), reverse=True)
    return targets


def two_hot(x: jax.Array, bins: jax.Array) -> jax.Array:
    """Two-hot encoding of x on the increasing support `bins` [B] (B >= 2): x [...] -> [..., B].

    x is clipped to [bins[0], bins[-1]]; with bins[i] <= x <= bins[i+1] the mass
    (bins[i+1] - x) / (bins[i+1] - bins[i]) goes to bin i and the rest to bin i+1, so the
    encoding sums to 1 and its expectation `two_hot_inverse` is the clipped x. The target of the
    distributional critic of Byravan et al. 2022 (App. E.1: 101 bins, softmax cross-entropy).
    """
    num_bins = bins.shape[-1]
    x = jnp.clip(x, bins[0], bins[-1])
    lower = jnp.clip(jnp.searchsorted(bins, x, side="right") - 1, 0, num_bins - 2)
    upper_weight = (x - bins[lower]) / (bins[lower + 1] - bins[lower])
    lower_hot = jax.nn.one_hot(lower, num_bins, dtype=bins.dtype)
    upper_hot = jax.nn.one_hot(lower + 1, num_bins, dtype=bins.dtype)
    return lower_hot * (1.0 - upper_weight)[..., None] + upper_hot * upper_weight[..., None]


def two_hot_inverse(probs: jax.Array, bins: jax.Array) -> jax.Array:
    """The expectation sum_i probs_i bins_i of a distribution on `bins`: probs [..., B], bins [B] -> [...]."""
    return jnp.sum(probs * bins, axis=-1)


def categorical_projection(support_src: jax.Array, probs_src: jax.Array, support_dst: jax.Array) -> jax.Array:
    """Projects a categorical distribution onto another support (Bellemare et al. 2017,
    "A Distributional Perspective on Reinforcement Learning", arXiv:1707.06887, Eq. 7 / Alg. 1).

        (Phi p)_j = sum_i p_i [1 - |clip(z_i) - z'_j| / Delta z'_j]_+ ,

    where clip(z) = clip(z, z'_0, z'_{B'-1}) and Delta z'_j is the spacing on the side of z'_j
    where clip(z_i) lies: each source atom is split between its two neighbours on the destination
    support, which is its two-hot encoding. support_src [B], probs_src [B], support_dst [B'] (increasing,
    B' >= 2, any spacing) -> probs [B']. Keeps the total mass, and the mean when the source atoms
    lie inside the destination range.
    """
    _check_sequences(support_src=support_src, probs_src=probs_src)
    return probs_src @ two_hot(support_src, support_dst)


def log_sum_exp_aggregate(values: jax.Array, kappa: Any, axis: int = 0) -> jax.Array:
    """Optimistic aggregation of an ensemble, (1/kappa) log((1/K) sum_k exp(kappa v_k)), over `axis` (size K).

    POLO's value (Lowrey et al. 2019, "Plan Online, Learn Offline: Efficient Learning and
    Exploration via Model-Based Control", arXiv:1811.01848, Eq. 6: log sum_k exp(kappa V_k), with
    kappa the inverse temperature). Dividing by kappa and subtracting log K puts the result in the
    units of V, between the ensemble mean (kappa -> 0, where it is mean + kappa var / 2 to first
    order: the paper's "mean + variance for small kappa") and the ensemble max (kappa -> inf).
    values [K, ...] (axis 0 by default) -> [...]; a max-shifted logsumexp, so large kappa does not
    overflow.
    """
    num = values.shape[axis]
    return (jax.nn.logsumexp(kappa * values, axis=axis) - jnp.log(num)) / kappa


class GradientStep(NamedTuple):
    """The result of `gradient_step`: new params and optimiser state, the loss, its aux (None
    without has_aux) and the gradient the update used (e.g. for a gradient-norm metric)."""

    params: Params
    opt_state: Any
    loss: jax.Array
    aux: Any
    grads: Params


def gradient_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: Any,
    *,
    has_aux: bool = False,
    pass_params: bool = False,
) -> GradientStep:
    """One optimiser step on `loss_fn(params)`: value_and_grad -> optimizer.update -> apply_updates.

    `loss_fn(params)` returns a scalar loss, or (loss, aux) with `has_aux`. `pass_params` hands
    the current params to `optimizer.update` (needed by transformations such as weight decay);
    without it the call is `optimizer.update(grads, opt_state)`. The same helper for every loss
    is the template of brax's `training/gradients.py`.
    """
    if has_aux:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    else:
        loss, grads = jax.value_and_grad(loss_fn)(params)
        aux = None
    if pass_params:
        updates, opt_state = optimizer.update(grads, opt_state, params)
    else:
        updates, opt_state = optimizer.update(grads, opt_state)
    return GradientStep(optax.apply_updates(params, updates), opt_state, loss, aux, grads)
