"""The learner interface: losses and optimisers of one method, bound to its config (DESIGN.md, Interfaces).

A learner is a part of an agent (agents/actor_critic.py): the agent draws the
batches, the learner updates on them.
"""

from typing import Any, Callable, NamedTuple, Optional


class LearnContext(NamedTuple):
    """What a learner's update may read besides its own state and the batch.

    model_params: the world model's parameters ({} without a learned model; SVG unrolls it);
    obs_stats: the run's running observation statistics (networks read normalised
        observations when env.normalize_obs is set; batches hold raw observations).
    """

    model_params: Any = None
    obs_stats: Any = None


class Learner(NamedTuple):
    """Pure functions of one learner, bound to its config when built.

    init(key) -> learner_state
    update(key, learner_state, batch: Transition, env_steps, context: LearnContext) -> (learner_state, metrics)
        `batch` holds raw observations [B, ...] (the learner normalises its network
        inputs with context.obs_stats where the run normalises them); `env_steps`
        (int32 scalar) drives schedules such as the target-entropy decay; transitions
        with batch.valid = 0 (non-finite physics) get weight 0.
    policy_params(learner_state) -> params   (what the policy needs, for export)
    policy(params, obs, key, deterministic) -> action in [-1, 1]^A; obs [..., D] network inputs
    value(learner_state, obs, key) -> [...] soft state-value estimate (planner terminal value), in the
        task's reward units (a critic trained on reward_scale * r is divided back)
    q_value(learner_state, obs, key) -> [...] mean over the critic ensemble of Q(s, a), one
        action a ~ pi(s), no entropy term (Byravan et al. 2022 App. F.2's planner value);
        None for a learner without an action-value critic
    sample(replay, key, replay_state) -> batch: what `update` learns from (None: single steps,
        `replay.sample(key, replay_state, agent.batch_size)`); MPO samples windows of T steps
    log_prob(params, obs [N, D], action [N, A]) -> [N]: the behaviour log-probability the agent
        stores with each executed policy action (Transition.extras["behaviour_log_prob"], for
        off-policy corrections); None: nothing stored
    ready_rows: replay rows (steps of every env) the buffer must hold before `update` may run
    """

    init: Callable[..., Any]
    update: Callable[..., Any]
    policy_params: Callable[..., Any]
    policy: Callable[..., Any]
    value: Callable[..., Any]
    q_value: Optional[Callable[..., Any]] = None
    sample: Optional[Callable[..., Any]] = None
    log_prob: Optional[Callable[..., Any]] = None
    ready_rows: int = 1
