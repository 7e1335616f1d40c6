"""Learner registry: `make_learner(cfg, ...)` builds the agent named by `cfg.name`."""

from typing import Any, Callable, Dict

from mjxmbrl.learners.base import Learner
from mjxmbrl.learners.sac import make_sac
from mjxmbrl.types import MjxmbrlError

LEARNERS: Dict[str, Callable[..., Learner]] = {"sac": make_sac}


def make_learner(cfg: Any, obs_size: int, action_size: int, total_env_steps: int) -> Learner:
    """Dispatches on `cfg.name` to the registered factory; unknown names list the valid ones."""
    name = getattr(cfg, "name", None)
    if name not in LEARNERS:
        raise MjxmbrlError(f"unknown learner '{name}' (valid: {', '.join(sorted(LEARNERS))})")
    return LEARNERS[name](cfg, obs_size, action_size, total_env_steps)


__all__ = ["LEARNERS", "Learner", "make_learner", "make_sac"]
