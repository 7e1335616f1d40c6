"""POLO's value ensemble with randomized priors (Lowrey et al. 2019, "Plan Online, Learn Offline:
Efficient Learning and Exploration via Model-Based Control", arXiv:1811.01848, Sec. 2.4-2.5).

K members V_k(s) = beta p_k(s) + f_k(s): a prior network p_k drawn once at initialisation and never
trained (Osband et al. 2018's randomized prior functions), scaled by `prior_scale` beta, plus a
trainable network f_k. Each member k is fitted to its own targets y_k (Eq. 7, computed by the
agent with trajectory optimisation) perturbed with fresh Gaussian noise, with an L2 penalty on
the trainable weights (Eq. 5):

    L_k(theta_k) = mean_i (y~_ki - V_k(s_i))^2 + (sigma^2 / lambda) ||theta_k||^2,   y~_ki ~ N(y_ki, sigma^2)

so that, as in Bayesian linear regression, each member is a sample from an approximate posterior
over value functions. The K members are one `ValueEnsemble` module (parameters on a leading axis,
vmapped); the optimistic aggregate is `ops.log_sum_exp_aggregate` (Eq. 6).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mjxmbrl.nn.networks import Value, ValueEnsemble
from mjxmbrl.ops import gradient_step
from mjxmbrl.types import Params, PRNGKey

ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu}


@flax.struct.dataclass
class ValueEnsembleState:
    params: Params  # the trainable f_k, leading axis K inside
    prior: Params  # the fixed p_k, same structure; never updated
    opt_state: object


class PriorValueEnsemble(NamedTuple):
    """init(key) -> ValueEnsembleState;
    values(state, obs [..., D]) -> [K, ...]: every member's V_k = beta p_k + f_k;
    member(state, k, obs [..., D]) -> [...]: member k alone (k may be traced);
    update(key, state, obs [M, D], targets [K, M]) -> (state, metrics): one Adam step on sum_k L_k (Eq. 5)."""

    init: Callable[[PRNGKey], ValueEnsembleState]
    values: Callable[..., jax.Array]
    member: Callable[..., jax.Array]
    update: Callable[..., Tuple[ValueEnsembleState, dict]]
    num_values: int


def make_prior_value_ensemble(
    obs_size: int,
    num_values: int = 6,
    hidden_sizes: Sequence[int] = (16, 16),
    activation: str = "tanh",
    prior_scale: float = 1.0,
    target_noise: float = 0.1,
    weight_decay: float = 1e-4,
    lr: float = 1e-3,
    input_dims: Sequence[int] = (),
) -> PriorValueEnsemble:
    """Defaults: POLO's humanoid value networks (App. A: K = 6, 2 x 16 tanh, Adam with default settings).

    target_noise is sigma and weight_decay sigma^2 / lambda of Eq. 5 (the paper gives neither number).
    input_dims: the observation entries the networks read (App. A picks the value's inputs per task);
    () reads all obs_size of them. Every function still takes full observations [..., obs_size].
    """
    dims = jnp.asarray(tuple(input_dims), jnp.int32) if len(input_dims) else None
    inputs = (lambda obs: obs) if dims is None else (lambda obs: jnp.take(obs, dims, axis=-1))  # noqa: E731
    act = ACTIVATIONS[activation]
    ensemble = ValueEnsemble(num_values, tuple(hidden_sizes), act)
    single = Value(tuple(hidden_sizes), act)
    opt = optax.adam(lr)

    def init(key: PRNGKey) -> ValueEnsembleState:
        k_train, k_prior = jax.random.split(key)
        dummy = inputs(jnp.zeros((1, obs_size)))
        params = ensemble.init(k_train, dummy)["params"]
        prior = ensemble.init(k_prior, dummy)["params"]
        return ValueEnsembleState(params=params, prior=prior, opt_state=opt.init(params))

    def combine(params, prior, obs):
        x = inputs(obs)
        return prior_scale * ensemble.apply({"params": prior}, x) + ensemble.apply({"params": params}, x)

    def values(state: ValueEnsembleState, obs: jax.Array) -> jax.Array:
        return combine(state.params, jax.lax.stop_gradient(state.prior), obs)

    def member(state: ValueEnsembleState, k, obs: jax.Array) -> jax.Array:
        take = lambda tree: jax.tree.map(lambda x: x[k], tree["members"])  # noqa: E731
        apply = lambda p: single.apply({"params": p}, inputs(obs))  # noqa: E731
        return prior_scale * apply(take(state.prior)) + apply(take(state.params))

    def update(key: PRNGKey, state: ValueEnsembleState, obs: jax.Array, targets: jax.Array):
        noisy = targets + target_noise * jax.random.normal(key, targets.shape)

        def loss_fn(params):
            pred = combine(params, state.prior, obs)  # [K, M]
            fit = jnp.mean(jnp.square(noisy - pred), axis=1)  # [K]
            l2 = sum(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))) for x in jax.tree.leaves(params))  # [K]
            return jnp.sum(fit + weight_decay * l2), (fit, pred)

        step = gradient_step(loss_fn, opt, state.params, state.opt_state, has_aux=True)
        fit, pred = step.aux
        metrics = {
            "learner/value_loss": jnp.mean(fit),
            "learner/value_mean": jnp.mean(pred),
            "learner/value_spread": jnp.mean(jnp.std(pred, axis=0)),
            "learner/target_mean": jnp.mean(targets),
        }
        return state.replace(params=step.params, opt_state=step.opt_state), metrics

    return PriorValueEnsemble(init, values, member, update, num_values)
