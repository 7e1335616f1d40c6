"""PETS-style probabilistic ensemble (Chua et al. 2018; Byravan et al. 2022, App. F.4).

Each of M members is an MLP (swish) of the normalised observation and action
that outputs a Gaussian over the normalised one-step change
y = (s_{t+1} - s_t - mu) / sigma (moments in params["stats"]):

    mean_m(s, a), logvar_m(s, a) with soft bounds
    logvar <- max_lv - softplus(max_lv - logvar);  logvar <- min_lv + softplus(logvar - min_lv)

(max_lv, min_lv learned per dimension). Loss: single-step Gaussian negative
log-likelihood, each member on its own random half of every batch, plus
`logvar_bound_weight * (sum max_lv - sum min_lv)`. Members are stacked on a
leading axis and evaluated with vmap.

Rollout modes (cfg.rollout) for the model state {"obs": [D], "member": int32}:
  mean    the next state from the members' mean change, no sampling;
  random  a uniformly random member per step, sampled from its Gaussian;
  ts_inf  the particle's own member for the whole rollout (TS-infinity), sampled;
          `initial_particles` assigns members to particles evenly (p mod M).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.models.base import (
    Model,
    check_learned_model,
    init_model_stats,
    learned_reward_heads,
    multi_step_errors,
    normalize_obs,
    stats_input,
    std_of,
    step_error_metrics,
)
from mjxmbrl.nn.heads import make_heads
from mjxmbrl.nn.networks import MLP
from mjxmbrl.types import ConfigError

ROLLOUT_MODES = ("mean", "random", "ts_inf")


@dataclasses.dataclass(frozen=True)
class EnsembleModelConfig:
    """PETS-style probabilistic ensemble (Chua et al. 2018; Byravan et al. 2022, App. F.4)."""

    choices: ClassVar[Dict[str, Tuple[str, ...]]] = {"rollout": ("mean", "random", "ts_inf")}

    name: str = "ensemble"
    num_members: int = 5
    hidden_sizes: Tuple[int, ...] = (200, 200, 200, 200)  # swish, as in PETS
    learning_rate: float = 1e-3
    batch_size: int = 256
    seq_len: int = 1  # single-step NLL
    updates_per_step: int = 1
    grad_clip: float = 100.0
    init_max_logvar: float = 0.5  # soft bounds on the predicted log-variance (learned)
    init_min_logvar: float = -10.0
    logvar_bound_weight: float = 0.01
    # 0 is the plain NLL of PETS; 0.5 (beta-NLL, Seitzer et al. 2022) keeps hard transitions pulling on the mean:
    # 10x lower 1-step error of the mean on CartpoleSwingup (docs/models.md). See models/ensemble.py.
    nll_beta: float = 0.5
    rollout: str = "ts_inf"  # mean | random (member per step) | ts_inf (member fixed per particle)
    learn_reward: bool = False
    learn_termination: bool = False
    head_sizes: Tuple[int, ...] = (200, 200)


def check_ensemble(cfg) -> None:
    check_learned_model(cfg)
    m = cfg.model
    if m.init_min_logvar >= m.init_max_logvar:
        raise ConfigError(f"model.init_min_logvar ({m.init_min_logvar}) must be below model.init_max_logvar ({m.init_max_logvar})")


class GaussianMember(nn.Module):
    """x [..., D + A] -> (mean [..., D], bounded logvar [..., D]) of the normalised change."""

    obs_size: int
    hidden_sizes: Sequence[int]
    init_max_logvar: float
    init_min_logvar: float

    @nn.compact
    def __call__(self, x: jax.Array):
        out = MLP(tuple(self.hidden_sizes), 2 * self.obs_size, nn.swish)(x)
        mean, logvar = jnp.split(out, 2, axis=-1)
        max_lv = self.param("max_logvar", nn.initializers.constant(self.init_max_logvar), (self.obs_size,))
        min_lv = self.param("min_logvar", nn.initializers.constant(self.init_min_logvar), (self.obs_size,))
        logvar = max_lv - jax.nn.softplus(max_lv - logvar)
        logvar = min_lv + jax.nn.softplus(logvar - min_lv)
        return mean, logvar


def member_assignment(num_particles: int, num_members: int) -> jax.Array:
    """TS-infinity member of each particle, [P] int32: p mod M, so counts differ by at most one."""
    return jnp.arange(num_particles, dtype=jnp.int32) % num_members


def half_batch_weights(key: jax.Array, num_members: int, batch_size: int) -> jax.Array:
    """[M, N] 0/1 weights: member m trains on its own random half (N // 2 samples) of the batch."""
    ranks = jax.vmap(lambda k: jnp.argsort(jax.random.uniform(k, (batch_size,))))(jax.random.split(key, num_members))
    return (ranks < batch_size // 2).astype(jnp.float32)


def gaussian_nll(mean: jax.Array, logvar: jax.Array, target: jax.Array, beta: float = 0.0) -> jax.Array:
    """Per-sample Gaussian NLL without the constant, mean over dims: [..., D] -> [...].

    Each dimension's term (y - m)^2 e^{-lv} + lv is weighted by stop_grad(e^{lv})^beta
    (beta-NLL, Seitzer et al. 2022); beta = 0 is the plain NLL of PETS. With beta > 0
    transitions the model finds hard (large predicted variance) keep pulling on the mean.
    """
    nll = jnp.square(target - mean) * jnp.exp(-logvar) + logvar
    if beta:
        nll = nll * jax.lax.stop_gradient(jnp.exp(beta * logvar))
    return jnp.mean(nll, axis=-1)


def make_ensemble_model(cfg, obs_size: int, action_size: int) -> Model:
    """Builds the ensemble from an EnsembleModelConfig."""
    if cfg.rollout not in ROLLOUT_MODES:
        raise ValueError(f"ensemble rollout '{cfg.rollout}' is not one of {ROLLOUT_MODES}")
    num_members = cfg.num_members
    member = GaussianMember(obs_size, tuple(cfg.hidden_sizes), cfg.init_max_logvar, cfg.init_min_logvar)
    heads_init, reward_fn, termination_fn, heads_loss = make_heads(
        cfg.head_sizes, cfg.learn_reward, cfg.learn_termination, obs_size, action_size
    )

    def init(key):
        k_members, k_heads = jax.random.split(key)
        x = jnp.zeros((obs_size + action_size,))
        members = jax.vmap(member.init, in_axes=(0, None))(jax.random.split(k_members, num_members), x)
        return {"net": {"members": members, **heads_init(k_heads)}, "stats": init_model_stats(obs_size)}

    def all_members(params, obs, action):
        """Every member's (mean, logvar) [M, ..., D] of the normalised change."""
        x = jnp.concatenate([normalize_obs(params["stats"], obs), action], axis=-1)
        return jax.vmap(member.apply, in_axes=(0, None))(params["net"]["members"], x)

    def initial_state(params, obs, key, belief=None):
        del params, belief
        return {"obs": obs, "member": jax.random.randint(key, (), 0, num_members, dtype=jnp.int32)}

    def initial_particles(params, obs, key, num_particles: int, belief=None):
        del params, key, belief
        obs = jnp.broadcast_to(obs, (num_particles,) + obs.shape)
        return {"obs": obs, "member": member_assignment(num_particles, num_members)}

    def step(params, z, action, key):
        stats = params["stats"]
        means, logvars = all_members(params, z["obs"], action)  # [M, D]
        if cfg.rollout == "mean":
            change = jnp.mean(means, axis=0)
        else:
            pick_key, noise_key = jax.random.split(key)
            m = jax.random.randint(pick_key, (), 0, num_members) if cfg.rollout == "random" else z["member"]
            noise = jax.random.normal(noise_key, means.shape[1:])
            change = means[m] + jnp.exp(0.5 * logvars[m]) * noise
        next_obs = z["obs"] + stats.delta.mean + std_of(stats.delta) * change
        return {"obs": next_obs, "member": z["member"]}

    def observation(params, z):
        del params
        return z["obs"]

    reward, termination = learned_reward_heads(reward_fn, termination_fn, observation)

    model = Model(
        name="ensemble",
        init=init,
        initial_state=initial_state,
        initial_particles=initial_particles,
        step=step,
        observation=observation,
        reward=reward,
        termination=termination,
        loss=None,
        normalize_input=stats_input,
    )

    def loss(params, batch, mask, key):
        """Single-step NLL on every transition of the [B, T] batch (each member on its half)."""
        half_key, rollout_key = jax.random.split(key)
        stats = params["stats"]
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
        target = (flat.next_obs - flat.obs - stats.delta.mean) / std_of(stats.delta)
        means, logvars = all_members(params, flat.obs, flat.action)  # [M, N, D]
        weights = half_batch_weights(half_key, num_members, target.shape[0])  # [M, N]
        nll = gaussian_nll(means, logvars, target[None], cfg.nll_beta)  # [M, N]
        member_nll = jnp.sum(nll * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        bounds = params["net"]["members"]["params"]
        bound_penalty = cfg.logvar_bound_weight * (jnp.sum(bounds["max_logvar"]) - jnp.sum(bounds["min_logvar"]))
        head_total, head_metrics = heads_loss(params["net"], normalize_obs(stats, flat.obs), flat)
        total = jnp.sum(member_nll) + bound_penalty + head_total
        errors = multi_step_errors(model, jax.lax.stop_gradient(params), batch, rollout_key)  # metrics only
        return total, {
            "model/loss": total,
            "model/nll": jnp.mean(member_nll),
            "model/mse": jnp.mean(jnp.square(jnp.mean(means, axis=0) - target)),
            **head_metrics,
            **step_error_metrics(errors, mask),
        }

    return model._replace(loss=loss)
