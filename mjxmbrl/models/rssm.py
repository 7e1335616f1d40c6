"""Recurrent state-space model (PlaNet, Hafner et al. 2019) on proprioceptive observations.

Gradient-based planning with world models, Sec. 3.2 (Eqs. 1-2) and App. A.7.
The latent state z = {"h": [belief_size], "s": [state_size]} splits into a
deterministic GRU belief h and a Gaussian stochastic state s:

    deterministic transition  h_t = f(h_{t-1}, s_{t-1}, a_{t-1})       GRUCell
    prior (stochastic model)  s_t ~ p(s_t | h_t)                        MLP h -> (mean, std)
    posterior (filter)        s_t ~ q(s_t | h_t, e(o_t))                MLP [h, e] -> (mean, std)  (Eq. 1)
    observation model         o_t ~ N(g([h_t, s_t]), I)                 in normalised units
    reward model              r_t ~ N(r([h_t, s_t]), 1)

with e the MLP encoder of the normalised observation. Standard deviations are
softplus(raw) + min_std, so neither distribution collapses.

Training maximises the ELBO of Eq. 2 on windows of T transitions: with the
observations o_0 = obs[:, 0] and o_{t+1} = next_obs[:, t], the filter starts
from h_0 = 0, s_0 ~ q(h_0, e(o_0)) and for t = 0..T-1 computes
h_{t+1} = f(h_t, s_t, a_t), the prior p(h_{t+1}) and the posterior
q(h_{t+1}, e(o_{t+1})), from which s_{t+1} is sampled (reparameterised). The
negative ELBO we minimise, each term averaged over valid steps, is

    sum_d (g_d(h_t, s_t) - o_norm_{t,d})^2                  t = 0..T    (reconstruction)
  + (r(h_{t+1}, s_{t+1}) - r_t)^2                           t = 0..T-1  (reward)
  + kl_scale * max(KL[q_{t+1} || p_{t+1}], free_nats)       t = 0..T-1  (KL, free nats)

(unit-variance Gaussian log-likelihoods without their constants and factor 1/2,
as in PlaNet). The KL of two diagonal Gaussians is computed in closed form and
summed over state dimensions before the free-nats clamp, per window and step.

Planning and open-loop prediction use the prior only: `step` applies f and
samples s' ~ p(h'); `observation` decodes and de-normalises the mean;
`reward(z, a, z')` decodes the reward at z'. There is no termination model.

Activation: ELU in every MLP and after the state-action embedding (as in
PlaNet's RSSM cell; the paper's App. A.7 lists relu). We prefer ELU because
gradient-based planners differentiate through the model with respect to the
actions, and ELU's Jacobian is continuous where relu's is piecewise constant.
"""

from __future__ import annotations

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mjxmbrl.learners.networks import MLP
from mjxmbrl.models.base import (
    Model,
    default_initial_particles,
    init_model_stats,
    masked_mean,
    normalize_obs,
    std_of,
)
from mjxmbrl.types import MjxmbrlError, Transition

ACTIVATION = nn.elu

Gaussian = Tuple[jax.Array, jax.Array]  # (mean [..., S], std [..., S])


def gaussian_kl(q: Gaussian, p: Gaussian) -> jax.Array:
    """KL[q || p] of diagonal Gaussians, summed over the last axis: [..., S] -> [...].

    Per dimension: log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2.
    """
    (mean_q, std_q), (mean_p, std_p) = q, p
    ratio = (jnp.square(std_q) + jnp.square(mean_q - mean_p)) / (2.0 * jnp.square(std_p))
    per_dim = jnp.log(std_p) - jnp.log(std_q) + ratio - 0.5
    return jnp.sum(per_dim, axis=-1)


def sample_gaussian(dist: Gaussian, key: jax.Array) -> jax.Array:
    """Reparameterised sample mean + std * eps, so gradients flow into mean and std."""
    mean, std = dist
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


