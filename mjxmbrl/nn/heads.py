"""Reward and termination models on observations (Amos et al. 2021, Sec. 4.2, Eqs. 11-13).

Both are MLPs of (normalised obs, action). The reward model regresses r_t with
a squared error (Eq. 11); the termination model outputs the logit of
Pr(d_{t+1} = 1 | x_t, u_t) and is trained by Bernoulli negative log-likelihood
(Eqs. 12-13) on `terminated` only: time-limit truncations are not terminations.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.nn.networks import MLP
from mjxmbrl.types import Metrics, Transition


class ScalarHead(nn.Module):
    """(obs_norm [..., D], action [..., A]) -> [...] (a reward, or a termination logit)."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, obs_norm: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs_norm, action], axis=-1)
        return MLP(tuple(self.hidden_sizes), 1, nn.elu, True)(x)[..., 0]


def reward_loss(predicted: jax.Array, reward: jax.Array) -> jax.Array:
    """Eq. 11: mean of (r_theta(x_t, u_t) - r_t)^2 over the batch."""
    return jnp.mean(jnp.square(predicted - reward))


def termination_loss(logits: jax.Array, terminated: jax.Array) -> jax.Array:
    """Eq. 13: mean Bernoulli NLL -[d log sigma(l) + (1 - d) log(1 - sigma(l))], in logit space."""
    return jnp.mean(jax.nn.softplus(logits) - terminated * logits)


def head_losses(reward_head, termination_head, net, obs_norm, batch: Transition) -> tuple:
    """Sum of the enabled head losses and their metrics over all transitions of `batch`.

    `reward_head` / `termination_head` are ScalarHead modules or None; their
    parameters are net["reward"] / net["termination"].
    """
    total = jnp.zeros((), jnp.float32)
    metrics: Metrics = {}
    if reward_head is not None:
        pred = reward_head.apply(net["reward"], obs_norm, batch.action)
        loss = reward_loss(pred, batch.reward)
        total, metrics["model/reward_loss"] = total + loss, loss
    if termination_head is not None:
        logits = termination_head.apply(net["termination"], obs_norm, batch.action)
        loss = termination_loss(logits, batch.terminated)
        total, metrics["model/termination_loss"] = total + loss, loss
    return total, metrics


def make_heads(hidden_sizes: Sequence[int], learn_reward: bool, learn_termination: bool, obs_size: int, action_size: int):
    """Builds the optional heads of an observation-space model.

    Returns (init(key) -> dict of head params, reward_fn or None,
    termination_fn or None, loss(net, obs_norm, batch) -> (loss, metrics)), where
    reward_fn(net, obs_norm, action) -> [] and termination_fn(...) -> probability [].
    """
    reward_head = ScalarHead(tuple(hidden_sizes)) if learn_reward else None
    termination_head = ScalarHead(tuple(hidden_sizes)) if learn_termination else None

    def init(key):
        k_r, k_t = jax.random.split(key)
        obs0, act0 = jnp.zeros((obs_size,)), jnp.zeros((action_size,))
        params = {}
        if reward_head is not None:
            params["reward"] = reward_head.init(k_r, obs0, act0)
        if termination_head is not None:
            params["termination"] = termination_head.init(k_t, obs0, act0)
        return params

    reward_fn = None if reward_head is None else (lambda net, o, a: reward_head.apply(net["reward"], o, a))
    termination_fn = (
        None if termination_head is None else (lambda net, o, a: jax.nn.sigmoid(termination_head.apply(net["termination"], o, a)))
    )

    def loss(net, obs_norm, batch):
        return head_losses(reward_head, termination_head, net, obs_norm, batch)

    return init, reward_fn, termination_fn, loss
