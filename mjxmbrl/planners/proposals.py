"""Action proposals for the planners (Byravan et al. 2022, Sec. 4.1 and 5.4).

A proposal is `sample(plan_params, obs [P, D], key, progress) -> actions [P, A]`
in [-1, 1]; `progress` in [0, 1] is the fraction of training done (for the
annealed mixture weight; 0 outside training).

  gaussian      N(0, sigma^2) clipped: the fixed proposal;
  policy        the learner's stochastic policy (its parameters in plan_params.policy);
  proprio       the learner's policy fed only the proprioceptive observation
                dimensions (task-specific groups such as targets set to zero):
                the task-agnostic proposal of Sec. 5.4 (E.2);
  mixture       with probability w the first proposal, else the second, per
                particle; w goes linearly from w_start to w_end over training
                (Sec. 5.4 anneals towards the learned policy).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from mjxmbrl.envs.normalization import normalize

Proposal = Callable[..., jax.Array]


def gaussian_proposal(action_size: int, sigma: float) -> Proposal:
    def sample(pp, obs, key, progress=0.0):
        del pp, progress
        return jnp.clip(sigma * jax.random.normal(key, (obs.shape[0], action_size)), -1.0, 1.0)

    return sample


def policy_proposal(learner, normalize_obs: bool, input_mask: Optional[jax.Array] = None) -> Proposal:
    """The learner's stochastic policy; `input_mask` [D] zeroes task-specific inputs (task-agnostic proposal)."""

    def sample(pp, obs, key, progress=0.0):
        del progress
        x = normalize(pp.obs_stats, obs) if normalize_obs else obs
        if input_mask is not None:
            x = x * input_mask
        keys = jax.random.split(key, obs.shape[0])
        return jax.vmap(lambda o, k: learner.policy(pp.policy, o, k, False))(x, keys)

    return sample


def mixture_proposal(first: Proposal, second: Proposal, w_start: float, w_end: float) -> Proposal:
    """Per particle: `first` with probability w(progress) = w_start + (w_end - w_start) * progress, else `second`."""

    def sample(pp, obs, key, progress=0.0):
        k_pick, k_a, k_b = jax.random.split(key, 3)
        w = w_start + (w_end - w_start) * jnp.clip(progress, 0.0, 1.0)
        pick = jax.random.uniform(k_pick, (obs.shape[0], 1)) < w
        return jnp.where(pick, first(pp, obs, k_a, progress), second(pp, obs, k_b, progress))

    return sample


def proprio_mask(obs_size: int, task_groups: Sequence) -> jax.Array:
    """[D] float mask: 1 on proprioceptive dims, 0 on the given task-specific groups."""
    mask = jnp.ones((obs_size,), jnp.float32)
    for g in task_groups:
        mask = mask.at[g.start : g.stop].set(0.0)
    return mask