class RSSMNet(nn.Module):
    """All RSSM sub-networks; each method works on any leading batch axes.

    Called directly (`__call__`) it touches every sub-network once, which is
    only used by `init` to create all parameters.
    """

    obs_size: int
    belief_size: int
    state_size: int
    hidden_size: int
    embedding_size: int
    min_std: float

    def setup(self):
        e, h = self.embedding_size, self.hidden_size
        self.encoder = MLP((e, e), e, ACTIVATION)
        self.state_action_embed = nn.Dense(h)
        self.gru = nn.GRUCell(features=self.belief_size)
        self.prior_net = MLP((h,), 2 * self.state_size, ACTIVATION)
        self.posterior_net = MLP((h,), 2 * self.state_size, ACTIVATION)
        self.obs_decoder = MLP((h, h), self.obs_size, ACTIVATION)
        self.reward_decoder = MLP((h, h), 1, ACTIVATION)

    def _gaussian(self, raw: jax.Array) -> Gaussian:
        mean, raw_std = jnp.split(raw, 2, axis=-1)
        # softplus keeps std positive with a smooth gradient; min_std bounds the KL's 1/std^2.
        return mean, nn.softplus(raw_std) + self.min_std

    def encode(self, obs_norm: jax.Array) -> jax.Array:
        """Normalised observation [..., D] -> embedding [..., E]."""
        return self.encoder(obs_norm)

    def transition(self, h: jax.Array, s: jax.Array, action: jax.Array) -> jax.Array:
        """h' = GRU(h, act(Dense([s, a]))): [..., H_b], [..., S], [..., A] -> [..., H_b]."""
        x = ACTIVATION(self.state_action_embed(jnp.concatenate([s, action], axis=-1)))
        h_next, _ = self.gru(h, x)
        return h_next

    def prior(self, h: jax.Array) -> Gaussian:
        """p(s | h): belief [..., H_b] -> (mean, std) [..., S]."""
        return self._gaussian(self.prior_net(h))

    def posterior(self, h: jax.Array, embedding: jax.Array) -> Gaussian:
        """q(s | h, e(o)) of Eq. 1: ([..., H_b], [..., E]) -> (mean, std) [..., S]."""
        return self._gaussian(self.posterior_net(jnp.concatenate([h, embedding], axis=-1)))

    def decode_obs(self, h: jax.Array, s: jax.Array) -> jax.Array:
        """Mean of p(o | h, s) in normalised units, [..., D]."""
        return self.obs_decoder(jnp.concatenate([h, s], axis=-1))

    def decode_reward(self, h: jax.Array, s: jax.Array) -> jax.Array:
        """Mean of p(r | h, s), [...]."""
        return self.reward_decoder(jnp.concatenate([h, s], axis=-1))[..., 0]

    def __call__(self, obs_norm: jax.Array, action: jax.Array):
        h = jnp.zeros(obs_norm.shape[:-1] + (self.belief_size,), obs_norm.dtype)
        s = self.posterior(h, self.encode(obs_norm))[0]
        h = self.transition(h, s, action)
        s = self.prior(h)[0]
        return self.decode_obs(h, s), self.decode_reward(h, s)


