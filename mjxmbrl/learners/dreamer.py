"""Dreamer's behaviour learning in imagination: an actor and a value on a learned latent model's state.

Hafner, Lillicrap, Ba, Norouzi 2020, "Dream to Control: Learning Behaviors by Latent Imagination",
arXiv:1912.01603, Sec. 3 (Eqs. 5-8), Alg. 1; in the notation of S V, Jalagam, LeCun, Sobal 2023,
"Gradient-based Planning with World Models", arXiv:2312.17227, App. A.4 (Eqs. 10-13).

Start states: the posterior latents of B replay windows of T steps, filtered with the Model
interface alone (`posterior_states`: z_0 = initial_state(o_0), z_{t+1} = filter(z_t, a_t, o_{t+1}),
vmapped over windows; any model with `filter` works, no RSSM internals), flattened to N = B * T
starts, each weighted by the window's mask (steps of another episode weigh 0), and held constant.

Imagination (`imagine`): from every start s_0, H steps of the actor through the model's prior,
a_t = tanh(mu + sigma eps) ~ q_phi(a | s_t), s_{t+1} = model.step(s_t, a_t), r_t = model.reward(s_t, a_t,
s_{t+1}); the actor reads stop_gradient(features(s_t)) (as Dreamer v1's `_imagine_ahead`), so the
gradient reaches an action through the dynamics and the reward it leads to, not through the actor's
own input. features(s) = the concatenated leaves of the latent (the RSSM's [h, s]).

Targets (Eq. 6 of Dreamer; Eqs. 12-13 of the gradient paper), with v_t = v_psi(s_{t+1}):

    V_lambda(s_{H-1}) = r_{H-1} + gamma v_psi(s_H)
    V_lambda(s_t)     = r_t + gamma ((1 - lambda) v_psi(s_{t+1}) + lambda V_lambda(s_{t+1}))

(`ops.lambda_returns`). r_t is the reward of the transition s_t -> s_{t+1} (decoded at s_{t+1}), so
V_lambda(s_t) is the return after s_t, the same quantity the planners' score bootstraps on (r + ... +
gamma^H v(s_H)); Dreamer v1 indexes the reward of s_t into V(s_t) instead.

Losses, each a mean over the H steps and the N starts, step t weighted by gamma^t (Dreamer v1's
cumulative discount, `discount_weights`) and by its start's mask:

    actor  (Eq. 7)  -V_lambda(s_t)                      d/d phi only: the model and the value are constants
    value  (Eq. 8)  1/2 (v_psi(s_t) - sg(V_lambda(s_t)))^2   on sg(s_t)

The actor loss is differentiated by dynamics backpropagation through model.step and model.reward
(reparameterised prior samples), with respect to the actor's parameters alone: the behaviour losses
never update the model. Adam (eps 1e-7, TensorFlow's default, which Dreamer v1 uses), gradients
clipped at global norm 100, lr 8e-5 for both.

Actor (Dreamer v1's `tanh_normal` action decoder): an ELU MLP outputs (mu, sigma) with
mu = 5 tanh(mu_raw / 5) and sigma = softplus(sigma_raw + softplus^-1(5)) + 1e-4 (init_std 5); the
action is tanh of a Gaussian sample. Its deterministic action is tanh(mu) (Dreamer v1 takes the most
likely of 100 samples).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxmbrl.nn.networks import MLP, Value
from mjxmbrl.ops import gradient_step, lambda_returns


def latent_features(z: Any) -> jax.Array:
    """features(s) [F] of one model state: its leaves, flattened and concatenated (the RSSM's [h, s])."""
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(z)])


class DreamerActor(nn.Module):
    """x [..., F] -> (mean [..., A], std [..., A]) of the pre-tanh Gaussian (Dreamer v1's tanh_normal)."""

    action_size: int
    hidden_sizes: Sequence[int] = (400, 400, 400, 400)
    init_std: float = 5.0
    mean_scale: float = 5.0
    min_std: float = 1e-4

    @nn.compact
    def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
        out = MLP(tuple(self.hidden_sizes), 2 * self.action_size, nn.elu)(x)
        raw_mean, raw_std = jnp.split(out, 2, axis=-1)
        mean = self.mean_scale * jnp.tanh(raw_mean / self.mean_scale)
        raw_init_std = jnp.log(jnp.expm1(self.init_std))  # softplus(raw_init_std) = init_std
        return mean, jax.nn.softplus(raw_std + raw_init_std) + self.min_std


