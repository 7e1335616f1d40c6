"""Agents: what the train step drives (agents/base.py), assembled from learners, models and planners.

`AGENTS` is the registry: name -> (config class, factory, config-time check,
defaults for other sections). A factory is `make(cfg, parts) -> Agent`, with
`cfg` the run's Config (an agent is where the agent, model, planner, env and
train sections meet) and `parts` the `AgentParts` built from it here. Adding
an agent is one module (config dataclass, check, factory), one line below and
its YAML.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from mjxmbrl.agents.actor_critic import make_actor_critic_agent
from mjxmbrl.agents.base import (
    ACT_MODES,
    EVAL,
    EVAL_METRIC_PREFIX,
    EXPLORE,
    POLICY,
    Agent,
)
from mjxmbrl.agents.dreamer import DreamerConfig, check_dreamer, dreamer_defaults, make_dreamer_agent
from mjxmbrl.agents.mpc import MPCAgentConfig, check_mpc, make_mpc_agent
from mjxmbrl.agents.polo import POLOConfig, check_polo, make_polo_agent
from mjxmbrl.learners.mpo import MPOConfig, check_mpo, make_mpo
from mjxmbrl.learners.sac import SACConfig, check_sac, make_sac
from mjxmbrl.learners.svg import SVGConfig, check_svg, make_svg, svg_model_defaults
from mjxmbrl.registry import Registry

AGENTS = Registry("agent")
AGENTS.register("sac", SACConfig, lambda cfg, parts: make_actor_critic_agent(cfg, parts, make_sac), check=check_sac)
AGENTS.register("svg", SVGConfig, lambda cfg, parts: make_actor_critic_agent(cfg, parts, make_svg), check=check_svg,
                defaults=svg_model_defaults)
AGENTS.register("mpc", MPCAgentConfig, make_mpc_agent, check=check_mpc)
AGENTS.register("mpo", MPOConfig, lambda cfg, parts: make_actor_critic_agent(cfg, parts, make_mpo), check=check_mpo)
AGENTS.register("polo", POLOConfig, make_polo_agent, check=check_polo)
AGENTS.register("dreamer", DreamerConfig, make_dreamer_agent, check=check_dreamer, defaults=dreamer_defaults)


class AgentParts(NamedTuple):
    """What an agent factory receives besides the config: the task and the built shared parts.

    spec: the task's EnvSpec; replay: the replay functions `learn` samples with
    (sharded over the device mesh where there is one); model: the world model
    (None without one); model_trainer: its update (None for no model or the oracle).
    """

    spec: Any
    replay: Any
    model: Optional[Any] = None
    model_trainer: Optional[Any] = None


def build_parts(cfg, replay) -> AgentParts:
    """The parts the run's config names: task spec (as the agent sees the task: pixel observations and no known
    reward with env.pixels), world model and its trainer."""
    from mjxmbrl.envs.registry import config_spec
    from mjxmbrl.models import make_model
    from mjxmbrl.models.trainer import make_model_trainer

    model = make_model(cfg.model, cfg.env)
    trainer = make_model_trainer(model, cfg.model) if model is not None and model.loss is not None else None
    return AgentParts(spec=config_spec(cfg.env), replay=replay, model=model, model_trainer=trainer)


def build_agent(cfg, replay, parts: Optional[AgentParts] = None) -> Agent:
    """The Agent of `cfg.agent.name`, built from `parts` (default: `build_parts(cfg, replay)`)."""
    parts = parts if parts is not None else build_parts(cfg, replay)
    return AGENTS.get(cfg.agent.name).make(cfg, parts._replace(replay=replay))


__all__ = [
    "ACT_MODES", "AGENTS", "Agent", "AgentParts", "EVAL", "EVAL_METRIC_PREFIX", "EXPLORE", "POLICY",
    "build_agent", "build_parts",
]
