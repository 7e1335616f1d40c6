"""The learner interface every agent implements (see DESIGN.md, Interfaces)."""

from typing import Any, Callable, NamedTuple


class Learner(NamedTuple):
    """Pure functions of one agent, bound to its config when built.

    init(key) -> learner_state
    update(key, learner_state, batch: Transition, env_steps) -> (learner_state, metrics)
        `batch` observations are already normalised; `env_steps` (int32 scalar)
        drives schedules such as the target-entropy decay.
    policy_params(learner_state) -> params   (what the policy needs, for export)
    policy(params, obs, key, deterministic) -> action in [-1, 1]^A; obs [..., D]
    value(learner_state, obs, key) -> [...] state-value estimate (planner terminal value)

    A model-based learner (`uses_model=True`, e.g. SAC-SVG(H)) is instead updated with
    update(key, learner_state, batch, env_steps, model_params, obs_stats), where `batch`
    holds raw observations (the world model predicts raw observations) and the learner
    normalises its own network inputs with `obs_stats` when the run normalises them.
    """

    init: Callable[..., Any]
    update: Callable[..., Any]
    policy_params: Callable[..., Any]
    policy: Callable[..., Any]
    value: Callable[..., Any]
    uses_model: bool = False
