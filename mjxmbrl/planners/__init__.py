"""Planners over any model: SMC, CEM, MPPI and gradient-based MPC, built from a planner config.

`PLANNERS` is the registry: name -> (config class, factory, config-time check).
A factory is `make(planner_cfg, core, proposal, action_size) -> Planner`; each
planner module holds its config class (a `PlannerConfig` subclass), its check
and its update rule. Adding a planner is one module, one line below and its YAML.

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
from mjxmbrl.planners.base import (
    NoPlannerConfig,
    Planner,
    PlannerConfig,
    PlanParams,
    RolloutCore,
    check_planner_common,
    make_rollout_core,
)
from mjxmbrl.planners.cem import CEMConfig, check_cem, make_cem
from mjxmbrl.planners.grad import GradConfig, check_grad, make_grad
from mjxmbrl.planners.mppi import MPPIConfig, make_mppi
from mjxmbrl.planners.smc import SMCConfig, check_smc, make_smc
from mjxmbrl.registry import Registry
from mjxmbrl.types import MjxmbrlError

PLANNERS = Registry("planner")
PLANNERS.register("none", NoPlannerConfig, lambda cfg, core, proposal, action_size: None)
PLANNERS.register("smc", SMCConfig, make_smc, check=check_smc)
PLANNERS.register("cem", CEMConfig, make_cem, check=check_cem)
PLANNERS.register("mppi", MPPIConfig, lambda cfg, core, proposal, action_size: make_mppi(cfg, core, action_size),
                  check=check_planner_common)
PLANNERS.register("grad", GradConfig, make_grad, check=check_grad)


VALUES = ("none", "soft", "q", "optimistic", "dreamer")
AGENT_VALUES = {"optimistic": "the value ensemble of agent polo", "dreamer": "the latent value of agent dreamer"}


def make_value_fn(learner, samples: int, normalize_obs: bool, kind: str = "soft"):
    """(value_params = (learner_state, obs_stats), obs [P, D], key) -> [P]: the planner's terminal value.

    V(s) = (1/K) sum_k v(s, a_k), a_k ~ pi(s), K = `samples`, with v the learner's
    soft value min_i Q_i(s, a) - alpha log pi(a|s) (kind "soft") or its plain
    mean_i Q_i(s, a) (kind "q": Byravan et al. 2022 App. F.2, K = 10, no entropy term).
    """
    if kind not in ("soft", "q"):
        raise MjxmbrlError(f"planner.value: '{kind}' is not one of {', '.join(VALUES)}")
    if kind == "q" and learner.q_value is None:
        raise MjxmbrlError("planner.value=q needs a learner with an action-value critic; use planner.value=soft")
    one = learner.value if kind == "soft" else learner.q_value

    def value(value_params, obs, key):
        learner_state, obs_stats = value_params
        x = normalize(obs_stats, obs) if normalize_obs else obs
        keys = jax.random.split(key, samples)
        return jnp.mean(jax.vmap(lambda k: one(learner_state, x, k))(keys), axis=0)

    return value


def make_proposal(cfg, action_size: int, learner, normalize_obs: bool, agnostic=None, policy=None):
    """The proposal `cfg.proposal` names; `learner` supplies the policy, `agnostic` the task-agnostic
    proposal (learners/agnostic.py) of an agent that trains one (None where there is none). `policy`
    (a proposal) replaces the learner's as "policy", alone or in a mixture: the proposal of an agent
    whose policy is not a learner's (Dreamer's actor on the latent)."""
    from mjxmbrl.planners import proposals

    def single(name):
        if name == "gaussian":
            return proposals.gaussian_proposal(action_size, cfg.proposal_sigma)
        if name == "policy":
            if policy is not None:
                return policy
            if learner is None:
                raise MjxmbrlError("planner.proposal=policy needs a trained policy: set planner.source_run to a run directory")
            return proposals.policy_proposal(learner, normalize_obs)
        if name == "agnostic":
            if agnostic is None:
                raise MjxmbrlError(
                    "planner.proposal=agnostic needs a task-agnostic proposal: train one with agent.agnostic_proposal=true "
                    "(agent mpo)"
                )
            return proposals.agnostic_proposal(agnostic, normalize_obs)
        raise MjxmbrlError(f"unknown proposal '{name}'")

    if cfg.proposal == "mixture":
        first, second = cfg.mixture_components
        return proposals.mixture_proposal(single(first), single(second), cfg.mixture_start, cfg.mixture_end)
    return single(cfg.proposal)


def make_planner(cfg, model, env_cfg, obs_size: int, action_size: int, learner: Optional[Any] = None, agnostic=None,
                 value_fn=None, policy=None, head_features=None):
    """Returns (Planner, RolloutCore, proposal) for planner config `cfg` over `model` (`agnostic`, `policy`: see
    make_proposal).

    value_fn: (value_params, x [P, ...], key) -> [P], the terminal value of an agent that builds its own
    (POLO's optimistic ensemble value, planner.value=optimistic; Dreamer's latent value, planner.value=dreamer);
    otherwise it comes from `learner`. head_features: z -> [F], what the value and the proposals read of a
    model state instead of its predicted observation (make_rollout_core; Dreamer: the latent's [h, s]).
    """
    from mjxmbrl.envs.registry import get_spec

    entry = PLANNERS.get(cfg.name)
    reward_fn = None
    if cfg.reward == "known" and model.name != "oracle":
        reward_fn = get_spec(env_cfg.name).reward_fn
        if reward_fn is None:
            raise MjxmbrlError(f"env '{env_cfg.name}' has no known reward; use planner.reward=model")
    if cfg.value == "none":
        value_fn = None
    elif cfg.value in AGENT_VALUES:
        if value_fn is None:
            raise MjxmbrlError(f"planner.value={cfg.value} is {AGENT_VALUES[cfg.value]}; other agents use soft or q")
    else:
        if learner is None:
            raise MjxmbrlError(f"planner.value={cfg.value} needs a trained learner: set planner.source_run")
        value_fn = make_value_fn(learner, cfg.value_samples, env_cfg.normalize_obs, cfg.value)
    core = make_rollout_core(model, cfg.discount, reward_fn, float(env_cfg.action_repeat), value_fn, head_features)
    proposal = make_proposal(cfg, action_size, learner, env_cfg.normalize_obs, agnostic, policy)
    return entry.make(cfg, core, proposal, action_size), core, proposal


__all__ = ["PLANNERS", "Planner", "PlannerConfig", "PlanParams", "RolloutCore", "make_planner", "make_rollout_core"]