@struct.dataclass
class BehaviourState:
    actor: Any
    value: Any
    actor_opt: Any
    value_opt: Any


class Imagined(NamedTuple):
    """One imagination from N starts: states [H+1, N, ...] (s_0 the starts), actions [H, N, A],
    rewards [H, N], and the actor's mean std [] over the rollout."""

    states: Any
    actions: jax.Array
    rewards: jax.Array
    action_std: jax.Array


class Behaviour(NamedTuple):
    """Pure functions of Dreamer's actor and value (module docstring), bound to the model and config.

    init(key) -> BehaviourState
    update(key, state, model_params, starts [N, ...], weights [N]) -> (state, metrics)
    policy(actor_params, x [..., F], key, deterministic) -> action [..., A] in (-1, 1)
    value(value_params, x [..., F]) -> [...]
    imagine(actor_params, model_params, starts, key) -> Imagined
    actor_loss(actor_params, value_params, model_params, starts, weights, key) -> (loss, (Imagined, V_lambda [H, N]))
    value_loss(value_params, imagined, returns, weights) -> loss
    """

    init: Callable[..., BehaviourState]
    update: Callable[..., Any]
    policy: Callable[..., jax.Array]
    value: Callable[..., jax.Array]
    imagine: Callable[..., Imagined]
    actor_loss: Callable[..., Any]
    value_loss: Callable[..., jax.Array]


def make_optimizer(lr: float, eps: float, clip: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps))


