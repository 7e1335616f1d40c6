"""Learner registry: `make_learner(cfg, ...)` builds the agent named by `cfg.name`."""

from typing import Any, Callable, Dict

from mjxmbrl.learners.base import Learner
from mjxmbrl.learners.sac import make_sac
from mjxmbrl.learners.svg import make_svg
from mjxmbrl.types import MjxmbrlError

LEARNERS: Dict[str, Callable[..., Learner]] = {"sac": make_sac, "svg": make_svg}


def make_learner(
    cfg: Any,
    obs_size: int,
    action_size: int,
    total_env_steps: int,
    *,
    model: Any = None,
    normalize_obs: bool = False,
    has_termination: bool = False,
) -> Learner:
    """Dispatches on `cfg.name` to the registered factory; unknown names list the valid ones.

    The keyword context is for model-based learners (SVG): the world model they unroll, whether
    the run normalises observations, whether the task can terminate. Model-free learners ignore it.
    """
    name = getattr(cfg, "name", None)
    if name not in LEARNERS:
        raise MjxmbrlError(f"unknown learner '{name}' (valid: {', '.join(sorted(LEARNERS))})")
    return LEARNERS[name](
        cfg, obs_size, action_size, total_env_steps, model=model, normalize_obs=normalize_obs, has_termination=has_termination
    )


__all__ = ["LEARNERS", "Learner", "make_learner", "make_sac", "make_svg"]
