"""Action proposals for the planners (Byravan et al. 2022, Sec. 4.1 and 5.4).

A proposal is `sample(plan_params, obs [P, D], key, progress) -> actions [P, A]`
in [-1, 1]; `progress` in [0, 1] is the fraction of training done (for the
annealed mixture weight; 0 outside training).

  gaussian      N(0, sigma^2) clipped: the fixed proposal;
  policy        the learner's stochastic policy (its parameters in plan_params.policy), or an
                agent's own policy on what the rollout core's `observe` returns (`head_policy_proposal`:
                Dreamer's actor on the latent features, sampled or its mode);
  agnostic      the task-agnostic proposal of App. E.2 (learners/agnostic.py: a
                Gaussian on proprioceptive inputs trained by BC alongside the agent;
                its parameters in plan_params.proposal);
  mixture       with probability w the first of two proposals (planner.mixture_components),
                else the second, per particle; w goes linearly from w_start to w_end
                over training (Sec. 5.4 anneals from the task-agnostic proposal to the policy).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mjxmbrl.envs.normalization import normalize

Proposal = Callable[..., jax.Array]


def gaussian_proposal(action_size: int, sigma: float) -> Proposal:
    def sample(pp, obs, key, progress=0.0):
        del pp, progress
        return jnp.clip(sigma * jax.random.normal(key, (obs.shape[0], action_size)), -1.0, 1.0)

    return sample


def policy_proposal(learner, normalize_obs: bool) -> Proposal:
    """The learner's stochastic policy (its parameters in plan_params.policy)."""

    def sample(pp, obs, key, progress=0.0):
        del progress
        x = normalize(pp.obs_stats, obs) if normalize_obs else obs
        keys = jax.random.split(key, obs.shape[0])
        return jax.vmap(lambda o, k: learner.policy(pp.policy, o, k, False))(x, keys)

    return sample


def head_policy_proposal(policy: Callable[..., jax.Array], deterministic: bool) -> Proposal:
    """policy(params, x [F], key, deterministic) -> [A] on the core's `observe` output (with `head_features`,
    a latent's features), vmapped over particles; its parameters in plan_params.policy."""

    def sample(pp, x, key, progress=0.0):
        del progress
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda xi, k: policy(pp.policy, xi, k, deterministic))(x, keys)

    return sample


def agnostic_proposal(agnostic, normalize_obs: bool) -> Proposal:
    """The task-agnostic proposal (learners/agnostic.py; its parameters in plan_params.proposal)."""

    def sample(pp, obs, key, progress=0.0):
        del progress
        x = normalize(pp.obs_stats, obs) if normalize_obs else obs
        return agnostic.sample(pp.proposal, x, key)

    return sample


def mixture_proposal(first: Proposal, second: Proposal, w_start: float, w_end: float) -> Proposal:
    """Per particle: `first` with probability w(progress) = w_start + (w_end - w_start) * progress, else `second`."""

    def sample(pp, obs, key, progress=0.0):
        k_pick, k_a, k_b = jax.random.split(key, 3)
        w = w_start + (w_end - w_start) * jnp.clip(progress, 0.0, 1.0)
        pick = jax.random.uniform(k_pick, (obs.shape[0], 1)) < w
        return jnp.where(pick, first(pp, obs, k_a, progress), second(pp, obs, k_b, progress))

    return sample