def make_rssm_model(cfg, obs_size: int, action_size: int) -> Model:
    """Builds the RSSM behind the `Model` interface (models/base.py).

    cfg: RSSMModelConfig (belief_size, state_size, hidden_size, embedding_size,
    min_std, free_nats, kl_scale; the optimiser fields are the trainer's).
    """
    if getattr(cfg, "pixels", False):
        raise MjxmbrlError("the RSSM takes proprioceptive (vector) observations only; pixels=True is not implemented")
    net = RSSMNet(
        obs_size=obs_size,
        belief_size=cfg.belief_size,
        state_size=cfg.state_size,
        hidden_size=cfg.hidden_size,
        embedding_size=cfg.embedding_size,
        min_std=cfg.min_std,
    )
    free_nats = float(cfg.free_nats)
    rollout = getattr(cfg, "rollout", "sample")

    def draw(dist, key):
        """Rollouts sample s (PlaNet); rollout="mean" takes the Gaussian's mean (deterministic prediction)."""
        return dist[0] if rollout == "mean" else sample_gaussian(dist, key)

    kl_scale = float(cfg.kl_scale)

    def apply(params, method, *args):
        return net.apply(params["net"], *args, method=method)

    def init(key):
        """params = {"net": flax params of every sub-network, "stats": fresh ModelStats}."""
        net_params = net.init(key, jnp.zeros((obs_size,)), jnp.zeros((action_size,)))
        return {"net": net_params, "stats": init_model_stats(obs_size)}

    def initial_state(params, obs, key, sim_state=None):
        """z_0 = {h: 0, s ~ q(s | h=0, e(obs))}; obs [D] -> h [H_b], s [S]."""
        del sim_state
        h = jnp.zeros((cfg.belief_size,), jnp.float32)
        embedding = apply(params, RSSMNet.encode, normalize_obs(params["stats"], obs))
        s = draw(apply(params, RSSMNet.posterior, h, embedding), key)
        return {"h": h, "s": s}

    def step(params, z, action, key):
        """One prior step: h' = f(h, s, a), s' ~ p(s' | h') (no observation is fed back)."""
        h = apply(params, RSSMNet.transition, z["h"], z["s"], action)
        s = draw(apply(params, RSSMNet.prior, h), key)
        return {"h": h, "s": s}

    def observation(params, z):
        """De-normalised decoder mean [D]."""
        obs_stats = params["stats"].obs
        obs_norm = apply(params, RSSMNet.decode_obs, z["h"], z["s"])
        return obs_norm * std_of(obs_stats) + obs_stats.mean

    def reward(params, z, action, next_z):
        """Predicted reward [] of the transition z -a-> next_z, decoded at next_z."""
        del z, action
        return apply(params, RSSMNet.decode_reward, next_z["h"], next_z["s"])

    def loss(params, batch: Transition, mask, key):
        """Negative ELBO (Eq. 2) with free nats; batch [B, T, ...], mask [B, T] -> (scalar, metrics)."""
        batch_size, horizon = batch.action.shape[:2]
        mask = mask.astype(jnp.float32)
        # o_0..o_T: next_obs is the true successor even at an episode end, so the
        # last valid step of an episode still has a proper target.
        obs_seq = jnp.concatenate([batch.obs[:, :1], batch.next_obs], axis=1)  # [B, T+1, D]
        target = normalize_obs(params["stats"], obs_seq)
        embeddings = apply(params, RSSMNet.encode, target)  # [B, T+1, E]

        key_0, key_scan = jax.random.split(key)
        h_0 = jnp.zeros((batch_size, cfg.belief_size), jnp.float32)
        s_0 = sample_gaussian(apply(params, RSSMNet.posterior, h_0, embeddings[:, 0]), key_0)

        def filter_step(carry, inputs):
            h, s = carry
            action, embedding, step_key = inputs
            h = apply(params, RSSMNet.transition, h, s, action)
            prior = apply(params, RSSMNet.prior, h)
            post = apply(params, RSSMNet.posterior, h, embedding)
            s = sample_gaussian(post, step_key)
            return (h, s), (h, s, gaussian_kl(post, prior))

        time_major = (
            jnp.swapaxes(batch.action, 0, 1),
            jnp.swapaxes(embeddings[:, 1:], 0, 1),
            jax.random.split(key_scan, horizon),
        )
        _, (hs, ss, kl) = jax.lax.scan(filter_step, (h_0, s_0), time_major)
        hs, ss, kl = (jnp.swapaxes(x, 0, 1) for x in (hs, ss, kl))  # [B, T, ...], kl [B, T]

        all_h = jnp.concatenate([h_0[:, None], hs], axis=1)  # [B, T+1, H_b]
        all_s = jnp.concatenate([s_0[:, None], ss], axis=1)
        obs_pred = apply(params, RSSMNet.decode_obs, all_h, all_s)
        obs_err = jnp.sum(jnp.square(obs_pred - target), axis=-1)  # [B, T+1]
        # o_0 is always a real observation; o_{t+1} is valid exactly when transition t is.
        obs_mask = jnp.concatenate([jnp.ones((batch_size, 1), jnp.float32), mask], axis=1)
        obs_loss = masked_mean(obs_err, obs_mask)

        reward_pred = apply(params, RSSMNet.decode_reward, hs, ss)  # [B, T]
        reward_loss = masked_mean(jnp.square(reward_pred - batch.reward), mask)

        # Free nats (PlaNet): below free_nats per step the KL gets no gradient, so
        # the model is not pushed to squeeze information out of the posterior early on.
        kl_loss = masked_mean(jnp.maximum(kl, free_nats), mask)
        total = obs_loss + reward_loss + kl_scale * kl_loss
        metrics = {
            "model/loss": total,
            "model/obs_loss": obs_loss,
            "model/reward_loss": reward_loss,
            "model/kl": masked_mean(kl, mask),
        }
        return total, metrics

    return Model(
        name="rssm",
        init=init,
        initial_state=initial_state,
        initial_particles=default_initial_particles(initial_state),
        step=step,
        observation=observation,
        reward=reward,
        termination=None,
        loss=loss,
    )
