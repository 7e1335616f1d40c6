"""Planners over any model: SMC, CEM, MPPI and gradient-based MPC, built from a planner config.

`make_planner(planner_cfg, model, env_cfg, obs_size, action_size, learner)`
binds the shared rollout core (planners/base.py) to the model, the reward
(the task's known reward on predicted observations, or the model's own; the
oracle always uses the simulator's reward), the optional learned terminal
value and the proposal, then builds the named planner.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from mjxmbrl.envs.normalization import normalize
from mjxmbrl.planners.base import Planner, PlanParams, RolloutCore, make_rollout_core
from mjxmbrl.types import MjxmbrlError

PLANNER_NAMES = ("smc", "cem", "mppi", "grad")


def make_value_fn(learner, samples: int, normalize_obs: bool):
    """(value_params = (learner_state, obs_stats), obs [P, D], key) -> [P]: mean of `samples` learner values."""

    def value(value_params, obs, key):
        learner_state, obs_stats = value_params
        x = normalize(obs_stats, obs) if normalize_obs else obs
        keys = jax.random.split(key, samples)
        return jnp.mean(jax.vmap(lambda k: learner.value(learner_state, x, k))(keys), axis=0)

    return value


def make_proposal(cfg, action_size: int, learner, normalize_obs: bool, env_name: str):
    from mjxmbrl.planners import proposals

    gaussian = proposals.gaussian_proposal(action_size, cfg.proposal_sigma)
    if cfg.proposal == "gaussian":
        return gaussian
    if learner is None:
        raise MjxmbrlError(f"planner.proposal={cfg.proposal} needs a trained policy: set planner.source_run to a run directory")
    if cfg.proposal == "policy":
        return proposals.policy_proposal(learner, normalize_obs)
    if cfg.proposal == "proprio":
        from mjxmbrl.envs.registry import get_spec
        from mjxmbrl.models.groups import OBS_GROUPS, TASK_GROUPS

        groups = [g for g in OBS_GROUPS.get(env_name, ()) if g.name in TASK_GROUPS]
        return proposals.policy_proposal(learner, normalize_obs, proposals.proprio_mask(get_spec(env_name).obs_size, groups))
    if cfg.proposal == "mixture":
        return proposals.mixture_proposal(proposals.policy_proposal(learner, normalize_obs), gaussian, cfg.mixture_start, cfg.mixture_end)
    raise MjxmbrlError(f"unknown proposal '{cfg.proposal}'")


def make_planner(cfg, model, env_cfg, obs_size: int, action_size: int, learner: Optional[Any] = None):
    """Returns (Planner, RolloutCore, proposal) for planner config `cfg` over `model`."""
    from mjxmbrl.envs.rewards import KNOWN_REWARDS

    if cfg.name not in PLANNER_NAMES:
        raise MjxmbrlError(f"unknown planner '{cfg.name}' (valid: {', '.join(PLANNER_NAMES)})")
    reward_fn = None
    if cfg.reward == "known" and model.name != "oracle":
        if env_cfg.name not in KNOWN_REWARDS:
            raise MjxmbrlError(f"env '{env_cfg.name}' has no known reward; use planner.reward=model")
        reward_fn = KNOWN_REWARDS[env_cfg.name]
    value_fn = None
    if cfg.value == "learner":
        if learner is None:
            raise MjxmbrlError("planner.value=learner needs a trained learner: set planner.source_run")
        value_fn = make_value_fn(learner, cfg.value_samples, env_cfg.normalize_obs)
    core = make_rollout_core(model, cfg.discount, reward_fn, float(env_cfg.action_repeat), value_fn)
    proposal = make_proposal(cfg, action_size, learner, env_cfg.normalize_obs, env_cfg.name)
    if cfg.name == "smc":
        from mjxmbrl.planners.smc import make_smc

        planner = make_smc(cfg, core, proposal, action_size)
    elif cfg.name == "cem":
        from mjxmbrl.planners.cem import make_cem

        planner = make_cem(cfg, core, proposal, action_size)
    elif cfg.name == "mppi":
        from mjxmbrl.planners.mppi import make_mppi

        planner = make_mppi(cfg, core, action_size)
    else:
        from mjxmbrl.planners.grad import make_grad

        planner = make_grad(cfg, core, proposal, action_size)
    return planner, core, proposal


__all__ = ["Planner", "PlanParams", "RolloutCore", "make_planner", "make_rollout_core", "PLANNER_NAMES"]
