"""Learners: losses and optimisers of one method (learners/base.py), the parts agents learn with.

Agents (mjxmbrl/agents/) assemble a learner with a world model and a planner;
the agent registry (`mjxmbrl.agents.AGENTS`) names the methods a config can use.
"""

from mjxmbrl.learners.base import LearnContext, Learner
from mjxmbrl.learners.sac import SACConfig, make_sac
from mjxmbrl.learners.svg import SVGConfig, make_svg

__all__ = ["LearnContext", "Learner", "SACConfig", "SVGConfig", "make_sac", "make_svg"]