def make_behaviour(model, feature_size: int, action_size: int, cfg) -> Behaviour:
    """cfg: the agent's DreamerConfig (network sizes, horizon, discount, return_lambda, optimiser settings)."""
    actor = DreamerActor(action_size, tuple(cfg.actor_hidden_sizes), cfg.init_std, cfg.mean_scale, cfg.min_std)
    value_net = Value(tuple(cfg.value_hidden_sizes), nn.elu)
    actor_opt = make_optimizer(cfg.actor_lr, cfg.adam_eps, cfg.grad_clip)
    value_opt = make_optimizer(cfg.value_lr, cfg.adam_eps, cfg.grad_clip)
    horizon, gamma, lam = cfg.imagine_horizon, cfg.discount, cfg.return_lambda
    step_weights = gamma ** jnp.arange(horizon, dtype=jnp.float32) if cfg.discount_weights else jnp.ones((horizon,))
    features = jax.vmap(latent_features)

    def init(key):
        k_actor, k_value = jax.random.split(key)
        x = jnp.zeros((feature_size,))
        actor_params, value_params = actor.init(k_actor, x), value_net.init(k_value, x)
        return BehaviourState(actor_params, value_params, actor_opt.init(actor_params), value_opt.init(value_params))

    def policy(actor_params, x, key, deterministic):
        mean, std = actor.apply(actor_params, x)
        if deterministic:
            return jnp.tanh(mean)
        return jnp.tanh(mean + std * jax.random.normal(key, mean.shape, mean.dtype))

    def value(value_params, x):
        return value_net.apply(value_params, x)

    def imagine(actor_params, model_params, starts, key):
        num = jax.tree.leaves(starts)[0].shape[0]
        step = jax.vmap(model.step, in_axes=(None, 0, 0, 0))
        reward = jax.vmap(model.reward, in_axes=(None, 0, 0, 0))

        def body(z, k):
            k_act, k_step = jax.random.split(k)
            mean, std = actor.apply(actor_params, jax.lax.stop_gradient(features(z)))
            a = jnp.tanh(mean + std * jax.random.normal(k_act, mean.shape, mean.dtype))
            z_next = step(model_params, z, a, jax.random.split(k_step, num))
            return z_next, (z_next, a, reward(model_params, z, a, z_next), jnp.mean(std))

        _, (zs, actions, rewards, stds) = jax.lax.scan(body, starts, jax.random.split(key, horizon))
        states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s], axis=0), starts, zs)
        return Imagined(states, actions, rewards, jnp.mean(stds))

    def weighted_mean(x, w):
        return jnp.sum(w * x) / jnp.maximum(jnp.sum(w), 1e-8)

    def step_mean(x, weights):
        """sum_t sum_n gamma^t m_n x[t, n] / (H sum_n m_n): Dreamer's mean of discount-weighted terms."""
        w = step_weights[:, None] * weights[None, :]
        return jnp.sum(w * x) / (horizon * jnp.maximum(jnp.sum(weights), 1e-8))

    def actor_loss(actor_params, value_params, model_params, starts, weights, key):
        """-V_lambda averaged with the step and start weights; the model and the value are constants."""
        model_params, value_params = jax.lax.stop_gradient((model_params, value_params))
        imagined = imagine(actor_params, model_params, starts, key)
        after = jax.tree.map(lambda x: x[1:], imagined.states)  # s_1 .. s_H
        values = value(value_params, jax.vmap(features)(after))  # [H, N]: v_t = v_psi(s_{t+1})
        discounts = jnp.full(imagined.rewards.shape, gamma, jnp.float32)
        returns = jax.vmap(lambda r, d, v: lambda_returns(r, d, v, lam), in_axes=1, out_axes=1)(
            imagined.rewards, discounts, values
        )  # [H, N]
        return -step_mean(returns, weights), (imagined, returns)

    def value_loss(value_params, imagined, returns, weights):
        x = jax.lax.stop_gradient(jax.vmap(features)(imagined.states)[:-1])  # s_0 .. s_{H-1}
        v = value(value_params, x)
        return step_mean(0.5 * jnp.square(v - jax.lax.stop_gradient(returns)), weights)

    def update(key, state: BehaviourState, model_params, starts, weights):
        starts = jax.lax.stop_gradient(starts)
        a_step = gradient_step(
            lambda p: actor_loss(p, state.value, model_params, starts, weights, key),
            actor_opt, state.actor, state.actor_opt, has_aux=True,
        )
        imagined, returns = a_step.aux
        v_step = gradient_step(lambda p: value_loss(p, imagined, returns, weights), value_opt, state.value, state.value_opt)
        mask = weights[None, :] * jnp.ones_like(returns)
        metrics = {
            "learner/actor_loss": a_step.loss,
            "learner/value_loss": v_step.loss,
            "learner/imagined_return": weighted_mean(returns[0], weights),
            "learner/imagined_reward": weighted_mean(imagined.rewards, mask),
            "learner/action_std": imagined.action_std,
            "learner/actor_grad_norm": optax.tree.norm(a_step.grads),
            "learner/value_grad_norm": optax.tree.norm(v_step.grads),
        }
        return BehaviourState(a_step.params, v_step.params, a_step.opt_state, v_step.opt_state), metrics

    return Behaviour(init, update, policy, value, imagine, actor_loss, value_loss)


def posterior_states(model, model_params, batch, mask, key) -> Tuple[Any, jax.Array]:
    """The filtered latents of replay windows as imagination starts, through the Model interface alone.

    batch: Transition [B, T, ...], mask [B, T]. Per window z_0 = initial_state(o_0) and
    z_{t+1} = filter(z_t, a_t, o_{t+1}) (o_{t+1} = next_obs[t]) for t < T - 1. Returns (states with
    leading [B * T], weights [B * T] = mask): z_t weighs 1 exactly when transitions 0..t of the window
    are valid steps of o_0's episode, so every start is a real state with a real outgoing step.
    """
    batch_size, seq_len = batch.reward.shape

    def one(obs, actions, next_obs, k):
        k_0, k_filter = jax.random.split(k)
        z_0 = model.initial_state(model_params, obs[0], k_0)

        def body(z, inputs):
            a, o, k_t = inputs
            z = model.filter(model_params, z, a, o, k_t)
            return z, z

        inputs = (actions[:-1], next_obs[:-1], jax.random.split(k_filter, seq_len - 1))
        _, zs = jax.lax.scan(body, z_0, inputs)
        return jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s], axis=0), z_0, zs)

    states = jax.vmap(one)(batch.obs, batch.action, batch.next_obs, jax.random.split(key, batch_size))
    flat = jax.tree.map(lambda x: x.reshape((batch_size * seq_len,) + x.shape[2:]), states)
    return jax.lax.stop_gradient(flat), mask.reshape(-1).astype(jnp.float32)
